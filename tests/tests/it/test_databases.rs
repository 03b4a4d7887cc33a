//! The test support itself: a real server, a database per test.

use crate::support::{database, scalar};

#[tokio::test]
async fn each_test_gets_its_own_empty_database() {
    let (a, b) = (database().await, database().await);
    assert_ne!(a.name(), b.name());
    let client = a.pool().get().await.unwrap();
    assert_eq!(
        scalar(&client, "SELECT current_database()")
            .await
            .as_deref(),
        Some(a.name())
    );
    let tables = scalar(
        &client,
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
    )
    .await;
    assert_eq!(tables.as_deref(), Some("0"));
    client
        .batch_execute("CREATE TABLE only_here (id int)")
        .await
        .unwrap();
    let other = b.pool().get().await.unwrap();
    let seen = scalar(
        &other,
        "SELECT count(*) FROM pg_tables WHERE tablename = 'only_here'",
    )
    .await;
    assert_eq!(seen.as_deref(), Some("0"));
}

#[tokio::test]
async fn the_server_is_postgresql_12_or_newer() {
    let db = database().await;
    let client = db.connect().await.unwrap();
    let version: i32 = scalar(&client, "SHOW server_version_num")
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert!(version >= 120000, "server_version_num = {version}");
}
