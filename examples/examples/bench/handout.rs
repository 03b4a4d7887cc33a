//! Handing out a migrated test database: `testing::migrated` taking a
//! spare made ahead (the default), cloning the template without spares,
//! and what a test does without either, a new database and the migrations
//! run again; then 100 tests at once, end to end. On the test support's
//! own server (the throwaway cluster tests use, `fsync=off`, or
//! `DATABASE_URL`), for the demo set and for 1,000 generated migrations.

use std::time::{Duration, Instant};

use dbprep_runtime::testing::{migrated, set_spares, template_name, TestDatabase};
use dbprep_runtime::{Migrations, Migrator};

use super::{generate, migration_sql, Bench, Pairs};

static DEMO: Migrations = dbprep_macros::embed_migrations!("../migrations");

/// How many spares a template keeps in the bench (the default).
const SPARES: usize = 4;

/// How many tests the end-to-end figure runs at once.
const AT_ONCE: usize = 100;

impl Bench {
    /// The figure: per set, `runs × 4` handouts of each kind paired with
    /// re-migrations, then [`AT_ONCE`] tests at once.
    pub(super) async fn handout(&mut self, runs: usize, table: &mut String) {
        let (dir, _file, _) = generate(1000, migration_sql);
        let generated = Migrations::from_dir(dir.path()).expect("generated migrations are valid");
        let server = dbprep_runtime::testing::TestServer::get().expect("the test server");
        let (admin, connection) = server
            .admin_config()
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        for (label, set) in [
            ("the demo set (5 migrations)", &DEMO),
            ("1,000 generated migrations", &generated),
        ] {
            // The template is built by the first call, not measured.
            set_spares(SPARES);
            drop(migrated(set, &[]).await.expect("build the template"));
            let spares = |admin| spares_of(admin, set);
            let mut from_spares = Pairs::default();
            let mut cloned = Pairs::default();
            for _ in 0..runs * 4 {
                // Each handout finds the spares topped up, as a test does
                // that starts after the one before it.
                wait_until(|| async { spares(&admin).await >= SPARES }).await;
                set_spares(SPARES);
                let spare = timed_handout(set).await;
                set_spares(0);
                let clone = timed_handout(set).await;
                let remigrated = remigrate(set).await;
                from_spares.push(spare, remigrated);
                cloned.push(clone, remigrated);
            }
            set_spares(SPARES);
            let (r, _, _) = super::ratio_stats(from_spares.ratios.clone());
            println!(
                "handout of {label}: {:.1}× faster than a re-migration",
                1.0 / r
            );
            from_spares.report(
                table,
                &format!("a migrated test database, {label}: `testing::migrated` taking a spare made ahead"),
                "a new database, migrated",
                "≤ 5 ms; ≥ 20× faster at 1,000",
            );
            cloned.report(
                table,
                &format!(
                    "a migrated test database, {label}: `CREATE DATABASE … TEMPLATE` (no spares)"
                ),
                "a new database, migrated",
                "—",
            );
            self.strategies(&admin, set, label, runs, table).await;
            if !std::ptr::eq(set, &DEMO) {
                continue;
            }
            wait_until(|| async { spares(&admin).await >= SPARES }).await;
            let mut at_once = Pairs::default();
            for _ in 0..runs {
                let ours = hundred_tests(|| async {
                    let db = migrated(set, &[]).await.expect("a handout");
                    touch(&db).await;
                })
                .await;
                let theirs = hundred_tests(|| async {
                    let db = TestDatabase::new().await.expect("a new database");
                    let report = Migrator::new(set).run(db.pool()).await.expect("migrate");
                    assert_eq!(report.version, set.head());
                    touch(&db).await;
                })
                .await;
                at_once.push(ours, theirs);
                wait_until(|| async { spares(&admin).await >= SPARES }).await;
            }
            at_once.report(
                table,
                &format!("{AT_ONCE} tests at once, end to end, {label}: `testing::migrated`"),
                "each a new database, migrated",
                "—",
            );
        }
    }
}

impl Bench {
    /// The two ways PostgreSQL 15 copies a template, timed alone.
    async fn strategies(
        &mut self,
        admin: &tokio_postgres::Client,
        set: &Migrations,
        label: &str,
        runs: usize,
        table: &mut String,
    ) {
        let template = template_name(set, &[]);
        let mut strategies = Pairs::default();
        for i in 0..runs * 4 {
            let clone = |strategy: &'static str| {
                let sql = format!(
                    "CREATE DATABASE \"bench_clone_{}_{strategy}_{i}\" TEMPLATE \"{template}\" STRATEGY {strategy}",
                    &template["dbprep_template_".len()..]
                );
                async move {
                    let started = Instant::now();
                    admin.batch_execute(&sql).await.expect("clone");
                    started.elapsed()
                }
            };
            // In turn first, so that neither always finds the cache warm.
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
    }
}

/// How long one `migrated` takes (the database is dropped after).
async fn timed_handout(set: &Migrations) -> Duration {
    let started = Instant::now();
    let db = migrated(set, &[]).await.expect("a handout");
    let elapsed = started.elapsed();
    drop(db);
    elapsed
}

/// A new database with `set` run on it, as a test without dbprep's
/// templates does.
async fn remigrate(set: &Migrations) -> Duration {
    let started = Instant::now();
    let db = TestDatabase::new().await.expect("a new database");
    let report = Migrator::new(set).run(db.pool()).await.expect("migrate");
    assert_eq!(report.version, set.head());
    started.elapsed()
}

/// What a test does with its database: one query.
async fn touch(db: &TestDatabase) {
    let client = db.pool().get().await.expect("connect");
    client
        .simple_query("SELECT count(*) FROM dbprep_schema_history")
        .await
        .expect("query");
}

/// [`AT_ONCE`] copies of `test` at once, end to end.
async fn hundred_tests<F, Fut>(test: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    futures_util::future::join_all((0..AT_ONCE).map(|_| test())).await;
    started.elapsed()
}

/// How many spares the template of `set` has.
async fn spares_of(admin: &tokio_postgres::Client, set: &Migrations) -> usize {
    let template = template_name(set, &[]);
    let prefix = format!("dbprep_spare_{}_", &template["dbprep_template_".len()..]);
    let row = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE starts_with(datname, $1)",
            &[&prefix],
        )
        .await
        .expect("count the spares");
    row.get::<_, i64>(0) as usize
}

/// Poll `done` every 10 ms, for at most a minute.
async fn wait_until<F, Fut>(done: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..6000 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the spares were not made within a minute");
}
