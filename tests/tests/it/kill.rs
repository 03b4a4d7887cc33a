//! Faults in the middle of a run: a migrator killed with SIGKILL (directly
//! and behind PgBouncer), PgBouncer restarted. The server stops the work,
//! nothing partial remains, and the next run completes.

use std::process::{Command, Stdio};

use dbprep_runtime::testing::{Bouncer, PoolMode, TestServer};
use dbprep_runtime::{Error, LockMode, Migrations, Migrator};

use crate::support::{
    applied, database, eventually, exists, libpq_env, migrations, recorded, run_in_background,
    scalar, SLEEPING,
};

/// A migrations folder whose second migration sleeps a minute after
/// creating its table.
fn slow_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("V1__a.sql"), "CREATE TABLE a (id int);").unwrap();
    std::fs::write(
        dir.path().join("V2__slow.sql"),
        "CREATE TABLE slow (id int);\nSELECT pg_sleep(60);",
    )
    .unwrap();
    dir
}

/// The slow set's migrations without the sleep.
fn fixed() -> dbprep_runtime::Migrations {
    migrations(&[
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        ("V2__slow.sql", "CREATE TABLE slow (id int);"),
    ])
}

/// Once `child` sleeps in migration 2, SIGKILL it (no destructor, no
/// cancel request), then check that the server stopped the migration and
/// kept nothing of it.
async fn kill_during_migration_2(client: &tokio_postgres::Client, child: &mut std::process::Child) {
    assert!(
        eventually(client, SLEEPING, "1", 30).await,
        "the slow migration never started"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        eventually(client, SLEEPING, "0", 15).await,
        "the server still runs the killed migration"
    );
    assert!(!exists(client, "slow").await, "half of migration 2 remains");
    assert_eq!(recorded(client).await, [1]);
}

#[tokio::test]
async fn sigkill_of_the_migrator_stops_its_migration_on_the_server() {
    let db = database().await;
    let dir = slow_folder();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dbprep-test-migrate"))
        .arg(dir.path())
        .env_remove("DATABASE_URL")
        .envs(libpq_env(&db))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let client = db.connect().await.unwrap();
    // client_connection_check_interval (1 s) lets the server notice.
    kill_during_migration_2(&client, &mut child).await;
    let report = Migrator::new(&fixed()).run(db.pool()).await.unwrap();
    assert_eq!(applied(&report), [2]);
}

/// A pool through `bouncer` on `db`'s database.
fn pool_through(
    bouncer: &Bouncer,
    db: &dbprep_runtime::testing::TestDatabase,
) -> deadpool_postgres::Pool {
    dbprep_runtime::testing::pool(bouncer.config(db.name()), 2)
}

/// The transaction-mode PgBouncer, unless the tests run on a `DATABASE_URL`
/// server.
fn shared_bouncer() -> Option<&'static Bouncer> {
    match TestServer::get().unwrap() {
        TestServer::Cluster(_) => Some(Bouncer::shared().unwrap_or_else(|e| panic!("{e}"))),
        TestServer::External(_) => None,
    }
}

#[tokio::test]
async fn a_killed_holder_behind_pgbouncer_is_stopped_and_a_peer_takes_over_its_lease() {
    // PgBouncer closes the server connection of a client that dies in the
    // middle of a transaction, and the server stops the migration. The
    // lease names the dead run until it runs out; then a peer takes over.
    let Some(bouncer) = shared_bouncer() else {
        return;
    };
    let db = database().await;
    let dir = slow_folder();
    let mut env = libpq_env(&db);
    env.retain(|(name, _)| *name != "PGPORT");
    env.push(("PGPORT", bouncer.port().to_string()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_dbprep-test-migrate"))
        .arg(dir.path())
        .arg("transaction")
        .env_remove("DATABASE_URL")
        .envs(env)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let client = db.connect().await.unwrap();
    kill_during_migration_2(&client, &mut child).await;
    let report = Migrator::new(&fixed())
        .lock_mode(LockMode::Transaction)
        .run(&pool_through(bouncer, &db))
        .await
        .unwrap();
    assert_eq!(applied(&report), [2]);
    assert!(report.lock.unwrap().tries > 1, "the lease was free at once");
    assert_eq!(recorded(&client).await, [1, 2]);
    assert_eq!(
        scalar(&client, "SELECT count(*) FROM dbprep_schema_history_lock")
            .await
            .as_deref(),
        Some("0"),
        "the lease outlived the run"
    );
}

#[tokio::test]
async fn pgbouncer_restarted_in_the_middle_of_a_run() {
    let TestServer::Cluster(cluster) = TestServer::get().unwrap() else {
        return;
    };
    // A PgBouncer of its own: restarting it cuts every client.
    let bouncer = Bouncer::start(cluster, PoolMode::Transaction).unwrap();
    let db = database().await;
    let slow: &'static Migrations = Box::leak(Box::new(migrations(&[
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        (
            "V2__slow.sql",
            "CREATE TABLE slow (id int);\nSELECT pg_sleep(60);",
        ),
        ("V3__c.sql", "CREATE TABLE c (id int);"),
    ])));
    let pool = pool_through(&bouncer, &db);
    let run = run_in_background(slow, &pool, LockMode::Transaction);
    let client = db.connect().await.unwrap();
    assert!(
        eventually(&client, SLEEPING, "1", 30).await,
        "the slow migration never started"
    );
    bouncer.restart().unwrap();
    let error = run.await.unwrap().unwrap_err();
    let Error::Migration(failure) = &error else {
        panic!("{error}")
    };
    assert_eq!(failure.version, 2, "{error}");
    assert!(
        error
            .to_string()
            .contains("whether it committed, the next run reads from the history"),
        "{error}"
    );
    assert!(
        eventually(&client, SLEEPING, "0", 15).await,
        "the server still runs the cut migration"
    );
    assert!(
        !exists(&client, "slow").await,
        "half of migration 2 remains"
    );
    assert_eq!(recorded(&client).await, [1]);
    let fixed = migrations(&[
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        ("V2__slow.sql", "CREATE TABLE slow (id int);"),
        ("V3__c.sql", "CREATE TABLE c (id int);"),
    ]);
    let report = Migrator::new(&fixed)
        .lock_mode(LockMode::Transaction)
        .run(&pool)
        .await
        .unwrap();
    assert_eq!(applied(&report), [2, 3]);
}
