//! Faults in the middle of a pipelined batch: dbprep's connection
//! terminated by the server, and the server restarted. The error says what
//! was committed and what was not, no migration is kept without its row or
//! the reverse, and the next run completes.

use dbprep_runtime::testing::{pool, Cluster, TestServer};
use dbprep_runtime::{Error, LockMode, Migrations, Migrator};

use crate::support::{
    applied, database, eventually, exists, migrations, recorded, run_in_background, SLEEPING,
};

/// Five migrations; the third sleeps after creating its table, when
/// `sleeps`.
fn five(sleeps: bool) -> Migrations {
    let third = if sleeps {
        "CREATE TABLE c (id int);\nSELECT pg_sleep(30);"
    } else {
        "CREATE TABLE c (id int);"
    };
    migrations(&[
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        ("V2__b.sql", "CREATE TABLE b (id int);"),
        ("V3__c.sql", third),
        ("V4__d.sql", "CREATE TABLE d (id int);"),
        ("V5__e.sql", "CREATE TABLE e (id int);"),
    ])
}

/// The run failed in migration 3, saying that 1 and 2 were applied, that
/// nothing of 3 was kept and that 4 and 5 were not applied; the database
/// agrees.
async fn failed_in_the_third(error: Error, client: &tokio_postgres::Client) {
    let Error::Migration(failure) = &error else {
        panic!("{error}")
    };
    assert_eq!(
        (
            failure.version,
            &failure.applied[..],
            &failure.not_applied[..]
        ),
        (3, &[1, 2][..], &[4, 5][..]),
        "{error}"
    );
    let text = error.to_string();
    assert!(
        text.contains("applied before it in this run: 1, 2")
            && text.contains("not applied: 4, 5")
            && text.contains("terminating connection"),
        "{text}"
    );
    assert_eq!(recorded(client).await, [1, 2]);
    assert!(exists(client, "b").await && !exists(client, "c").await);
}

#[tokio::test]
async fn a_connection_terminated_in_the_middle_of_a_batch() {
    let db = database().await;
    let slow: &'static Migrations = Box::leak(Box::new(five(true)));
    let run = run_in_background(slow, db.pool(), LockMode::Session);
    let client = db.connect().await.unwrap();
    assert!(eventually(&client, SLEEPING, "1", 30).await);
    client
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE wait_event = 'PgSleep' AND datname = current_database()",
        )
        .await
        .unwrap();
    let error = run.await.unwrap().unwrap_err();
    failed_in_the_third(error, &client).await;
    let report = Migrator::new(&five(false)).run(db.pool()).await.unwrap();
    assert_eq!(applied(&report), [3, 4, 5]);
}

/// A connection to `database` of `cluster`.
async fn connect_to(cluster: &Cluster, database: &str) -> tokio_postgres::Client {
    let (client, connection) = cluster
        .config(database)
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

#[tokio::test]
async fn the_server_restarted_in_the_middle_of_a_batch() {
    let TestServer::Cluster(_) = TestServer::get().unwrap() else {
        return; // A restart needs a server of the test's own.
    };
    // A cluster of its own: a restart cuts every session on it.
    let cluster: &'static Cluster =
        Box::leak(Box::new(Cluster::start().unwrap_or_else(|e| panic!("{e}"))));
    connect_to(cluster, "postgres")
        .await
        .batch_execute("CREATE DATABASE restarted")
        .await
        .unwrap();
    let migrator_pool = pool(cluster.config("restarted"), 2);
    let slow: &'static Migrations = Box::leak(Box::new(five(true)));
    let run = run_in_background(slow, &migrator_pool, LockMode::Session);
    let client = connect_to(cluster, "restarted").await;
    assert!(eventually(&client, SLEEPING, "1", 30).await);
    tokio::task::spawn_blocking(|| cluster.restart())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let error = run.await.unwrap().unwrap_err();
    let client = connect_to(cluster, "restarted").await;
    failed_in_the_third(error, &client).await;
    let report = Migrator::new(&five(false))
        .run(&pool(cluster.config("restarted"), 2))
        .await
        .unwrap();
    assert_eq!(applied(&report), [3, 4, 5]);
}
