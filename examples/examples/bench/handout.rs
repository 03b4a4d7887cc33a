//! Handing out a migrated test database: `testing::migrated` (a clone of
//! the set's template) next to what a test does without it, a new database
//! and the migrations run again. On the test support's own server (the
//! throwaway cluster tests use, `fsync=off`, or `DATABASE_URL`), for the
//! demo set and for 1,000 generated migrations.

use std::time::Instant;

use dbprep_runtime::testing::{migrated, TestDatabase};
use dbprep_runtime::{Migrations, Migrator};

use super::{generate, migration_sql, Bench, Pairs};

static DEMO: Migrations = dbprep_macros::embed_migrations!("../migrations");

impl Bench {
    /// The figure: per set, `runs × 4` handouts paired with re-migrations.
    pub(super) async fn handout(&mut self, runs: usize, table: &mut String) {
        let (dir, _file, _) = generate(1000, migration_sql);
        let generated = Migrations::from_dir(dir.path()).expect("generated migrations are valid");
        for (n, (label, set)) in [
            ("the demo set (5 migrations)", &DEMO),
            ("1,000 generated migrations", &generated),
        ]
        .into_iter()
        .enumerate()
        {
            // The template is built by the first call, not measured.
            drop(migrated(set, &[]).await.expect("build the template"));
            let mut pairs = Pairs::default();
            for _ in 0..runs * 4 {
                let started = Instant::now();
                let db = migrated(set, &[]).await.expect("a handout");
                let handout = started.elapsed();
                drop(db);
                let started = Instant::now();
                let db = TestDatabase::new().await.expect("a new database");
                let report = Migrator::new(set).run(db.pool()).await.expect("migrate");
                assert_eq!(report.version, set.head());
                pairs.push(handout, started.elapsed());
            }
            // The two ways PostgreSQL 15 copies a template, timed alone.
            let server = dbprep_runtime::testing::TestServer::get().expect("the test server");
            let (admin, connection) = server
                .admin_config()
                .connect(tokio_postgres::NoTls)
                .await
                .expect("connect");
            tokio::spawn(connection);
            let template = dbprep_runtime::testing::template_name(set, &[]);
            let mut strategies = Pairs::default();
            for i in 0..runs * 4 {
                let clone = |strategy: &str| {
                    let (admin, template) = (&admin, &template);
                    let sql = format!("CREATE DATABASE bench_clone_{n}_{strategy}_{i} TEMPLATE \"{template}\" STRATEGY {strategy}");
                    async move {
                        let started = Instant::now();
                        admin.batch_execute(&sql).await.expect("clone");
                        started.elapsed()
                    }
                };
                let (file_copy, wal_log) = if i % 2 == 0 {
                    let a = clone("FILE_COPY").await;
                    (a, clone("WAL_LOG").await)
                } else {
                    let b = clone("WAL_LOG").await;
                    (clone("FILE_COPY").await, b)
                };
                strategies.push(wal_log, file_copy);
            }
            strategies.report(
                table,
                &format!("`CREATE DATABASE … TEMPLATE` of {label}, `STRATEGY WAL_LOG` (the default, what `migrated` uses)"),
                "`STRATEGY FILE_COPY`",
                "—",
            );
            let (r, _, _) = super::ratio_stats(pairs.ratios.clone());
            println!("handout of {label}: {:.1}× a re-migration", 1.0 / r);
            pairs.report(
                table,
                &format!("a migrated test database, {label}: `testing::migrated` (a clone of the template)"),
                "a new database, migrated",
                "≤ 5 ms; ≥ 20× faster at 1,000",
            );
        }
    }
}
