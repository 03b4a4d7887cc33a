//! Offline SQL: the script `Migrations::script` writes, applied with the
//! real `psql`, leaves the database as `upgrade` does.

use std::process::Output;

use dbprep_runtime::testing::TestDatabase;
use dbprep_runtime::{Error, Migrations, Migrator};

use crate::support::{applied, database, libpq_env, migrations, recorded, scalar};

/// A set with what a script must handle: a migration that changes the
/// session (role, search path, timeouts, string syntax), a no-transaction
/// `CREATE INDEX CONCURRENTLY`, and one after it.
fn set() -> Migrations {
    migrations(&[
        (
            "V1__accounts.sql",
            "CREATE TABLE accounts (id bigint PRIMARY KEY, name text NOT NULL);",
        ),
        (
            "V2__session.sql",
            "SET search_path = pg_temp;\nSET lock_timeout = 1;\nSET standard_conforming_strings = off;\nSET default_transaction_read_only = on;\n\
             CREATE TABLE public.notes (id int, body text);\nINSERT INTO public.notes VALUES (1, 'it''s here')",
        ),
        (
            "V3__index.sql",
            "-- dbprep:no-transaction\nCREATE INDEX CONCURRENTLY accounts_name ON accounts (name);",
        ),
        (
            "V4__more.sql",
            "ALTER TABLE accounts ADD COLUMN email text; -- a comment at the end",
        ),
    ])
}

/// `script` run by `psql -v ON_ERROR_STOP=1 -f` on `db`.
fn psql(db: &TestDatabase, script: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("upgrade.sql");
    std::fs::write(&file, script).unwrap();
    let psql = dbprep_runtime::testing::program("psql").expect("psql is installed");
    std::process::Command::new(psql)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(&file)
        .envs(libpq_env(db))
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `verify` finds nothing, and the next run is the one-statement start-up
/// (no lock taken) with nothing to apply.
async fn as_upgrade_leaves_it(m: &Migrations, db: &TestDatabase) {
    let report = Migrator::new(m).verify(db.pool()).await.unwrap();
    assert!(report.findings.is_empty(), "{report}");
    assert!(report.pending.is_empty(), "{report}");
    assert!(report.notes.is_empty(), "{report}");
    let run = Migrator::new(m).run(db.pool()).await.unwrap();
    assert!(applied(&run).is_empty(), "{run}");
    assert!(run.lock.is_none(), "the run took the lock: {run}");
}

#[tokio::test]
async fn a_script_applied_with_psql_leaves_the_database_as_upgrade_does() {
    let m = set();
    let db = database().await;
    let output = psql(&db, &m.script(None, None).unwrap());
    assert!(output.status.success(), "{}", stderr(&output));
    let client = db.connect().await.unwrap();
    assert_eq!(recorded(&client).await, [1, 2, 3, 4]);
    assert_eq!(
        scalar(&client, "SELECT body FROM notes").await.as_deref(),
        Some("it's here")
    );
    assert_eq!(
        scalar(
            &client,
            "SELECT string_agg(DISTINCT run_id, ',') || ' ' || count(*) FILTER (WHERE installed_rank = version) \
             FROM dbprep_schema_history"
        )
        .await
        .as_deref(),
        Some("script none..4 4")
    );
    assert_eq!(
        scalar(
            &client,
            "SELECT count(*) FROM pg_index WHERE NOT indisvalid"
        )
        .await
        .as_deref(),
        Some("0")
    );
    as_upgrade_leaves_it(&m, &db).await;
    // The lock is released: a run can take it.
    assert_eq!(
        scalar(
            &client,
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
             WHERE l.locktype = 'advisory' AND d.datname = current_database()"
        )
        .await
        .as_deref(),
        Some("0")
    );
}

#[tokio::test]
async fn a_script_goes_on_from_the_version_a_run_stopped_at() {
    let m = set();
    let db = database().await;
    let report = Migrator::new(&m).target(2).run(db.pool()).await.unwrap();
    assert_eq!(applied(&report), [1, 2]);
    let script = m.script(Some(2), None).unwrap();
    assert!(!script.contains("V2__session.sql"), "{script}");
    let output = psql(&db, &script);
    assert!(output.status.success(), "{}", stderr(&output));
    let client = db.connect().await.unwrap();
    assert_eq!(recorded(&client).await, [1, 2, 3, 4]);
    as_upgrade_leaves_it(&m, &db).await;
}

#[tokio::test]
async fn a_script_up_to_a_version_stops_there_and_a_run_does_the_rest() {
    let m = set();
    let db = database().await;
    let output = psql(&db, &m.script(None, Some(3)).unwrap());
    assert!(output.status.success(), "{}", stderr(&output));
    let report = Migrator::new(&m).run(db.pool()).await.unwrap();
    assert_eq!(applied(&report), [4]);
    as_upgrade_leaves_it(&m, &db).await;
}

#[tokio::test]
async fn a_script_refuses_a_database_that_is_not_where_it_starts() {
    let m = set();
    let db = database().await;
    // From 2, on a fresh database.
    let output = psql(&db, &m.script(Some(2), None).unwrap());
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("this script goes on from version 2, but the database has no history table \"public\".\"dbprep_schema_history\""),
        "{}",
        stderr(&output)
    );
    // From nothing, on a migrated database: nothing is written.
    let report = Migrator::new(&m).target(1).run(db.pool()).await.unwrap();
    assert_eq!(applied(&report), [1]);
    let output = psql(&db, &m.script(None, None).unwrap());
    assert!(
        stderr(&output).contains("installs the schema on a fresh database, but \"public\".\"dbprep_schema_history\" already records versions"),
        "{}",
        stderr(&output)
    );
    // From 2, on a database at 1.
    let output = psql(&db, &m.script(Some(2), None).unwrap());
    assert!(
        stderr(&output).contains("goes on from version 2, but the database is at version 1"),
        "{}",
        stderr(&output)
    );
    let client = db.connect().await.unwrap();
    assert_eq!(recorded(&client).await, [1]);
    // At 2, with another version 2 (an edited file).
    let edited = migrations(&[
        (
            "V1__accounts.sql",
            "CREATE TABLE accounts (id bigint PRIMARY KEY, name text NOT NULL);",
        ),
        ("V2__session.sql", "SELECT 2"),
        ("V5__later.sql", "SELECT 5"),
    ]);
    let db = database().await;
    let report = Migrator::new(&m).target(2).run(db.pool()).await.unwrap();
    assert_eq!(applied(&report), [1, 2]);
    let output = psql(&db, &edited.script(Some(2), None).unwrap());
    assert!(
        stderr(&output).contains("the history of \"public\".\"dbprep_schema_history\" differs from these migrations up to version 2"),
        "{}",
        stderr(&output)
    );
    let client = db.connect().await.unwrap();
    assert_eq!(recorded(&client).await, [1, 2]);
}

#[tokio::test]
async fn a_failing_migration_stops_the_script_with_what_came_before_recorded() {
    let m = migrations(&[
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        ("V2__b.sql", "CREATE TABLE b (id int);\nSELECT 1/0;"),
        ("V3__c.sql", "CREATE TABLE c (id int);"),
    ]);
    let db = database().await;
    let output = psql(&db, &m.script(None, None).unwrap());
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("division by zero"),
        "{}",
        stderr(&output)
    );
    let client = db.connect().await.unwrap();
    assert_eq!(recorded(&client).await, [1]);
    assert_eq!(
        scalar(&client, "SELECT to_regclass('b') IS NULL")
            .await
            .as_deref(),
        Some("t")
    );
    // The lock went with psql's session; a run sees version 1 and fails
    // on version 2 the same way.
    let error = Migrator::new(&m).run(db.pool()).await.unwrap_err();
    assert!(
        matches!(&error, Error::Migration(e) if e.version == 2),
        "{error}"
    );
}

#[tokio::test]
async fn a_script_stops_when_another_migrator_holds_the_lock() {
    let m = set();
    let db = database().await;
    let holder = db.connect().await.unwrap();
    let key = Migrator::new(&m).history().lock_key();
    holder
        .batch_execute(&format!("SELECT pg_advisory_lock({key})"))
        .await
        .unwrap();
    let output = psql(&db, &m.script(None, None).unwrap());
    assert!(
        stderr(&output).contains(
            "another migrator holds the migration lock of \"public\".\"dbprep_schema_history\""
        ),
        "{}",
        stderr(&output)
    );
    let client = db.connect().await.unwrap();
    assert_eq!(
        scalar(
            &client,
            "SELECT to_regclass('dbprep_schema_history') IS NULL"
        )
        .await
        .as_deref(),
        Some("t")
    );
}

#[test]
fn a_script_names_versions_that_do_not_exist() {
    let m = set();
    assert_eq!(
        m.script(Some(7), None).unwrap_err().to_string(),
        "the script would start at version 7, which is not one of the embedded migrations"
    );
    assert!(matches!(
        m.script(None, Some(9)),
        Err(Error::UnknownTarget(9))
    ));
    let error = m.script(Some(3), Some(2)).unwrap_err();
    assert_eq!(
        error.to_string(),
        "the script would start at version 3 and end at 2: nothing to apply"
    );
}

#[tokio::test]
async fn a_script_runs_a_repeatable_migration_only_when_its_file_changed() {
    let db = database().await;
    let client = db.connect().await.unwrap();
    let versioned = (
        "V1__accounts.sql",
        "CREATE TABLE accounts (id bigint, name text);",
    );
    let first = migrations(&[
        versioned,
        (
            "R__views.sql",
            "SET ROLE NONE;\nCREATE OR REPLACE VIEW named AS SELECT id, name FROM accounts;",
        ),
    ]);
    let output = psql(&db, &first.script(None, None).unwrap());
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(crate::support::exists(&client, "named").await);
    as_upgrade_leaves_it(&first, &db).await;

    // From version 1 with an edited view: the view runs again, and its new
    // checksum is recorded (a run then finds nothing to do).
    let edited = migrations(&[
        versioned,
        (
            "R__views.sql",
            "CREATE OR REPLACE VIEW named AS SELECT id, name, name IS NULL AS anonymous FROM accounts;",
        ),
        ("V2__emails.sql", "ALTER TABLE accounts ADD COLUMN email text;"),
    ]);
    let script = edited.script(Some(1), None).unwrap();
    let output = psql(&db, &script);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        scalar(
            &client,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'named'"
        )
        .await
        .as_deref(),
        Some("3")
    );
    let report = Migrator::new(&edited).run(db.pool()).await.unwrap();
    assert!(
        report.was_up_to_date() && report.lock.is_none(),
        "{report:?}"
    );
    let status = Migrator::new(&edited).status(db.pool()).await.unwrap();
    assert!(
        matches!(
            status.repeatables[0].state,
            dbprep_runtime::RepeatableState::Applied { .. }
        ),
        "{:?}",
        status.repeatables
    );
}
