//! Going back: `Migrator::revert` runs the down files newest first, each
//! with the removal of its history row, after checking that every one can
//! be undone.

use dbprep_runtime::{Error, Migrations, Migrator};

use crate::support::{applied, database, recorded, scalar, STORED_OBJECTS};

/// Diesel-style folders (`<timestamp>_<name>/up.sql` and `down.sql`), 200
/// of them, shaped like a real project's: extensions, tables, plpgsql
/// trigger functions and their triggers, columns, indexes (some built
/// concurrently, outside a transaction, both ways), views.
fn diesel_project(dir: &std::path::Path) {
    let write = |i: usize, up: String, down: String| {
        let folder = dir.join(format!("2024-01-01-{i:06}_step_{i}"));
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("up.sql"), up).unwrap();
        std::fs::write(folder.join("down.sql"), down).unwrap();
    };
    write(
        1,
        "CREATE EXTENSION IF NOT EXISTS pgcrypto;\nCREATE EXTENSION IF NOT EXISTS citext;".into(),
        "DROP EXTENSION citext;\nDROP EXTENSION pgcrypto;".into(),
    );
    for i in 2..=200 {
        let base = i - (i - 2) % 5;
        let (up, down) = match (i - 2) % 5 {
            0 => (
                format!("CREATE TABLE t{i} (id serial PRIMARY KEY, name citext NOT NULL, secret bytea, updated_at timestamptz);"),
                format!("DROP TABLE t{i};"),
            ),
            1 => (
                format!(
                    "CREATE FUNCTION touch_{i}() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n    NEW.updated_at := now();\n    \
                     NEW.secret := digest(NEW.name::text, 'sha256');\n    RETURN NEW;\nEND\n$$;\n\
                     CREATE TRIGGER t{base}_touch BEFORE INSERT OR UPDATE ON t{base} FOR EACH ROW EXECUTE FUNCTION touch_{i}();"
                ),
                format!("DROP TRIGGER t{base}_touch ON t{base};\nDROP FUNCTION touch_{i}();"),
            ),
            2 => (
                format!("ALTER TABLE t{base} ADD COLUMN note_{i} text DEFAULT 'none' CHECK (note_{i} <> '');"),
                format!("ALTER TABLE t{base} DROP COLUMN note_{i};"),
            ),
            3 if i % 2 == 0 => (
                format!("-- dbprep:no-transaction\nCREATE INDEX CONCURRENTLY t{base}_name_{i} ON t{base} (name);"),
                format!("-- dbprep:no-transaction\nDROP INDEX CONCURRENTLY t{base}_name_{i};"),
            ),
            3 => (
                format!("CREATE INDEX t{base}_name_{i} ON t{base} (lower(name::text));"),
                format!("DROP INDEX t{base}_name_{i};"),
            ),
            _ => (
                format!("CREATE VIEW v{i} AS SELECT id, name FROM t{base} WHERE updated_at IS NOT NULL;"),
                format!("DROP VIEW v{i};"),
            ),
        };
        write(i, up, down);
    }
}

/// The stored snapshot's objects, hashed: the schema as the last run left
/// it.
async fn schema_hash(client: &tokio_postgres::Client) -> String {
    scalar(client, STORED_OBJECTS).await.unwrap()
}

#[tokio::test]
async fn upgrade_downgrade_to_zero_and_upgrade_again_gives_the_same_schema() {
    let dir = tempfile::tempdir().unwrap();
    diesel_project(dir.path());
    let m = Migrations::from_dir(dir.path()).unwrap();
    assert_eq!(m.len(), 200);
    let db = database().await;
    let client = db.connect().await.unwrap();
    let empty = {
        // The schema of an empty database, as dbprep snapshots it.
        let none = Migrations::empty();
        let _ = Migrator::new(&none).stamp(db.pool(), None).await.unwrap();
        schema_hash(&client).await
    };
    let first = Migrator::new(&m).run(db.pool()).await.unwrap();
    assert_eq!(first.applied.len(), 200);
    let upgraded = schema_hash(&client).await;
    client
        .batch_execute("INSERT INTO t2 (name) VALUES ('Ada')")
        .await
        .unwrap();

    let dry = Migrator::new(&m).revert(db.pool(), 0, true).await.unwrap();
    assert_eq!(dry.reverted.len(), 200);
    assert_eq!(dry.reverted[0].version, m.head().unwrap());
    assert_eq!(recorded(&client).await.len(), 200, "a dry run runs nothing");

    let back = Migrator::new(&m).revert(db.pool(), 0, false).await.unwrap();
    println!(
        "200 diesel folders: upgrade {:?}, downgrade --to 0 {:?}",
        first.elapsed, back.elapsed
    );
    assert_eq!(back.reverted.len(), 200);
    assert_eq!(back.version, None);
    assert!(back.reverted[0].file.ends_with("/down.sql"), "{back}");
    assert!(recorded(&client).await.is_empty());
    assert_eq!(schema_hash(&client).await, empty);
    assert_eq!(
        scalar(
            &client,
            "SELECT count(*) FROM pg_extension WHERE extname IN ('pgcrypto', 'citext')"
        )
        .await
        .as_deref(),
        Some("0")
    );
    let verify = Migrator::new(&m).verify(db.pool()).await.unwrap();
    assert!(verify.findings.is_empty(), "{verify}");

    let again = Migrator::new(&m).run(db.pool()).await.unwrap();
    assert_eq!(again.applied.len(), 200);
    assert_eq!(schema_hash(&client).await, upgraded);
}

#[tokio::test]
async fn a_revert_that_cannot_be_done_is_refused_before_anything_runs() {
    let m = crate::support::migrations(&[
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        ("U1__a.sql", "DROP TABLE a;"),
        ("V2__b.sql", "CREATE TABLE b (id int);"),
        ("V3__c.sql", "CREATE TABLE c (id int);"),
        ("U3__c.sql", "DROP TABLE c;"),
    ]);
    let db = database().await;
    let report = Migrator::new(&m).run(db.pool()).await.unwrap();
    assert_eq!(applied(&report), [1, 2, 3]);
    let error = Migrator::new(&m)
        .revert(db.pool(), 0, false)
        .await
        .unwrap_err();
    assert!(matches!(&error, Error::Revert { to: 0, .. }), "{error}");
    assert!(
        error
            .to_string()
            .starts_with("cannot go back to version 0: version 2 (")
            && error
                .to_string()
                .contains("V2__b.sql) has no down migration; nothing was reverted"),
        "{error}"
    );
    let client = db.connect().await.unwrap();
    assert_eq!(recorded(&client).await, [1, 2, 3]);
    // Above the version without a down, it goes.
    let back = Migrator::new(&m).revert(db.pool(), 2, false).await.unwrap();
    assert_eq!(back.version, Some(2));
    assert_eq!(back.reverted[0].file.rsplit('/').next(), Some("U3__c.sql"));
    assert_eq!(recorded(&client).await, [1, 2]);
    assert_eq!(
        scalar(&client, "SELECT to_regclass('c') IS NULL")
            .await
            .as_deref(),
        Some("t")
    );

    // A file edited since it was applied: its down may undo something else.
    let edited = crate::support::migrations(&[
        ("V1__a.sql", "CREATE TABLE a (id bigint);"),
        ("U1__a.sql", "DROP TABLE a;"),
    ]);
    let error = Migrator::new(&edited)
        .revert(db.pool(), 0, false)
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("version 2 (b) is not one of this binary's migrations")
            && error.to_string().contains("version 1 (")
            && error
                .to_string()
                .contains("was applied from another version of the file"),
        "{error}"
    );
    assert_eq!(recorded(&client).await, [1, 2]);
}

#[tokio::test]
async fn a_failing_down_is_named_with_its_file_and_line_and_the_ones_before_stay_undone() {
    let m = crate::support::migrations(&[
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        ("U1__a.sql", "DROP TABLE a;"),
        ("V2__b.sql", "CREATE TABLE b (id int);"),
        ("U2__b.sql", "DROP TABLE b;\nSELECT missing FROM a;"),
        ("V3__c.sql", "CREATE TABLE c (id int);"),
        ("U3__c.sql", "DROP TABLE c;"),
    ]);
    let db = database().await;
    let report = Migrator::new(&m).run(db.pool()).await.unwrap();
    assert_eq!(applied(&report), [1, 2, 3]);
    let error = Migrator::new(&m)
        .revert(db.pool(), 0, false)
        .await
        .unwrap_err();
    let Error::Migration(failure) = &error else {
        panic!("{error}")
    };
    assert_eq!(failure.version, 2);
    assert!(failure.file.ends_with("U2__b.sql"), "{error}");
    assert_eq!(failure.position, Some((2, 8)));
    let client = db.connect().await.unwrap();
    assert_eq!(recorded(&client).await, [1, 2]);
    assert_eq!(
        scalar(&client, "SELECT to_regclass('b') IS NOT NULL")
            .await
            .as_deref(),
        Some("t")
    );
}

#[tokio::test]
async fn check_reversible_names_the_down_that_does_not_restore_the_schema() {
    let m = crate::support::migrations(&[
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        ("U1__a.sql", "DROP TABLE a;"),
        (
            "V2__b.sql",
            "ALTER TABLE a ADD COLUMN note text;\nCREATE INDEX a_note ON a (note);",
        ),
        // Forgets the column.
        ("U2__b.sql", "DROP INDEX a_note;"),
        ("V3__c.sql", "CREATE VIEW c AS SELECT id FROM a;"),
    ]);
    let server = dbprep_runtime::testing::TestServer::get()
        .unwrap()
        .admin_config();
    let report = Migrator::new(&m).check_reversible(&server).await.unwrap();
    assert_eq!(report.reversible, [1]);
    // The up after the faulty down fails: the check stops there.
    assert!(report.without_down.is_empty(), "{report}");
    assert_eq!(report.not_reversible.len(), 1, "{report}");
    let found = &report.not_reversible[0];
    assert_eq!(found.version, 2);
    assert!(found.file.ends_with("U2__b.sql"));
    assert!(
        found
            .differences
            .iter()
            .any(|d| d.starts_with("after the down: ") && d.contains("public.a.note")),
        "{report}"
    );
    assert!(
        found
            .differences
            .iter()
            .any(|d| d.starts_with("up again failed: ") && d.contains("already exists")),
        "{report}"
    );
    assert!(!report.is_clean());

    // With a down that undoes it all, the walk goes on to the end.
    let fixed = crate::support::migrations(&[
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        ("U1__a.sql", "DROP TABLE a;"),
        (
            "V2__b.sql",
            "ALTER TABLE a ADD COLUMN note text;\nCREATE INDEX a_note ON a (note);",
        ),
        (
            "U2__b.sql",
            "DROP INDEX a_note;\nALTER TABLE a DROP COLUMN note;",
        ),
        ("V3__c.sql", "CREATE VIEW c AS SELECT id FROM a;"),
    ]);
    let report = Migrator::new(&fixed)
        .check_reversible(&server)
        .await
        .unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.reversible, [1, 2]);
    assert_eq!(report.without_down, [3]);
}

#[tokio::test]
async fn check_reversible_proves_every_down_of_the_diesel_project() {
    let dir = tempfile::tempdir().unwrap();
    diesel_project(dir.path());
    let m = Migrations::from_dir(dir.path()).unwrap();
    let server = dbprep_runtime::testing::TestServer::get()
        .unwrap()
        .admin_config();
    let started = std::time::Instant::now();
    let report = Migrator::new(&m).check_reversible(&server).await.unwrap();
    println!(
        "check-reversible on 200 diesel folders: {:?}\n{report}",
        started.elapsed()
    );
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.reversible.len(), 200);
}
