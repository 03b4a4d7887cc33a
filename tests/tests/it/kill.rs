//! A migrator killed with SIGKILL: the server stops its work, nothing
//! partial remains, and the next run completes.

use std::process::{Command, Stdio};

use dbprep_runtime::Migrator;

use crate::support::{database, eventually, exists, libpq_env, migrations, recorded};

const SLEEPING: &str =
    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()";

#[tokio::test]
async fn sigkill_of_the_migrator_stops_its_migration_on_the_server() {
    let db = database().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("V1__a.sql"), "CREATE TABLE a (id int);").unwrap();
    std::fs::write(
        dir.path().join("V2__slow.sql"),
        "CREATE TABLE slow (id int);\nSELECT pg_sleep(60);",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dbprep-test-migrate"))
        .arg(dir.path())
        .env_remove("DATABASE_URL")
        .envs(libpq_env(&db))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let client = db.connect().await.unwrap();
    assert!(
        eventually(&client, SLEEPING, "1", 30).await,
        "the slow migration never started"
    );
    child.kill().unwrap(); // SIGKILL: no destructor, no cancel request
    child.wait().unwrap();
    // client_connection_check_interval (1 s) lets the server notice.
    assert!(
        eventually(&client, SLEEPING, "0", 15).await,
        "the server still runs the killed migration"
    );
    assert!(
        !exists(&client, "slow").await,
        "half of migration 2 remains"
    );
    assert_eq!(recorded(&client).await, [1]);
    let fixed = migrations(&[
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        ("V2__slow.sql", "CREATE TABLE slow (id int);"),
    ]);
    let report = Migrator::new(&fixed).run(db.pool()).await.unwrap();
    assert_eq!(
        report.applied.iter().map(|a| a.version).collect::<Vec<_>>(),
        [2]
    );
}
