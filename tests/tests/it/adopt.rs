//! Switching tools: `Migrator::adopt` reads the history another tool left
//! (its table and rows made here exactly as that tool makes them), checks
//! it against the embedded files and stamps dbprep's history; the next run
//! applies only what is new.

use dbprep_runtime::{Adopt, AdoptCheck, Error, Migrations, Migrator, Tool};

use crate::support::{database, recorded, scalar};

/// A migrations folder written byte for byte (CRLF and all), read back as
/// `embed_migrations!` reads it.
fn folder(files: &[(&str, &str)]) -> (tempfile::TempDir, Migrations) {
    let dir = tempfile::tempdir().unwrap();
    for (path, sql) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, sql).unwrap();
    }
    let m = Migrations::from_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    (dir, m)
}

/// Adopt with `adopt`: the report, and each version with its check.
async fn adopt(
    migrator: &Migrator<'_>,
    db: &dbprep_runtime::testing::TestDatabase,
    adopt: Adopt,
) -> (dbprep_runtime::AdoptReport, Vec<(i64, AdoptCheck)>) {
    let report = migrator.adopt(db.pool(), &adopt).await.unwrap();
    let checks = report
        .adopted
        .iter()
        .map(|a| (a.version, a.check))
        .collect();
    (report, checks)
}

const SQLX_FILES: [(&str, &str); 4] = [
    (
        "20240101000001_users.sql",
        "-- Add migration script here\nCREATE TABLE users (id bigint PRIMARY KEY, name text);\n",
    ),
    (
        "20240101000002_posts.sql",
        "CREATE TABLE posts (\r\n    id bigint PRIMARY KEY,\r\n    user_id bigint REFERENCES users\r\n);\r\n",
    ),
    (
        "20240101000003_posts_by_user.sql",
        "-- no-transaction\nCREATE INDEX CONCURRENTLY posts_by_user ON posts (user_id);\n",
    ),
    (
        "20240101000004_titles.sql",
        "ALTER TABLE posts ADD COLUMN title text;\n",
    ),
];

/// The first `applied` of `files` run and recorded as sqlx 0.8 does: its
/// table (`sideeffects.md`), the SHA-384 of each file's text, the
/// execution time in nanoseconds.
async fn sqlx_applied(client: &tokio_postgres::Client, files: &[(&str, &str)], applied: usize) {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
                version BIGINT PRIMARY KEY,
                description TEXT NOT NULL,
                installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
                success BOOLEAN NOT NULL,
                checksum BYTEA NOT NULL,
                execution_time BIGINT NOT NULL
            );",
        )
        .await
        .unwrap();
    for (file, sql) in &files[..applied] {
        let (version, rest) = file.split_once('_').unwrap();
        let description = rest.trim_end_matches(".sql").replace('_', " ");
        client.batch_execute(sql).await.unwrap();
        client
            .batch_execute(&format!(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                 VALUES ({version}, '{description}', true, sha384(convert_to($f${sql}$f$, 'UTF8')), 1234567)"
            ))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_sqlx_database_is_adopted_and_only_what_is_new_runs() {
    let (_dir, m) = folder(&SQLX_FILES);
    let db = database().await;
    let client = db.connect().await.unwrap();
    sqlx_applied(&client, &SQLX_FILES, 3).await;
    let migrator = Migrator::new(&m);

    let dry = migrator
        .adopt(db.pool(), &Adopt::new(Tool::Sqlx).dry_run(true))
        .await
        .unwrap();
    assert_eq!(dry.adopted.len(), 3);
    assert!(!crate::support::exists(&client, "dbprep_schema_history").await);

    let report = migrator
        .adopt(db.pool(), &Adopt::new(Tool::Sqlx))
        .await
        .unwrap();
    assert_eq!(report.rows_read, 3);
    let adopted: Vec<(i64, AdoptCheck)> = report
        .adopted
        .iter()
        .map(|a| (a.version, a.check))
        .collect();
    assert_eq!(
        adopted,
        [
            (20240101000001, AdoptCheck::Checksum),
            // Written with CRLF line ends: sqlx hashed them.
            (20240101000002, AdoptCheck::Checksum),
            (20240101000003, AdoptCheck::Checksum),
        ]
    );
    assert_eq!(report.pending, [20240101000004]);
    assert!(report.out_of_order.is_empty());
    let text = report.to_string();
    assert!(
        text.contains("adopted 3 version(s) from sqlx's history \"public\".\"_sqlx_migrations\"")
            && text.contains("the next upgrade applies 20240101000004"),
        "{text}"
    );
    // sqlx's times are kept: 1,234,567 ns is 1 ms.
    assert_eq!(
        scalar(
            &client,
            "SELECT string_agg(execution_ms::text || kind, ',') FROM dbprep_schema_history"
        )
        .await
        .as_deref(),
        Some("1migration,1migration,1migration")
    );

    let run = migrator.run(db.pool()).await.unwrap();
    assert_eq!(crate::support::applied(&run), [20240101000004]);
    assert_eq!(recorded(&client).await.len(), 4);
    assert!(migrator.verify(db.pool()).await.unwrap().is_clean());
    // sqlx's table is as sqlx left it.
    assert_eq!(
        scalar(&client, "SELECT count(*) FROM _sqlx_migrations")
            .await
            .as_deref(),
        Some("3")
    );

    // Adopting again finds everything recorded and stamps nothing.
    let again = migrator
        .adopt(db.pool(), &Adopt::new(Tool::Sqlx))
        .await
        .unwrap();
    assert!(again.adopted.is_empty());
    assert_eq!(again.already_recorded.len(), 3);
}

#[tokio::test]
async fn an_edited_file_a_failed_row_and_an_unknown_version_stamp_nothing() {
    let db = database().await;
    let client = db.connect().await.unwrap();
    sqlx_applied(&client, &SQLX_FILES, 3).await;
    client
        .batch_execute(
            "UPDATE _sqlx_migrations SET success = false WHERE version = 20240101000003;
             INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES (20240201000000, 'from a newer branch', true, '\\x00', 1);",
        )
        .await
        .unwrap();
    let mut edited = SQLX_FILES;
    edited[0].1 = "CREATE TABLE users (id bigint PRIMARY KEY, name text, email text);\n";
    let (_dir, m) = folder(&edited);
    let error = Migrator::new(&m)
        .adopt(db.pool(), &Adopt::new(Tool::Sqlx))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Adopt { problems, .. } if problems.len() == 3),
        "{error}"
    );
    let text = error.to_string();
    for expected in [
        "cannot adopt the database from sqlx's history \"public\".\"_sqlx_migrations\": ",
        "20240101000001_users.sql is not the file sqlx applied (its checksum differs): the file was edited since",
        "version 20240101000003 (posts by user) failed under sqlx: finish or undo it with sqlx first, then adopt",
        "version 20240201000000 (from a newer branch) is not among the embedded migrations",
        "; nothing was stamped",
    ] {
        assert!(text.contains(expected), "{expected:?} not in {text}");
    }
    assert_eq!(
        scalar(&client, "SELECT count(*) FROM dbprep_schema_history")
            .await
            .as_deref(),
        Some("0")
    );

    let missing = Migrator::new(&m)
        .adopt(db.pool(), &Adopt::new(Tool::Refinery).schema("app"))
        .await
        .unwrap_err();
    assert_eq!(
        missing.to_string(),
        "cannot adopt the database from refinery's history \"app\".\"refinery_schema_history\": the table does not exist \
         (name its schema with --schema, or the table with --table, if refinery was configured so); nothing was stamped"
    );
}

#[tokio::test]
async fn a_refinery_database_is_adopted_with_refinerys_checksums() {
    // The checksums are refinery-core's own for these names and texts.
    let files = [
        (
            "V1__initial.sql",
            "CREATE TABLE persons (id int, name varchar(255), city varchar(255));\n",
        ),
        (
            "V2__add_cars.sql",
            "-- cars\r\nCREATE TABLE cars (id int);\r\n",
        ),
        ("V3__add_brand.sql", "ALTER TABLE cars ADD brand text;\n"),
    ];
    let (_dir, m) = folder(&files);
    let db = database().await;
    let client = db.connect().await.unwrap();
    client
        .batch_execute(&format!(
            // refinery's ASSERT_MIGRATIONS_TABLE_QUERY and insert_migration_query.
            "CREATE TABLE IF NOT EXISTS refinery_schema_history(
                 version INT4 PRIMARY KEY,
                 name VARCHAR(255),
                 applied_on VARCHAR(255),
                 checksum VARCHAR(255));
             {}{}
             INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES (1, 'initial', '2024-03-01T10:00:00Z', '9435430460266820252');
             INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES (2, 'add_cars', '2024-03-02T10:00:00Z', '16101529341878042924');",
            files[0].1, files[1].1
        ))
        .await
        .unwrap();
    let migrator = Migrator::new(&m);
    let (report, adopted) = adopt(&migrator, &db, Adopt::new(Tool::Refinery)).await;
    assert_eq!(report.pending, [3]);
    assert_eq!(
        adopted,
        [(1, AdoptCheck::Checksum), (2, AdoptCheck::Checksum)]
    );
    let run = migrator.run(db.pool()).await.unwrap();
    assert_eq!(crate::support::applied(&run), [3]);
    assert!(migrator.verify(db.pool()).await.unwrap().is_clean());
}

#[tokio::test]
async fn a_diesel_database_is_adopted_by_version_and_its_downs_still_revert() {
    let files = [
        (
            "00000000000000_diesel_initial_setup/up.sql",
            "CREATE OR REPLACE FUNCTION diesel_manage_updated_at(_tbl regclass) RETURNS VOID AS $$\nBEGIN\n    EXECUTE format('CREATE TRIGGER set_updated_at BEFORE UPDATE ON %s FOR EACH ROW EXECUTE PROCEDURE diesel_set_updated_at()', _tbl);\nEND;\n$$ LANGUAGE plpgsql;\n",
        ),
        (
            "00000000000000_diesel_initial_setup/down.sql",
            "DROP FUNCTION IF EXISTS diesel_manage_updated_at(_tbl regclass);\n",
        ),
        (
            "2019-02-26-002946_create_users/up.sql",
            "CREATE TABLE users (id SERIAL PRIMARY KEY, name VARCHAR NOT NULL);\n",
        ),
        ("2019-02-26-002946_create_users/down.sql", "DROP TABLE users;\n"),
        (
            "2019-03-01-120000_create_posts/up.sql",
            "CREATE TABLE posts (id SERIAL PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users);\n",
        ),
        ("2019-03-01-120000_create_posts/down.sql", "DROP TABLE posts;\n"),
    ];
    let (_dir, m) = folder(&files);
    let db = database().await;
    let client = db.connect().await.unwrap();
    client
        .batch_execute(&format!(
            // diesel's setup_migration_table.sql; versions are the folders'
            // digits, dashes dropped.
            "CREATE TABLE IF NOT EXISTS __diesel_schema_migrations (
                 version VARCHAR(50) PRIMARY KEY NOT NULL,
                 run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
             );
             {}{}
             INSERT INTO __diesel_schema_migrations (version) VALUES ('00000000000000');
             INSERT INTO __diesel_schema_migrations (version) VALUES ('20190226002946');",
            files[0].1, files[2].1
        ))
        .await
        .unwrap();
    let migrator = Migrator::new(&m);
    let (report, adopted) = adopt(&migrator, &db, Adopt::new(Tool::Diesel)).await;
    assert_eq!(
        adopted,
        [
            (0, AdoptCheck::VersionOnly),
            (20190226002946, AdoptCheck::VersionOnly)
        ]
    );
    assert_eq!(report.pending, [20190301120000]);
    let run = migrator.run(db.pool()).await.unwrap();
    assert_eq!(crate::support::applied(&run), [20190301120000]);
    // diesel's own migrations ran their up files: their downs undo them.
    let reverted = migrator.revert(db.pool(), 0, false).await.unwrap();
    assert_eq!(reverted.reverted.len(), 2);
    assert!(!crate::support::exists(&client, "users").await);
}

#[tokio::test]
async fn a_flyway_database_with_a_baseline_in_its_own_schema_is_adopted() {
    let files = [
        (
            "V1__accounts.sql",
            "CREATE TABLE accounts (id bigint PRIMARY KEY);\n",
        ),
        (
            "V2__emails.sql",
            "-- emails\r\nALTER TABLE accounts ADD COLUMN email text;\r\n",
        ),
        (
            "V3__email_index.sql",
            "CREATE INDEX accounts_email ON accounts (email);\n",
        ),
        (
            "V4__names.sql",
            "ALTER TABLE app.accounts ADD COLUMN name text;\n",
        ),
        (
            "R__account_emails.sql",
            "CREATE OR REPLACE VIEW app.account_emails AS SELECT id, email FROM app.accounts;\n",
        ),
    ];
    let (_dir, m) = folder(&files);
    let db = database().await;
    let client = db.connect().await.unwrap();
    // The schema made by hand before Flyway, Flyway's baseline at 1, then
    // 2 and 3 migrated by Flyway; the checksums are the CRC-32 of each
    // file's lines (computed with zlib, not by dbprep).
    client
        .batch_execute(&format!(
            "CREATE SCHEMA app;
             SET search_path = app;
             {}{}{}{}
             CREATE TABLE app.flyway_schema_history (
                 installed_rank INT NOT NULL,
                 version VARCHAR(50),
                 description VARCHAR(200) NOT NULL,
                 type VARCHAR(20) NOT NULL,
                 script VARCHAR(1000) NOT NULL,
                 checksum INTEGER,
                 installed_by VARCHAR(100) NOT NULL,
                 installed_on TIMESTAMP NOT NULL DEFAULT now(),
                 execution_time INTEGER NOT NULL,
                 success BOOLEAN NOT NULL
             );
             ALTER TABLE app.flyway_schema_history ADD CONSTRAINT flyway_schema_history_pk PRIMARY KEY (installed_rank);
             CREATE INDEX flyway_schema_history_s_idx ON app.flyway_schema_history (success);
             INSERT INTO app.flyway_schema_history VALUES
                 (1, '1', '<< Flyway Baseline >>', 'BASELINE', '<< Flyway Baseline >>', NULL, 'deploy', now(), 0, true),
                 (2, '2', 'emails', 'SQL', 'V2__emails.sql', -1403907662, 'deploy', now(), 12, true),
                 (3, '3', 'email index', 'SQL', 'V3__email_index.sql', 624062696, 'deploy', now(), 7, true),
                 (4, NULL, 'account emails', 'SQL', 'R__account_emails.sql', 416635988, 'deploy', now(), 3, true);
             RESET search_path;",
            files[0].1, files[1].1, files[2].1, files[4].1
        ))
        .await
        .unwrap();
    let migrator = Migrator::new(&m);
    let (report, adopted) = adopt(&migrator, &db, Adopt::new(Tool::Flyway).schema("app")).await;
    // Flyway ran the repeatable with this very file: it is not run again.
    assert_eq!(report.repeatables, ["account_emails"]);
    assert_eq!((report.rows_read, report.pending.as_slice()), (4, &[4][..]));
    assert_eq!(
        adopted,
        [
            (1, AdoptCheck::Baseline),
            (2, AdoptCheck::Checksum),
            (3, AdoptCheck::Checksum)
        ]
    );
    assert_eq!(
        scalar(&client, "SELECT string_agg(kind || ':' || applied_by, ',' ORDER BY version) FROM dbprep_schema_history")
            .await
            .as_deref(),
        Some(format!("stamp:{0},migration:deploy,migration:deploy", db.config().get_user().unwrap()).as_str())
    );
    let run = migrator.run(db.pool()).await.unwrap();
    assert_eq!(crate::support::applied(&run), [4]);
    assert!(run.repeatables.is_empty(), "{run}");
}
