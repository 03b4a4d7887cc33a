//! The test support itself: a real server, a database per test.

use dbprep_runtime::testing::{migrated, run_migrated, template_name, TestServer, TestingError};
use dbprep_runtime::{Fixtures, Migrations};

use crate::support::{database, migrations, scalar};

static DEMO: Migrations = dbprep_macros::embed_migrations!("../migrations");
static DEMO_FIXTURES: Fixtures = dbprep_macros::embed_fixtures!("../fixtures");

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

/// Databases (by name) of the server whose name starts with `prefix`.
async fn databases_named(prefix: &str) -> Vec<String> {
    let db = database().await;
    let client = db.connect().await.unwrap();
    client
        .query(
            "SELECT datname::text FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1",
            &[&prefix],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn migrated_databases_are_clones_of_one_template_with_the_fixtures() {
    let keypairs = DEMO_FIXTURES.get("example-keypairs").unwrap();
    let fixtures = [keypairs];
    let (a, b) = tokio::join!(migrated(&DEMO, &fixtures), migrated(&DEMO, &fixtures));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.name(), b.name());
    let template = template_name(&DEMO, &[keypairs]);
    assert_eq!(
        databases_named(&template).await,
        std::slice::from_ref(&template)
    );
    let (ca, cb) = (a.connect().await.unwrap(), b.connect().await.unwrap());
    for client in [&ca, &cb] {
        assert_eq!(
            scalar(client, "SELECT max(version) FROM dbprep_schema_history").await,
            Some("5".into())
        );
        assert_eq!(
            scalar(client, "SELECT count(*) > 0 FROM keypairs").await,
            Some("t".into())
        );
    }
    // Each test's database is its own.
    ca.batch_execute("DELETE FROM keypairs").await.unwrap();
    assert_eq!(
        scalar(&cb, "SELECT count(*) > 0 FROM keypairs").await,
        Some("t".into())
    );
    // And the template is not theirs to change: closed to connections.
    let refused = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user={} dbname={template}",
            a.config().get_ports()[0],
            a.config().get_user().unwrap()
        ),
        tokio_postgres::NoTls,
    )
    .await;
    assert!(refused.is_err());
}

#[tokio::test]
async fn many_at_once_build_one_template_and_a_failing_set_keeps_none() {
    // A set no other test uses, so that this one builds it.
    let unique = format!(
        "CREATE TABLE built_once (id int);\nCOMMENT ON TABLE built_once IS 'test {}';",
        std::process::id()
    );
    let set = migrations(&[("V1__built_once.sql", &unique)]);
    let template = template_name(&set, &[]);
    let handouts = futures_util::future::join_all((0..8).map(|_| migrated(&set, &[]))).await;
    let mut names: Vec<String> = handouts
        .into_iter()
        .map(|db| db.unwrap().name().to_owned())
        .collect();
    names.dedup();
    assert_eq!(names.len(), 8);
    assert_eq!(
        databases_named(&template).await,
        std::slice::from_ref(&template)
    );

    let broken = migrations(&[(
        "V1__broken.sql",
        "CREATE TABLE broken (id int REFERENCES nowhere);",
    )]);
    let template = template_name(&broken, &[]);
    match migrated(&broken, &[]).await {
        Err(e @ TestingError::Template { .. }) => assert!(
            e.to_string().starts_with(&format!(
                "cannot build the test template {template}: migrate: migration 1 failed: "
            )),
            "{e}"
        ),
        other => panic!("not a template error: {other:?}"),
    }
    assert!(databases_named(&template).await.is_empty());
}

#[dbprep_macros::test(
    migrations = DEMO,
    fixtures("example-keypairs"),
    fixtures_dir = "../fixtures"
)]
async fn the_test_attribute_hands_out_a_migrated_database_with_its_fixtures(
    pool: deadpool_postgres::Pool,
) {
    let client = pool.get().await.unwrap();
    assert_eq!(
        scalar(&client, "SELECT max(version) FROM dbprep_schema_history").await,
        Some("5".into())
    );
    assert_eq!(
        scalar(&client, "SELECT count(*) > 0 FROM keypairs").await,
        Some("t".into())
    );
    let name = scalar(&client, "SELECT current_database()").await.unwrap();
    assert!(name.starts_with("dbprep_test_"), "{name}");
}

#[dbprep_macros::test(migrations = DEMO)]
async fn the_test_attribute_takes_a_test_that_returns_a_result(
    pool: deadpool_postgres::Pool,
) -> Result<(), Box<dyn std::error::Error>> {
    let client = pool.get().await?;
    // Without fixtures: the schema, and no rows.
    let rows = client.query("SELECT count(*) FROM keypairs", &[]).await?;
    assert_eq!(rows[0].get::<_, i64>(0), 0);
    Ok(())
}

/// The names of a database whose test failed (returned an `Err`) and of
/// one whose test passed, on the `DATABASE_URL` server; run by
/// [`a_failing_test_keeps_its_database_and_a_passing_one_drops_it`] in a
/// process of its own, with `DATABASE_URL` set.
#[test]
#[ignore = "run by a_failing_test_keeps_its_database_and_a_passing_one_drops_it"]
fn keep_or_drop() {
    let current = |pool: deadpool_postgres::Pool| async move {
        let client = pool.get().await.unwrap();
        scalar(&client, "SELECT current_database()").await.unwrap()
    };
    let failed: Result<(), String> = run_migrated(&DEMO, &DEMO_FIXTURES, |pool| async move {
        Err(current(pool).await)
    });
    let passed: Result<String, String> = run_migrated(&DEMO, &DEMO_FIXTURES, |pool| async move {
        Ok(current(pool).await)
    });
    println!("failed={} passed={}", failed.unwrap_err(), passed.unwrap());
}

#[tokio::test]
async fn a_failing_test_keeps_its_database_and_a_passing_one_drops_it() {
    // A server the test databases are dropped on: `DATABASE_URL`'s, or
    // the throwaway cluster given as one.
    let url = match TestServer::get().unwrap() {
        TestServer::Cluster(cluster) => cluster.url("postgres"),
        TestServer::External(_) => std::env::var("DATABASE_URL").unwrap(),
    };
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "test_databases::keep_or_drop",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("DATABASE_URL", url)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&child.stdout),
        String::from_utf8_lossy(&child.stderr),
    );
    assert!(child.status.success(), "{stdout}\n{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("failed="))
        .unwrap_or_else(|| panic!("{stdout}"));
    let (failed, passed) = line["failed=".len()..].split_once(" passed=").unwrap();
    assert!(
        stderr.contains(&format!("the test failed: its database {failed} is kept; open it with psql \"host=127.0.0.1 port=")),
        "{stderr}"
    );
    assert_eq!(databases_named(failed).await, [failed.to_owned()]);
    assert!(databases_named(passed).await.is_empty());
    let db = database().await;
    db.connect()
        .await
        .unwrap()
        .batch_execute(&format!("DROP DATABASE \"{failed}\""))
        .await
        .unwrap();
}
