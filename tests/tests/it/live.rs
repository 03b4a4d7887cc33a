//! Migrating a live database: a migration queued behind a long
//! transaction must not queue the application's queries behind itself.
//! Each transactional migration runs under a `lock_timeout` and is retried;
//! the test shows both sides, with the timeout and without.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dbprep_runtime::testing::TestDatabase;
use dbprep_runtime::{Error, Migrations, Migrator};

use crate::support::{database, eventually, migrations, scalar};

fn set() -> Migrations {
    migrations(&[
        (
            "V1__users.sql",
            "CREATE TABLE users (id bigint PRIMARY KEY, name text);\n\
             INSERT INTO users SELECT g, 'user ' || g FROM generate_series(1, 1000) AS g;",
        ),
        (
            "V2__nickname.sql",
            "ALTER TABLE users ADD COLUMN nickname text;",
        ),
    ])
}

/// The application: `SELECT … FROM users` in a loop until stopped; the
/// start and end of each query.
fn application(
    db: &TestDatabase,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<(Instant, Instant)>> {
    let db = db.config().clone();
    tokio::spawn(async move {
        let (client, connection) = db.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        let mut queries = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let start = Instant::now();
            client
                .simple_query("SELECT count(*) FROM users WHERE name LIKE 'user 1%'")
                .await
                .unwrap();
            queries.push((start, Instant::now()));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        queries
    })
}

/// A session that has read `users` in a transaction it keeps open: the
/// long transaction DDL queues behind. Its backend pid.
async fn blocker(db: &TestDatabase) -> (tokio_postgres::Client, i32) {
    let client = db.connect().await.unwrap();
    client
        .batch_execute("SET application_name = 'reporting job'; BEGIN; SELECT * FROM users LIMIT 1")
        .await
        .unwrap();
    let pid = scalar(&client, "SELECT pg_backend_pid()").await.unwrap();
    (client, pid.parse().unwrap())
}

/// Application queries that started after the migration did and ended
/// before the blocker committed: the ones that did not queue behind the
/// migration.
fn served_while_blocked(queries: &[(Instant, Instant)], from: Instant, until: Instant) -> usize {
    queries
        .iter()
        .filter(|(start, end)| *start > from && *end < until)
        .count()
}

/// When the migration was first seen waiting for its lock on `users`:
/// the queries that start after it are the ones it may hold up. (A fixed
/// delay instead would count queries that ran before it got there, on a
/// loaded machine.)
async fn queued_behind_the_blocker(db: &TestDatabase) -> Instant {
    let client = db.connect().await.unwrap();
    let waiting = "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE datname = current_database() \
                   AND pid <> pg_backend_pid() AND wait_event_type = 'Lock' \
                   AND query LIKE '%ALTER TABLE users ADD COLUMN nickname%')";
    assert!(
        eventually(&client, waiting, "t", 30).await,
        "the migration never waited for its lock"
    );
    Instant::now()
}

/// Migrate to version 2 while a long transaction holds `users` for a
/// while: the application's queries served meanwhile, and the report.
async fn migrate_behind_a_long_transaction(
    lock_timeout: Duration,
) -> (usize, dbprep_runtime::Report, i32) {
    let m = set();
    let db = database().await;
    let _ = Migrator::new(&m).target(1).run(db.pool()).await.unwrap();
    let (blocking, pid) = blocker(&db).await;
    let stop = Arc::new(AtomicBool::new(false));
    let app = application(&db, stop.clone());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let migrating = Instant::now();
    let pool = db.pool().clone();
    let run = tokio::spawn({
        let m = m.clone();
        async move {
            Migrator::new(&m)
                .lock_timeout(lock_timeout)
                .lock_retries(30)
                .run(&pool)
                .await
        }
    });
    let queued = queued_behind_the_blocker(&db).await;
    // Long enough, from the start, for the migration to wait (and, with a
    // timeout, to give up and retry a few times).
    tokio::time::sleep_until((migrating + Duration::from_millis(1500)).into()).await;
    let committed = Instant::now();
    blocking.batch_execute("COMMIT").await.unwrap();
    let report = run.await.unwrap().unwrap();
    stop.store(true, Ordering::Relaxed);
    let queries = app.await.unwrap();
    let served = served_while_blocked(&queries, queued, committed);
    println!(
        "lock_timeout {lock_timeout:?}: {served} application queries served while the migration waited, {} retries",
        report.lock_retries.len()
    );
    (served, report, pid)
}

#[tokio::test]
async fn with_a_lock_timeout_the_application_goes_on_and_the_migration_completes_on_a_retry() {
    let (served, report, pid) = migrate_behind_a_long_transaction(Duration::from_millis(150)).await;
    assert_eq!(crate::support::applied(&report), [2]);
    assert!(!report.lock_retries.is_empty(), "{report:?}");
    let first = &report.lock_retries[0];
    assert_eq!((first.version, first.retry), (2, 1));
    assert!(
        first.blockers.iter().any(|b| b.pid == pid
            && b.application_name == "reporting job"
            && b.state == "idle in transaction"),
        "{:?}",
        first.blockers
    );
    assert!(
        served > 0,
        "the application's queries queued behind the migration"
    );
}

#[tokio::test]
async fn without_a_lock_timeout_the_application_queues_behind_the_migration() {
    let (served, report, _) = migrate_behind_a_long_transaction(Duration::ZERO).await;
    assert_eq!(crate::support::applied(&report), [2]);
    assert!(report.lock_retries.is_empty());
    assert_eq!(served, 0, "no query can pass a queued ALTER TABLE");
}

#[tokio::test]
async fn retries_run_out_naming_the_blocker_and_a_files_directive_wins() {
    let m = migrations(&[
        (
            "V1__users.sql",
            "CREATE TABLE users (id bigint PRIMARY KEY);",
        ),
        ("V2__index_table.sql", "CREATE TABLE other (id int);"),
        (
            "V3__nickname.sql",
            "-- dbprep:lock-timeout 100ms\nALTER TABLE users ADD COLUMN nickname text;",
        ),
    ]);
    let db = database().await;
    let _ = Migrator::new(&m).target(1).run(db.pool()).await.unwrap();
    let (_blocking, pid) = blocker(&db).await;
    let error = Migrator::new(&m)
        .lock_timeout(Duration::ZERO)
        .lock_retries(1)
        .run(db.pool())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::LockNotAvailable { version: 3, tries: 2, applied, .. } if applied == &[2]),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.starts_with("migration 3 (")
            && text.contains(&format!(
                "pid {pid} (reporting job, idle in transaction, transaction open"
            ))
            && text.contains("applied before it, and kept: 2")
            && text.contains("--lock-timeout / --lock-retries"),
        "{text}"
    );
    let client = db.connect().await.unwrap();
    assert_eq!(crate::support::recorded(&client).await, [1, 2]);
}
