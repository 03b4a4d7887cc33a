//! A thousand tenant schemas in one database, each given the 20 generated
//! migrations by `run_each` at 1, 2, 4 and 8 jobs, against a loop of single
//! runs (a connection and a `Migrator::run` per tenant, as a script over
//! the tenants does); then the pass over the same tenants once they are up
//! to date, each way.

use std::time::{Duration, Instant};

use dbprep_runtime::testing::pool;
use dbprep_runtime::{Migrations, Migrator, Tenants};

use super::{generate, migration_sql, ms, Bench, Pairs};

const TENANTS: usize = 1000;
const MIGRATIONS: usize = 20;

impl Bench {
    /// The figures. Each applying walk covers 1,000 tenants and is
    /// measured once, on its own copy of a database of empty schemas; the
    /// no-op passes are measured `runs` times.
    pub(super) async fn tenants(&mut self, runs: usize, table: &mut String) {
        let (dir, _, _) = generate(MIGRATIONS, migration_sql);
        let set = Migrations::from_dir(dir.path()).expect("generated migrations are valid");
        let names: Vec<String> = (1..=TENANTS).map(|i| format!("tenant_{i:04}")).collect();
        let template = self.fresh_database().await;
        let create: Vec<String> = names
            .iter()
            .map(|n| format!("CREATE SCHEMA {n};"))
            .collect();
        self.connect_with(&template, &create.join("\n")).await;

        let (looped, database) = self.loop_of_runs(&set, &template, &names).await;
        println!("a loop of {TENANTS} single runs: {}", ms(looped));
        let mut best = Duration::MAX;
        for jobs in [1, 2, 4, 8] {
            let name = self.database_from(&template).await;
            let tenants = Tenants::schemas(&pool(self.cluster.config(&name), jobs), &names);
            let started = Instant::now();
            let report = Migrator::new(&set)
                .run_each(&tenants, jobs)
                .await
                .expect("valid tenants");
            let elapsed = started.elapsed();
            assert!(report.is_success(), "{report}");
            best = best.min(elapsed);
            let mut pair = Pairs::default();
            pair.push(elapsed, looped);
            pair.report(
                table,
                &format!("{TENANTS} tenant schemas × {MIGRATIONS} migrations, `run_each` with {jobs} job(s)"),
                "a loop of single runs",
                if jobs == 8 { "best ≥ 2× faster (≤ 0.5×)" } else { "—" },
            );
        }
        println!("best parallel walk: {}", ms(best));

        // The no-op pass over the tenants the loop migrated.
        let tenants = Tenants::schemas(&pool(self.cluster.config(&database), 4), &names);
        let mut noop = Pairs::default();
        for i in 0..runs {
            let walk = async {
                let started = Instant::now();
                let report = Migrator::new(&set)
                    .run_each(&tenants, 4)
                    .await
                    .expect("valid tenants");
                assert_eq!(report.counts()[0], ("up to date", TENANTS), "{report}");
                started.elapsed()
            };
            let (ours, theirs) = if i % 2 == 0 {
                let ours = walk.await;
                (ours, self.noop_loop(&set, &database, &names).await)
            } else {
                let theirs = self.noop_loop(&set, &database, &names).await;
                (walk.await, theirs)
            };
            noop.push(ours, theirs);
        }
        noop.report(
            table,
            &format!("no-op pass over {TENANTS} up-to-date tenant schemas, `run_each` with 4 jobs"),
            "a loop of single runs",
            "< 1 s",
        );
    }

    /// Every tenant migrated by its own run on its own connection, one
    /// after the other, on a copy of `template`: how long, and the copy.
    async fn loop_of_runs(
        &mut self,
        set: &Migrations,
        template: &str,
        names: &[String],
    ) -> (Duration, String) {
        let database = self.database_from(template).await;
        let started = Instant::now();
        for tenant in names {
            let report = single_run(self, set, &database, tenant).await;
            assert_eq!(report.applied.len(), MIGRATIONS);
        }
        (started.elapsed(), database)
    }

    /// The same loop over tenants already up to date.
    async fn noop_loop(&self, set: &Migrations, database: &str, names: &[String]) -> Duration {
        let started = Instant::now();
        for tenant in names {
            let report = single_run(self, set, database, tenant).await;
            assert!(report.was_up_to_date());
        }
        started.elapsed()
    }
}

/// One tenant's run as a script over the tenants does it: a connection
/// whose `search_path` is the tenant's schema, and a migrator whose
/// history and snapshot are there.
async fn single_run(
    bench: &Bench,
    set: &Migrations,
    database: &str,
    tenant: &str,
) -> dbprep_runtime::Report {
    let mut config = bench.cluster.config(database);
    config.options(format!("-c search_path={tenant}"));
    Migrator::new(set)
        .history_schema(tenant)
        .snapshot_schemas([tenant])
        .run(&pool(config, 1))
        .await
        .expect("a single run")
}
