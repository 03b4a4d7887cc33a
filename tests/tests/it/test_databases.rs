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

/// How many spares the template of `set` has.
async fn spares_of(set: &Migrations) -> usize {
    let template = template_name(set, &[]);
    let hash = &template["dbprep_template_".len()..];
    databases_named(&format!("dbprep_spare_{hash}_"))
        .await
        .len()
}

/// Wait until the template of `set` has `want` spares.
async fn wait_for_spares(set: &Migrations, want: usize) {
    for _ in 0..300 {
        if spares_of(set).await == want {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!(
        "the template has {} spares, not {want}",
        spares_of(set).await
    );
}

#[tokio::test]
async fn spares_made_ahead_are_handed_out_by_renaming_and_made_again() {
    // A set of this test's own, so that nobody else claims its spares.
    let sql = format!(
        "CREATE TABLE spare_check (id int);\nINSERT INTO spare_check VALUES ({});",
        std::process::id()
    );
    let set = migrations(&[("V1__spares.sql", &sql)]);
    let first = migrated(&set, &[]).await.unwrap();
    wait_for_spares(&set, 4).await;
    // Two handouts at once take two different spares, each a complete
    // copy of the template.
    let (a, b) = tokio::join!(migrated(&set, &[]), migrated(&set, &[]));
    let (a, b) = (a.unwrap(), b.unwrap());
    let names = [first.name(), a.name(), b.name()];
    assert!(names[0] != names[1] && names[1] != names[2] && names[0] != names[2]);
    for db in [&a, &b] {
        let client = db.connect().await.unwrap();
        assert_eq!(
            scalar(&client, "SELECT id FROM spare_check").await,
            Some(std::process::id().to_string())
        );
        assert_eq!(
            scalar(&client, "SELECT max(version) FROM dbprep_schema_history").await,
            Some("1".into())
        );
    }
    // Topped up again in the background.
    wait_for_spares(&set, 4).await;
}

#[tokio::test]
async fn a_new_template_of_a_project_drops_the_older_one_and_its_spares() {
    let first = format!("CREATE TABLE project_{} (id int);", std::process::id());
    let old = migrations(&[
        ("V1__first.sql", &first),
        ("V2__second.sql", "CREATE TABLE second (id int);"),
    ]);
    let old_db = migrated(&old, &[]).await.unwrap();
    wait_for_spares(&old, 4).await;
    drop(old_db);
    let edited = migrations(&[
        ("V1__first.sql", &first),
        ("V2__second.sql", "CREATE TABLE second (id bigint);"),
    ]);
    let db = migrated(&edited, &[]).await.unwrap();
    let client = db.connect().await.unwrap();
    assert_eq!(
        scalar(
            &client,
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'second'::regclass AND attname = 'id'"
        )
        .await,
        Some("bigint".into())
    );
    assert!(databases_named(&template_name(&old, &[])).await.is_empty());
    assert_eq!(spares_of(&old).await, 0);
    assert_eq!(
        databases_named(&template_name(&edited, &[])).await,
        [template_name(&edited, &[])]
    );
}
