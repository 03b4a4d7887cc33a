//! Baselines written for you: `squash` dumps the schema of the migrations
//! up to a version, and the test helper proves a baseline gives the schema
//! replaying them gives.

use dbprep_runtime::testing::{assert_baseline_equivalent, baseline_differences, TestServer};
use dbprep_runtime::{Migrations, Migrator, RowKind};

use crate::support::{applied, database, scalar};

/// Migrations with what a dump must carry: types, a function, a
/// trigger, a view, foreign keys, indexes, defaults, a sequence.
const FILES: [(&str, &str); 3] = [
    (
        "V1__accounts.sql",
        "CREATE TYPE plan AS ENUM ('free', 'paid');\n\
         CREATE TABLE accounts (id bigserial PRIMARY KEY, name text NOT NULL, plan plan NOT NULL DEFAULT 'free');\n\
         CREATE FUNCTION shout(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT upper(t) $$;",
    ),
    (
        "V2__orders.sql",
        "CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
         account_id bigint NOT NULL REFERENCES accounts ON DELETE CASCADE, total numeric(12, 2) CHECK (total >= 0));\n\
         CREATE INDEX orders_by_account ON orders (account_id);\n\
         CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 1000;",
    ),
    (
        "V3__audit.sql",
        "CREATE SCHEMA audit;\nCREATE TABLE audit.log (at timestamptz NOT NULL DEFAULT now(), what text);\n\
         CREATE FUNCTION audit.record() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO audit.log (what) VALUES (TG_OP); RETURN NEW; END $$;\n\
         CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION audit.record();",
    ),
];

/// A folder holding `files`, kept as long as the value.
fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, sql) in files {
        std::fs::write(dir.path().join(name), sql).unwrap();
    }
    dir
}

#[tokio::test]
async fn squash_writes_a_baseline_that_gives_the_schema_the_migrations_give() {
    let dir = folder(&FILES);
    let m = Migrations::from_dir(dir.path()).unwrap();
    let server = TestServer::get().unwrap().admin_config();
    let baseline = Migrator::new(&m).target(3).squash(&server).await.unwrap();
    assert_eq!(baseline.file_name, "B3__baseline.sql");
    // Nothing of dbprep's own tables.
    assert!(!baseline.sql.contains("dbprep_"), "{}", baseline.sql);
    std::fs::write(dir.path().join(&baseline.file_name), &baseline.sql).unwrap();
    // A fourth migration written after the squash.
    std::fs::write(
        dir.path().join("V4__notes.sql"),
        "ALTER TABLE accounts ADD COLUMN notes text;",
    )
    .unwrap();
    let with_baseline = Migrations::from_dir(dir.path()).unwrap();
    assert_baseline_equivalent(&with_baseline, 3).await;

    // A fresh database runs the baseline, then what came after it.
    let db = database().await;
    let report = Migrator::new(&with_baseline).run(db.pool()).await.unwrap();
    assert_eq!(applied(&report), [3, 4]);
    // The report names what ran: the baseline, not the migration of its
    // version.
    assert_eq!(
        (
            report.applied[0].name.as_str(),
            report.applied[0].file.as_str()
        ),
        ("baseline", with_baseline.baselines()[0].file())
    );
    let rows = Migrator::new(&with_baseline)
        .history_rows(db.pool())
        .await
        .unwrap();
    assert_eq!(rows[0].kind, RowKind::Baseline);
    let verify = Migrator::new(&with_baseline)
        .verify(db.pool())
        .await
        .unwrap();
    assert!(verify.is_clean(), "{verify}");
    let client = db.connect().await.unwrap();
    client
        .batch_execute("INSERT INTO accounts (name) VALUES ('a'); INSERT INTO orders (account_id, total) VALUES (1, 5000)")
        .await
        .unwrap();
    assert_eq!(
        scalar(
            &client,
            "SELECT shout(what) || ' ' || (SELECT count(*) FROM big_orders) FROM audit.log"
        )
        .await
        .as_deref(),
        Some("INSERT 1")
    );
}

#[tokio::test]
async fn a_baseline_that_differs_from_its_migrations_is_itemized() {
    let mut files = FILES[..2].to_vec();
    // Written by hand, it forgot the CHECK, the index and the view.
    files.push((
        "B2__baseline.sql",
        "CREATE TYPE plan AS ENUM ('free', 'paid');\n\
         CREATE TABLE accounts (id bigserial PRIMARY KEY, name text NOT NULL, plan plan NOT NULL DEFAULT 'free');\n\
         CREATE FUNCTION shout(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT upper(t) $$;\n\
         CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
         account_id bigint NOT NULL REFERENCES accounts ON DELETE CASCADE, total numeric(12, 2));",
    ));
    let dir = folder(&files);
    let m = Migrations::from_dir(dir.path()).unwrap();
    let differences = baseline_differences(&m, 2).await.unwrap();
    let all = differences.join("\n");
    assert!(all.contains("public.orders_by_account"), "{all}");
    assert!(all.contains("public.big_orders"), "{all}");
    assert!(all.contains("public.orders"), "{all}");
    // And without a baseline of that version, it says so.
    let error = baseline_differences(&m, 1).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot compare the baseline of version 1 with its migrations: find it: there is no baseline B1__*.sql"
    );
}
