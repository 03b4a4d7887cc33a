//! Repeatable migrations (`R__name.sql`): applied after the versioned ones
//! whenever their checksum changes, in name order, each in one transaction
//! with its row; nothing at all when none changed.

use dbprep_runtime::{Error, Migrator, RepeatableState};

use crate::support::{applied, database, migrations, scalar};

const VERSIONED: [(&str, &str); 3] = [
    (
        "V1__accounts.sql",
        "CREATE TABLE accounts (id bigint PRIMARY KEY, email text);",
    ),
    (
        "V2__index.sql",
        "-- dbprep:no-transaction\nCREATE INDEX CONCURRENTLY accounts_email ON accounts (email);",
    ),
    (
        "V3__names.sql",
        "ALTER TABLE accounts ADD COLUMN name text;",
    ),
];

fn with(repeatables: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    VERSIONED
        .iter()
        .copied()
        .chain(repeatables.iter().copied())
        .collect()
}

fn names(report: &dbprep_runtime::Report) -> Vec<&str> {
    report.repeatables.iter().map(|r| r.name.as_str()).collect()
}

#[tokio::test]
async fn repeatables_run_after_the_versioned_ones_and_again_only_when_changed() {
    let db = database().await;
    let client = db.connect().await.unwrap();
    let first = migrations(&with(&[
        // Name order, not file order of creation: grants after views.
        ("R__views.sql", "CREATE OR REPLACE VIEW named_accounts AS SELECT id, name FROM accounts WHERE name IS NOT NULL;"),
        ("R__functions.sql", "CREATE OR REPLACE FUNCTION account_count() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM accounts $$;"),
    ]));
    let run = Migrator::new(&first).run(db.pool()).await.unwrap();
    assert_eq!(applied(&run), [1, 2, 3]);
    assert_eq!(names(&run), ["functions", "views"]);
    assert!(
        run.to_string()
            .contains("applied 2 repeatable migration(s):"),
        "{run}"
    );
    assert_eq!(
        scalar(&client, "SELECT account_count()::text")
            .await
            .as_deref(),
        Some("0")
    );

    // Nothing changed: no lock, nothing applied.
    let again = Migrator::new(&first).run(db.pool()).await.unwrap();
    assert!(again.was_up_to_date() && again.lock.is_none(), "{again:?}");

    // The view changed: it alone runs again.
    let edited = migrations(&with(&[
        ("R__views.sql", "CREATE OR REPLACE VIEW named_accounts AS SELECT id, name, email FROM accounts WHERE name IS NOT NULL;"),
        ("R__functions.sql", "CREATE OR REPLACE FUNCTION account_count() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM accounts $$;"),
    ]));
    let migrator = Migrator::new(&edited);
    let changed = migrator.run(db.pool()).await.unwrap();
    assert!(changed.applied.is_empty());
    assert_eq!(names(&changed), ["views"]);
    assert_eq!(
        scalar(
            &client,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'named_accounts'"
        )
        .await
        .as_deref(),
        Some("3")
    );
    assert_eq!(
        scalar(
            &client,
            "SELECT string_agg(name || ':' || regexp_replace(file, '^.*/', ''), ',' ORDER BY name) \
             FROM dbprep_schema_history_repeatables"
        )
        .await
        .as_deref(),
        Some("functions:R__functions.sql,views:R__views.sql")
    );
    let report = migrator.verify(db.pool()).await.unwrap();
    assert!(report.is_clean(), "{report}");

    // Status shows each with its state.
    let status = migrator.status(db.pool()).await.unwrap();
    let states: Vec<(&str, &RepeatableState)> = status
        .repeatables
        .iter()
        .map(|r| (r.name.as_str(), &r.state))
        .collect();
    assert!(
        matches!(
            states.as_slice(),
            [
                ("functions", RepeatableState::Applied { .. }),
                ("views", RepeatableState::Applied { .. })
            ]
        ),
        "{states:?}"
    );
    let outdated = Migrator::new(&first).status(db.pool()).await.unwrap();
    assert!(
        matches!(
            outdated.repeatables[1].state,
            RepeatableState::Changed { .. }
        ),
        "{:?}",
        outdated.repeatables
    );
}

#[tokio::test]
async fn a_failing_repeatable_names_its_line_and_leaves_no_row() {
    let db = database().await;
    let client = db.connect().await.unwrap();
    let set = migrations(&with(&[(
        "R__views.sql",
        "-- the view\nCREATE OR REPLACE VIEW v AS SELECT id, nam FROM accounts;",
    )]));
    let error = Migrator::new(&set).run(db.pool()).await.unwrap_err();
    let Error::Migration(failure) = &error else {
        panic!("{error}");
    };
    assert!(failure.repeatable);
    let text = error.to_string();
    assert!(
        text.starts_with("repeatable migration failed: ")
            && text.contains("R__views.sql:2:")
            && text.contains("column \"nam\" does not exist"),
        "{text}"
    );
    // The versioned migrations stay applied; the repeatable is not
    // recorded, so the next run tries it again.
    assert_eq!(crate::support::recorded(&client).await, [1, 2, 3]);
    assert_eq!(
        scalar(
            &client,
            "SELECT count(*) FROM dbprep_schema_history_repeatables"
        )
        .await
        .as_deref(),
        Some("0")
    );
    assert!(Migrator::new(&set).run(db.pool()).await.is_err());
}

#[tokio::test]
async fn a_run_to_an_older_target_leaves_the_repeatables_for_later() {
    let db = database().await;
    let set = migrations(&with(&[(
        "R__views.sql",
        "CREATE OR REPLACE VIEW named_accounts AS SELECT id, name FROM accounts;",
    )]));
    let old = Migrator::new(&set).target(1).run(db.pool()).await.unwrap();
    assert_eq!(applied(&old), [1]);
    assert!(old.repeatables.is_empty());
    let head = Migrator::new(&set).run(db.pool()).await.unwrap();
    assert_eq!((applied(&head), names(&head)), (vec![2, 3], vec!["views"]));
}
