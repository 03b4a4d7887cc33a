//! The compile-time checks at run time: the same answer for a folder read
//! by `Migrations::from_dir`, and no false alarm on a corpus of tricky but
//! valid migrations, which PostgreSQL applies whole and statement by
//! statement.

use std::path::Path;

use dbprep_runtime::__private::read_migrations;
use dbprep_runtime::{Migrations, Migrator};

use crate::support::{database, exists, recorded};

const MACROS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../dbprep-macros/tests");

/// The messages of a trybuild `.stderr` file: each `error: …` up to its
/// ` --> ` line.
fn compile_errors(stderr: &str) -> Vec<String> {
    let mut errors = Vec::new();
    for block in stderr.split("error: ").skip(1) {
        let message = block.split("\n --> ").next().unwrap_or(block);
        // rustc indents the continuation lines of a message by 7 spaces.
        errors.push(message.replace("\n       ", "\n"));
    }
    errors
}

#[test]
fn run_time_reading_refuses_what_the_macro_refuses_with_the_same_message() {
    let mut compared = 0;
    for entry in std::fs::read_dir(Path::new(MACROS).join("ui")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "stderr") {
            continue;
        }
        let case = path.file_stem().unwrap().to_str().unwrap().to_owned();
        if case.starts_with("test_") {
            continue; // a misuse of the test attribute, on a valid folder
        }
        let source = std::fs::read_to_string(path.with_extension("rs")).unwrap();
        let Some(folder) = source
            .split("embed_migrations!(\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
        else {
            continue; // not a folder case (a bad argument)
        };
        if source.contains(&format!("\"{folder}\",")) {
            continue; // an option's error (lint = …), not the folder's
        }
        let expected = compile_errors(&std::fs::read_to_string(&path).unwrap());
        let found = read_migrations(&Path::new(MACROS).join("..").join(folder), folder)
            .expect_err(&case)
            .0
            .iter()
            .map(|e| e.to_string().replace("$DIR", ""))
            .collect::<Vec<_>>();
        assert_eq!(found, expected, "{case}");
        compared += 1;
    }
    assert!(compared >= 18, "only {compared} cases compared");
}

#[tokio::test]
async fn a_refused_folder_fails_before_anything_is_written() {
    let db = database().await;
    let error = Migrations::from_dir(Path::new(MACROS).join("cases/commit")).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("V1__a.sql:3:1: COMMIT inside a migration"),
        "{error}"
    );
    let client = db.connect().await.unwrap();
    assert!(!exists(&client, "dbprep_schema_history").await);
    assert!(!exists(&client, "a").await);
}

fn corpus() -> Migrations {
    Migrations::from_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/corpus"))
        .unwrap_or_else(|e| panic!("false alarm:\n{e}"))
}

#[test]
fn corpus_has_at_least_forty_tricky_migrations_and_no_false_alarm() {
    assert!(corpus().len() >= 40);
}

#[tokio::test]
async fn corpus_applies_whole_on_postgresql() {
    let db = database().await;
    let corpus = corpus();
    let report = Migrator::new(&corpus)
        .run(db.pool())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.applied.len(), corpus.len());
    let client = db.connect().await.unwrap();
    assert_eq!(recorded(&client).await.len(), corpus.len());
}

#[tokio::test]
async fn corpus_splits_where_the_server_does() {
    // Each statement sent alone must be valid: a wrong split would cut one
    // in two and the server would reject both halves.
    let db = database().await;
    let client = db.connect().await.unwrap();
    for m in corpus().iter() {
        for statement in m.statements() {
            if let Err(e) = client.simple_query(statement).await {
                panic!(
                    "{}: statement {statement:?} failed alone: {}",
                    m.file(),
                    e.as_db_error()
                        .map_or_else(|| e.to_string(), |d| d.message().to_owned())
                );
            }
        }
    }
}

#[test]
fn the_lint_raises_no_false_alarm_on_the_corpus_or_the_demo() {
    // The corpus indexes, reindexes and clusters tables it creates in the
    // same file: nobody else uses them yet.
    let findings = corpus().lint();
    assert!(findings.is_empty(), "{findings:#?}");
    let demo = Migrations::from_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations")).unwrap();
    demo.assert_lint_clean();
}

#[test]
fn the_lint_names_file_line_and_rule_and_skips_what_a_baseline_covers() {
    let m = crate::support::migrations(&[
        ("V1__users.sql", "CREATE TABLE users (id int, email text);"),
        (
            "V2__email_index.sql",
            "-- speeds up sign-in\nCREATE INDEX users_email ON users (email);",
        ),
        (
            "V3__email_required.sql",
            "ALTER TABLE users ALTER COLUMN email SET NOT NULL;",
        ),
    ]);
    let findings = m.lint();
    let found: Vec<(String, usize, &str)> = findings
        .iter()
        .map(|f| {
            (
                f.file.rsplit('/').next().unwrap().to_owned(),
                f.line,
                f.rule.name(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("V2__email_index.sql".to_owned(), 2, "create-index"),
            ("V3__email_required.sql".to_owned(), 1, "set-not-null"),
        ]
    );
    assert_eq!(m.lint_since(Some(2)).len(), 1);
    let panic = std::panic::catch_unwind(|| m.assert_lint_clean()).unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(
        message.starts_with("2 statement(s) would block the application's traffic:\n")
            && message
                .contains("V2__email_index.sql:2:1: [create-index] CREATE INDEX blocks writes"),
        "{message}"
    );
}
