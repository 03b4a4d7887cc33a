//! Fixtures against a real PostgreSQL: every column type, defaults,
//! identity columns, conflict policies, and errors that name the row and
//! column with nothing written.

use dbprep_runtime::testing::TestDatabase;
use dbprep_runtime::{Conflict, Error, Fixture, Fixtures, Migrations, Migrator, Outcome};

use crate::support::{database, exists, migrations, scalar};

static DEMO: Migrations = dbprep_macros::embed_migrations!("../migrations");
static DEMO_FIXTURES: Fixtures = dbprep_macros::embed_fixtures!("../fixtures");

fn fixture(json: &str) -> Fixture {
    Fixture::from_text("test".into(), "test.json".into(), json.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"))
}

const SCHEMA: &str = "
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE parents (id int PRIMARY KEY, name text NOT NULL CHECK (name <> ''));
CREATE TABLE kinds (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    serial_no serial,
    parent_id int REFERENCES parents (id),
    small     integer,
    big       bigint,
    exact     numeric(40, 20),
    flag      boolean,
    label     text NOT NULL DEFAULT 'unnamed',
    uid       uuid,
    at        timestamptz,
    day       date,
    doc       jsonb,
    numbers   int[],
    words     text[],
    feeling   mood,
    maybe     text
);
CREATE TABLE no_key (a int, b text);";

async fn with_schema() -> (TestDatabase, Migrator<'static>) {
    let db = database().await;
    let m: &'static Migrations = Box::leak(Box::new(migrations(&[("V1__schema.sql", SCHEMA)])));
    let migrator = Migrator::new(m);
    let _ = migrator.run(db.pool()).await.unwrap();
    (db, migrator)
}

#[tokio::test]
async fn the_demo_keypairs_load_once() {
    let db = database().await;
    let migrator = Migrator::new(&DEMO);
    let _ = migrator.run(db.pool()).await.unwrap();
    let keypairs = DEMO_FIXTURES.get("example-keypairs").unwrap();
    let report = migrator.populate(db.pool(), keypairs, None).await.unwrap();
    assert_eq!(report.outcome, Outcome::Populated);
    assert_eq!(report.rows, 8);
    let client = db.connect().await.unwrap();
    let admin = scalar(
        &client,
        "SELECT u.role::text FROM keypairs k JOIN users u ON u.id = k.user_id WHERE k.is_admin",
    )
    .await;
    assert_eq!(admin.as_deref(), Some("superadmin"));
    let again = migrator.populate(db.pool(), keypairs, None).await.unwrap();
    assert_eq!(again.outcome, Outcome::Unchanged);
    assert!(again.to_string().contains("nothing to do"));
}

#[tokio::test]
async fn json_values_reach_every_column_type_through_copy() {
    every_column_type(false).await;
}

#[tokio::test]
async fn json_values_reach_every_column_type_through_json_populate_recordset() {
    // A table that already holds rows takes the ON CONFLICT path.
    every_column_type(true).await;
}

async fn every_column_type(prefilled: bool) {
    let (db, migrator) = with_schema().await;
    if prefilled {
        let client = db.connect().await.unwrap();
        client
            .batch_execute("INSERT INTO kinds (small) VALUES (-100)")
            .await
            .unwrap();
        client
            .batch_execute("SELECT setval(pg_get_serial_sequence('kinds', 'id'), 1, false)")
            .await
            .unwrap();
    }
    let f = fixture(
        r#"{
        "parents": [{"id": 1, "name": "p"}],
        "kinds": [
          {"id": 10, "serial_no": 7, "parent_id": 1, "small": -5, "big": 9007199254740993, "exact": 12345678901234567890.12345678901234567890,
           "flag": true, "label": "full", "uid": "f38dea23-50fa-42a0-b5ae-338f5f4693f4", "at": "2024-01-02 03:04:05+02", "day": "2024-02-29",
           "doc": {"nested": [1, "two", null]}, "numbers": [1, 2, 3], "words": ["a", "b c"], "feeling": "happy", "maybe": null},
          {"small": 1, "doc": "just a string"}
        ]}"#,
    );
    let report = migrator.populate(db.pool(), &f, None).await.unwrap();
    assert_eq!(report.rows, 3);
    let client = db.connect().await.unwrap();
    let full = scalar(
        &client,
        "SELECT concat_ws('|', big, exact, flag, label, uid, at AT TIME ZONE 'UTC', day, doc::text, numbers::text, words::text, feeling, maybe IS NULL) FROM kinds WHERE id = 10",
    )
    .await;
    assert_eq!(
        full.as_deref(),
        Some("9007199254740993|12345678901234567890.12345678901234567890|t|full|f38dea23-50fa-42a0-b5ae-338f5f4693f4|2024-01-02 01:04:05|2024-02-29|{\"nested\": [1, \"two\", null]}|{1,2,3}|{a,\"b c\"}|happy|t")
    );
    // Absent keys get the column's default, a JSON string stays a string.
    let second = scalar(&client, "SELECT concat_ws('|', id > 10, label, doc::text, serial_no > 7) FROM kinds WHERE small = 1").await;
    assert_eq!(second.as_deref(), Some("t|unnamed|\"just a string\"|t"));
}

#[tokio::test]
async fn identity_and_serial_sequences_move_past_given_keys() {
    let (db, migrator) = with_schema().await;
    let _ = migrator
        .populate(
            db.pool(),
            &fixture(r#"{"kinds": [{"id": 41, "serial_no": 99}]}"#),
            None,
        )
        .await
        .unwrap();
    let client = db.connect().await.unwrap();
    client
        .batch_execute("INSERT INTO kinds (small) VALUES (0)")
        .await
        .unwrap();
    let next = scalar(
        &client,
        "SELECT id || ',' || serial_no FROM kinds WHERE small = 0",
    )
    .await;
    assert_eq!(next.as_deref(), Some("42,100"));
}

async fn count(db: &TestDatabase, table: &str) -> String {
    let client = db.connect().await.unwrap();
    scalar(&client, &format!("SELECT count(*) FROM {table}"))
        .await
        .unwrap()
}

async fn refused(json: &str) -> (String, TestDatabase) {
    let (db, migrator) = with_schema().await;
    let error = migrator
        .populate(db.pool(), &fixture(json), None)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Fixture(_)), "{error}");
    // Nothing of the fixture is written, not even the tables before the bad one.
    assert_eq!(count(&db, "parents").await, "0");
    let client = db.connect().await.unwrap();
    if exists(&client, "public.dbprep_fixture_history").await {
        assert_eq!(count(&db, "public.dbprep_fixture_history").await, "0");
    }
    (error.to_string(), db)
}

#[tokio::test]
async fn an_unknown_table_is_named_before_anything_is_written() {
    let (message, _db) =
        refused(r#"{"parents": [{"id": 1, "name": "p"}], "parrots": [{"id": 1}]}"#).await;
    assert!(
        message.starts_with("fixture 'test': table parrots: no such table"),
        "{message}"
    );
}

#[tokio::test]
async fn an_unknown_column_is_named_with_its_row() {
    let (message, _db) =
        refused(r#"{"parents": [{"id": 1, "name": "p"}, {"id": 2, "nmae": "typo"}]}"#).await;
    assert!(message.starts_with("fixture 'test': table parents, row 1 ($.parents[1]), column nmae, value \"typo\": no such column"), "{message}");
}

#[tokio::test]
async fn a_value_that_does_not_convert_is_named_with_row_and_column() {
    let (message, _db) = refused(r#"{"parents": [{"id": 1, "name": "p"}], "kinds": [{"small": 1}, {"small": 2}, {"small": "abc"}]}"#).await;
    assert!(
        message.starts_with("fixture 'test': table kinds, row 2 ($.kinds[2]), column small, value \"abc\": invalid input syntax for type integer: \"abc\" (SQLSTATE 22P02)"),
        "{message}"
    );
}

#[tokio::test]
async fn a_constraint_violation_is_named_with_its_row() {
    let (message, _db) =
        refused(r#"{"parents": [{"id": 1, "name": "p"}, {"id": 2, "name": ""}]}"#).await;
    assert!(
        message.contains("table parents, row 1 ($.parents[1])"),
        "{message}"
    );
    assert!(message.contains("violates check constraint"), "{message}");
    let (message, _db) = refused(
        r#"{"parents": [{"id": 1, "name": "p"}], "kinds": [{"parent_id": 1}, {"parent_id": 7}]}"#,
    )
    .await;
    assert!(
        message.contains("table kinds, row 1 ($.kinds[1])"),
        "{message}"
    );
    assert!(
        message.contains("violates foreign key constraint"),
        "{message}"
    );
}

#[tokio::test]
async fn two_rows_with_one_key_are_refused_client_side() {
    let (message, _db) =
        refused(r#"{"parents": [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]}"#).await;
    assert!(
        message.contains("row 1 ($.parents[1]): same primary key (id) = (1) as row 0"),
        "{message}"
    );
}

#[tokio::test]
async fn table_names_cannot_inject_sql() {
    let (message, db) = refused(
        r#"{"parents": [{"id": 1, "name": "p"}], "no_key\"; DROP TABLE no_key; --": [{"a": 1}]}"#,
    )
    .await;
    assert!(message.contains("no such table"), "{message}");
    let client = db.connect().await.unwrap();
    assert!(exists(&client, "no_key").await);
}

#[tokio::test]
async fn conflict_policies_skip_update_or_refuse() {
    let (db, migrator) = with_schema().await;
    let client = db.connect().await.unwrap();
    client
        .batch_execute("INSERT INTO parents VALUES (1, 'original')")
        .await
        .unwrap();
    let rows = r#""parents": [{"id": 1, "name": "from fixture"}, {"id": 2, "name": "new"}]"#;

    // insert (the default mode) skips the existing key.
    let skip = migrator
        .populate(db.pool(), &fixture(&format!("{{{rows}}}")), None)
        .await
        .unwrap();
    assert_eq!(skip.rows, 1);
    assert_eq!(
        scalar(&client, "SELECT name FROM parents WHERE id = 1")
            .await
            .as_deref(),
        Some("original")
    );

    // __mode update, changed content: populated again, updating.
    let update = fixture(&format!(r#"{{"__mode": "update", {rows}}}"#));
    let report = migrator.populate(db.pool(), &update, None).await.unwrap();
    assert!(matches!(report.outcome, Outcome::Repopulated { .. }));
    assert_eq!(
        scalar(&client, "SELECT name FROM parents WHERE id = 1")
            .await
            .as_deref(),
        Some("from fixture")
    );

    // An explicit policy overrides the mode: error refuses the existing key.
    let strict = fixture(&format!(r#"{{"__mode": "update", {rows}, "kinds": []}}"#));
    let error = migrator
        .populate(db.pool(), &strict, Some(Conflict::Error))
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("duplicate key value violates unique constraint"),
        "{error}"
    );

    // Update needs a primary key.
    let error = migrator
        .populate(
            db.pool(),
            &fixture(r#"{"__mode": "update", "no_key": [{"a": 1}]}"#),
            None,
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("no primary key"), "{error}");
}

#[tokio::test]
async fn an_update_asked_for_writes_what_an_insert_of_the_same_content_skipped() {
    let (db, migrator) = with_schema().await;
    let client = db.connect().await.unwrap();
    let name =
        |client| async move { scalar(client, "SELECT name FROM parents WHERE id = 1").await };
    let first = fixture(r#"{"parents": [{"id": 1, "name": "first"}]}"#);
    let populated = migrator.populate(db.pool(), &first, None).await.unwrap();
    assert_eq!(populated.rows, 1);
    // Changed content, in insert mode: the existing key is skipped, and
    // the new content is recorded as populated.
    let changed = fixture(r#"{"parents": [{"id": 1, "name": "changed"}]}"#);
    let skipped = migrator.populate(db.pool(), &changed, None).await.unwrap();
    assert_eq!(skipped.rows, 0);
    assert_eq!(name(&client).await.as_deref(), Some("first"));
    // The same content again under its own mode: nothing to do.
    let again = migrator.populate(db.pool(), &changed, None).await.unwrap();
    assert_eq!(again.outcome, Outcome::Unchanged);
    // An update asked for loads it, though the content is the same.
    let update = migrator
        .populate(db.pool(), &changed, Some(Conflict::Update))
        .await
        .unwrap();
    assert_eq!(
        (update.outcome.clone(), update.rows),
        (Outcome::Reloaded, 1)
    );
    assert!(
        update.to_string().contains("(loaded again, as asked)"),
        "{update}"
    );
    assert_eq!(name(&client).await.as_deref(), Some("changed"));
}

#[tokio::test]
async fn an_empty_table_does_not_stop_the_tables_after_it() {
    let (db, migrator) = with_schema().await;
    let f = fixture(
        r#"{"kinds": [], "parents": [{"id": 1, "name": "p"}], "no_key": [{"a": 1}, {"b": "x"}]}"#,
    );
    let report = migrator.populate(db.pool(), &f, None).await.unwrap();
    assert_eq!(
        report.tables,
        [
            ("kinds".to_owned(), 0),
            ("parents".to_owned(), 1),
            ("no_key".to_owned(), 2)
        ]
    );
}

#[tokio::test]
async fn verify_reports_a_fixture_changed_since_it_was_populated() {
    let (db, migrator) = with_schema().await;
    let before = fixture(r#"{"parents": [{"id": 1, "name": "p"}]}"#);
    let _ = migrator.populate(db.pool(), &before, None).await.unwrap();
    let changed = fixture(r#"{"parents": [{"id": 1, "name": "q"}]}"#);
    let embedded = Fixtures::from_dir({
        let dir = tempfile::tempdir().unwrap().keep();
        std::fs::write(dir.join("test.json"), changed.text()).unwrap();
        dir
    })
    .unwrap();
    let report = migrator
        .clone()
        .fixtures(&embedded)
        .verify(db.pool())
        .await
        .unwrap();
    assert!(!report.is_clean(), "{report}");
    assert!(report.to_string().contains("fixture 'test'"), "{report}");
    assert!(
        report
            .to_string()
            .contains("changed since it was populated"),
        "{report}"
    );
    let same = Fixtures::from_dir({
        let dir = tempfile::tempdir().unwrap().keep();
        std::fs::write(dir.join("test.json"), before.text()).unwrap();
        dir
    })
    .unwrap();
    assert!(migrator
        .fixtures(&same)
        .verify(db.pool())
        .await
        .unwrap()
        .is_clean());
}
