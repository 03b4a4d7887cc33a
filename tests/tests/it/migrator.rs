//! Applying migrations: fresh databases, no-op start-ups, the pipelined
//! batch and its failures, the lock, no-transaction files, targets, stamp.

use std::time::Duration;

use dbprep_runtime::testing::TestDatabase;
use dbprep_runtime::{
    Drift, Error, Fixture, LockMode, MigrationError, Migrations, Migrator, Policy, RepairOptions,
    State,
};
use tokio_postgres::error::SqlState;

use crate::support::{
    applied, database, drop_role, eventually, exists, login_role, migrations, recorded,
    run_in_background, scalar, SLEEPING,
};

static DEMO: Migrations = dbprep_macros::embed_migrations!("../migrations");

fn five(third: &str, fifth: &str) -> Migrations {
    migrations(&[
        ("V1__a.sql", "CREATE TABLE a (id int PRIMARY KEY);"),
        ("V2__b.sql", "CREATE TABLE b (id int);"),
        ("V3__c.sql", third),
        ("V4__d.sql", "CREATE TABLE d (id int);"),
        ("V5__e.sql", fifth),
    ])
}

#[tokio::test]
async fn fresh_database_gets_the_whole_schema_and_its_history() {
    let db = database().await;
    let report = Migrator::new(&DEMO).run(db.pool()).await.unwrap();
    assert_eq!(applied(&report), [1, 2, 3, 4, 5]);
    assert_eq!(report.version, Some(5));
    let client = db.connect().await.unwrap();
    assert_eq!(recorded(&client).await, [1, 2, 3, 4, 5]);
    assert!(exists(&client, "keypairs").await);
    assert!(exists(&client, "ix_keypairs_user_id").await);
    let kinds = scalar(
        &client,
        "SELECT string_agg(DISTINCT kind, ',') FROM dbprep_schema_history",
    )
    .await;
    assert_eq!(kinds.as_deref(), Some("migration"));
    let ranks = scalar(
        &client,
        "SELECT string_agg(installed_rank::text, ',' ORDER BY version) FROM dbprep_schema_history",
    )
    .await;
    assert_eq!(ranks.as_deref(), Some("1,2,3,4,5"));
}

#[tokio::test]
async fn history_table_goes_to_a_schema_that_does_not_exist_yet() {
    let db = database().await;
    let m = migrations(&[("V1__a.sql", "CREATE TABLE a (id int);")]);
    let _ = Migrator::new(&m)
        .history_schema("ops")
        .run(db.pool())
        .await
        .unwrap();
    let client = db.connect().await.unwrap();
    assert!(exists(&client, "ops.dbprep_schema_history").await);
    assert!(!exists(&client, "public.dbprep_schema_history").await);
}

/// A run that leaves the schema to its default does not start a history
/// there while the database has one in another schema: that one is most
/// likely the database's, and a new one would apply every migration
/// again. Naming the schema, `public` too, creates it.
#[tokio::test]
async fn a_history_found_in_another_schema_is_not_started_again_by_default() {
    let db = database().await;
    let m = migrations(&[
        ("V1__a.sql", "CREATE TABLE IF NOT EXISTS a (id int);"),
        ("V2__b.sql", "CREATE TABLE IF NOT EXISTS b (id int);"),
    ]);
    let _ = Migrator::new(&m)
        .history_schema("app")
        .target(1)
        .run(db.pool())
        .await
        .unwrap();
    let error = Migrator::new(&m).run(db.pool()).await.unwrap_err();
    assert!(matches!(error, Error::Config { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "this database has the history table \"dbprep_schema_history\" in schema \"app\", not in \"public\", \
         where a run looks when no schema is given: run with its schema (--history-schema, DBPREP_HISTORY_SCHEMA, \
         Migrator::history_schema); to start another history in \"public\", name that schema the same way. \
         Nothing was written"
    );
    let client = db.connect().await.unwrap();
    assert!(!exists(&client, "public.dbprep_schema_history").await);
    assert!(!exists(&client, "public.b").await);
    // Its own schema, and `public` named: both run.
    let report = Migrator::new(&m)
        .history_schema("app")
        .run(db.pool())
        .await
        .unwrap();
    assert_eq!(applied(&report), [2]);
    let report = Migrator::new(&m)
        .history_schema("public")
        .run(db.pool())
        .await
        .unwrap();
    assert_eq!(applied(&report), [1, 2]);
}

#[tokio::test]
async fn second_run_is_one_statement_and_writes_nothing() {
    let db = database().await;
    let _ = Migrator::new(&DEMO).run(db.pool()).await.unwrap();
    let client = db.connect().await.unwrap();
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await
        .unwrap();
    let before = scalar(
        &client,
        "SELECT max(xmin::text::bigint)::text FROM dbprep_schema_history",
    )
    .await;
    client
        .batch_execute("SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database WHERE datname = current_database()), 0)")
        .await
        .unwrap();
    let report = Migrator::new(&DEMO).run(db.pool()).await.unwrap();
    assert!(report.was_up_to_date());
    assert_eq!(report.version, Some(5));
    let statements = scalar(
        &client,
        "SELECT coalesce(sum(calls), 0)::text FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND query NOT LIKE '%pg_stat_statements%'",
    )
    .await;
    assert_eq!(
        statements.as_deref(),
        Some("1"),
        "a no-op start-up sends one statement"
    );
    let after = scalar(
        &client,
        "SELECT max(xmin::text::bigint)::text FROM dbprep_schema_history",
    )
    .await;
    assert_eq!(before, after);
}

#[tokio::test]
async fn syntax_error_in_the_last_migration_keeps_the_four_before_it() {
    let db = database().await;
    let m = five(
        "CREATE TABLE c (id int);",
        "CREATE TABLE e (id int);\nCREATE TABLE f (id int,, x int);",
    );
    let error = Migrator::new(&m).run(db.pool()).await.unwrap_err();
    let Error::Migration(failure) = &error else {
        panic!("{error}")
    };
    assert_eq!(failure.version, 5);
    assert_eq!(failure.code, Some(SqlState::SYNTAX_ERROR));
    assert_eq!(failure.position, Some((2, 24)), "{error}");
    assert_eq!(failure.applied, [1, 2, 3, 4]);
    assert!(
        error
            .to_string()
            .contains("V5__e.sql:2:24: syntax error at or near \",\""),
        "{error}"
    );
    let client = db.connect().await.unwrap();
    assert_eq!(recorded(&client).await, [1, 2, 3, 4]);
    assert!(exists(&client, "d").await);
    assert!(!exists(&client, "e").await);
}

/// Run [`five`] with `third`, which must fail with `code`: nothing of
/// migration 3 nor of those after it is kept, 1 and 2 are. The failure and
/// the database, for the caller's own checks.
/// Run `m` on a new database, expecting migration `version` to fail with
/// SQLSTATE `code`.
async fn fails_at(m: &Migrations, version: i64, code: &str) -> (TestDatabase, Box<MigrationError>) {
    let db = database().await;
    let error = Migrator::new(m).run(db.pool()).await.unwrap_err();
    let Error::Migration(failure) = error else {
        panic!("{error}")
    };
    assert_eq!(
        (
            failure.version,
            failure.code.as_ref().map_or("", SqlState::code)
        ),
        (version, code),
        "{failure}"
    );
    (db, failure)
}

async fn third_fails(third: &str, code: &str) -> (TestDatabase, Box<MigrationError>) {
    let m = five(third, "CREATE TABLE e (id int);");
    let (db, failure) = fails_at(&m, 3, code).await;
    let client = db.connect().await.unwrap();
    assert_eq!(recorded(&client).await, [1, 2]);
    for table in ["c", "d", "e"] {
        assert!(!exists(&client, table).await, "{table} exists");
    }
    (db, failure)
}

#[tokio::test]
async fn runtime_error_stops_at_its_migration_and_keeps_nothing_of_it() {
    let (_, failure) = third_fails(
        "CREATE TABLE c (id int);\nINSERT INTO missing VALUES (1);",
        "42P01",
    )
    .await;
    assert_eq!(failure.position, Some((2, 13)));
    assert_eq!(failure.not_applied, [4, 5]);
}

/// A failed `COMMIT` ends the transaction and leaves the session idle: the
/// guard stops migration 4.
#[tokio::test]
async fn deferred_constraint_failing_at_commit_stops_the_migrations_after_it() {
    let (db, _) = third_fails(
        "CREATE TABLE c (a_id int REFERENCES a (id) DEFERRABLE INITIALLY DEFERRED);\nINSERT INTO c VALUES (42);",
        "23503",
    )
    .await;
    // The next run, with the file fixed, completes.
    let fixed = five("CREATE TABLE c (id int);", "CREATE TABLE e (id int);");
    let report = Migrator::new(&fixed).run(db.pool()).await.unwrap();
    assert_eq!(applied(&report), [3, 4, 5]);
}

/// A message with a syntax error is rejected whole and leaves the session
/// idle: only the guard in the next migration's history insert, which runs
/// before its SQL, stops it.
#[tokio::test]
async fn a_syntax_error_in_the_middle_stops_the_migrations_after_it() {
    let (_, failure) = third_fails("CREATE TABLE c (id int,, x int);", "42601").await;
    assert_eq!(failure.position, Some((1, 24)), "{failure}");
}

/// The same before the last migration of a batch, whose message also
/// stores the snapshot: its guard stops it before its SQL runs.
#[tokio::test]
async fn a_syntax_error_before_the_last_migration_stops_the_last() {
    let m = migrations(&[
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        ("V2__b.sql", "CREATE TABLE b (id int,, x int);"),
        ("V3__c.sql", "CREATE TABLE c (id int);"),
    ]);
    let (db, failure) = fails_at(&m, 2, "42601").await;
    assert_eq!(failure.not_applied, [3]);
    let client = db.connect().await.unwrap();
    assert_eq!(recorded(&client).await, [1]);
    assert!(!exists(&client, "c").await);
}

/// The batch's guard is a session setting: a default a database gives it
/// does not stop the first migration.
#[tokio::test]
async fn a_database_default_for_the_guard_setting_changes_nothing() {
    let db = database().await;
    let client = db.connect().await.unwrap();
    let name = scalar(&client, "SELECT current_database()").await.unwrap();
    client
        .batch_execute(&format!(
            "ALTER DATABASE \"{name}\" SET dbprep.applied = '7'"
        ))
        .await
        .unwrap();
    let m = five("CREATE TABLE c (id int);", "CREATE TABLE e (id int);");
    let report = Migrator::new(&m).run(db.pool()).await.unwrap();
    assert_eq!(report.version, Some(5));
    assert_eq!(recorded(&client).await, [1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn pool_connections_stay_clean_after_a_failed_run() {
    let db = database().await;
    let m = five("SELECT 1/0;", "SELECT 1;");
    let _ = Migrator::new(&m).run(db.pool()).await.unwrap_err();
    for _ in 0..4 {
        let client = db.pool().get().await.unwrap();
        assert_eq!(scalar(&client, "SELECT 1").await.as_deref(), Some("1"));
        let locks = scalar(&client, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())").await;
        assert_eq!(locks.as_deref(), Some("0"));
    }
}

#[tokio::test]
async fn a_run_on_a_callers_connection_leaves_no_prepared_statement() {
    for (third, succeeds) in [("SELECT 1;", true), ("SELECT 1/0;", false)] {
        let db = database().await;
        let client = db.connect().await.unwrap();
        let run = Migrator::new(&five(third, "SELECT 2;"))
            .run_on(&client)
            .await;
        assert_eq!(run.is_ok(), succeeds, "{run:?}");
        assert_eq!(prepared_statements(&client).await.as_deref(), Some("0"));
    }
}

/// How many statements the session has prepared by SQL `PREPARE`.
async fn prepared_statements(client: &tokio_postgres::Client) -> Option<String> {
    scalar(
        client,
        "SELECT count(*) FROM pg_prepared_statements WHERE from_sql",
    )
    .await
}

#[tokio::test]
async fn session_settings_do_not_leak_between_migrations() {
    let db = database().await;
    let client = db.connect().await.unwrap();
    client
        .batch_execute("CREATE SCHEMA elsewhere; CREATE ROLE dbprep_test_nologin NOLOGIN")
        .await
        .ok();
    let m = migrations(&[
        (
            "V1__path.sql",
            "SET search_path = elsewhere;\nCREATE TABLE in_elsewhere (id int);",
        ),
        (
            "V2__role.sql",
            "SET ROLE dbprep_test_nologin;\nSET statement_timeout = '100ms';",
        ),
        (
            "V3__after.sql",
            "CREATE TABLE in_public (id int);\nSELECT pg_sleep(0.3);",
        ),
    ]);
    let _ = Migrator::new(&m).run(db.pool()).await.unwrap();
    assert!(exists(&client, "elsewhere.in_elsewhere").await);
    assert!(exists(&client, "public.in_public").await);
    let by = scalar(
        &client,
        "SELECT string_agg(DISTINCT applied_by, ',') FROM public.dbprep_schema_history",
    )
    .await;
    assert_eq!(by.as_deref(), Some("postgres"));
    // Timed from the start of the migration's transaction.
    let ms = execution_ms(&client, 3).await;
    assert!((300..10_000).contains(&ms), "execution_ms = {ms}");
}

/// Rows written before their migration get their durations once the batch
/// is over, failed or not.
#[tokio::test]
async fn every_migration_of_a_batch_is_timed_even_when_a_later_one_fails() {
    let timed = [
        ("V1__slow.sql", "SELECT pg_sleep(0.3);"),
        ("V2__quick.sql", "CREATE TABLE b (id int);"),
        ("V3__slow_too.sql", "SELECT pg_sleep(0.2);"),
    ];
    let failing = ("V4__fails.sql", "INSERT INTO missing VALUES (1);");
    for fails in [false, true] {
        let db = database().await;
        let mut files = timed.to_vec();
        if fails {
            files.push(failing);
        }
        let result = Migrator::new(&migrations(&files)).run(db.pool()).await;
        assert_eq!(result.is_err(), fails, "{result:?}");
        let client = db.connect().await.unwrap();
        let first = execution_ms(&client, 1).await;
        let second = execution_ms(&client, 2).await;
        let third = execution_ms(&client, 3).await;
        assert!((300..10_000).contains(&first), "V1: {first} ms");
        assert!(second < 300, "V2: {second} ms");
        assert!((150..10_000).contains(&third), "V3: {third} ms");
    }
}

/// A no-transaction migration splits the pending ones into two batches:
/// each writes its own durations (and prepares its history insert again).
#[tokio::test]
async fn each_batch_around_a_no_transaction_migration_is_timed() {
    let db = database().await;
    let m = migrations(&[
        ("V1__slow.sql", "SELECT pg_sleep(0.3);"),
        ("V2__b.sql", "CREATE TABLE b (id int);"),
        (
            "V3__index.sql",
            "-- dbprep:no-transaction\nCREATE INDEX CONCURRENTLY ix_b ON b (id);",
        ),
        ("V4__slow.sql", "SELECT pg_sleep(0.3);"),
        ("V5__c.sql", "CREATE TABLE c (id int);"),
    ]);
    let report = Migrator::new(&m).run(db.pool()).await.unwrap();
    assert_eq!(report.version, Some(5));
    let client = db.connect().await.unwrap();
    for version in [1, 4] {
        let ms = execution_ms(&client, version).await;
        assert!((300..10_000).contains(&ms), "V{version}: {ms} ms");
    }
}

/// A migration's recorded `execution_ms`.
async fn execution_ms(client: &tokio_postgres::Client, version: i64) -> i64 {
    let sql =
        format!("SELECT execution_ms FROM public.dbprep_schema_history WHERE version = {version}");
    let ms = scalar(client, &sql).await.expect("a history row");
    ms.parse().unwrap()
}

/// Notices reach an application's log (tokio-postgres logs them): a run
/// that creates dbprep's tables, then one that applies more on top of
/// them, must not say "already exists, skipping".
#[tokio::test]
async fn runs_send_no_notices() {
    let db = database().await;
    let (client, mut connection) = db.config().connect(tokio_postgres::NoTls).await.unwrap();
    let notices = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = notices.clone();
    tokio::spawn(async move {
        while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let tokio_postgres::AsyncMessage::Notice(notice) = message {
                let line = format!("{}: {}", notice.severity(), notice.message());
                sink.lock().unwrap().push(line);
            }
        }
    });
    let first = migrations(&[("V1__a.sql", "CREATE TABLE a (id int);")]);
    let second = migrations(&[
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        ("V2__b.sql", "CREATE TABLE b (id int);"),
    ]);
    for m in [&first, &second] {
        let report = Migrator::new(m).run_on(&client).await.unwrap();
        assert_eq!(report.applied.len(), 1);
    }
    assert!(exists(&client, "b").await);
    assert_eq!(*notices.lock().unwrap(), Vec::<String>::new());
}

#[tokio::test]
async fn lock_wait_gives_up_naming_the_holder_and_writes_nothing() {
    let db = database().await;
    let m = migrations(&[("V1__a.sql", "CREATE TABLE a (id int);")]);
    let migrator = Migrator::new(&m).lock_wait(Duration::from_millis(300));
    let holder = db.connect().await.unwrap();
    holder
        .batch_execute("SET application_name = 'the holder'")
        .await
        .unwrap();
    holder
        .batch_execute(&format!(
            "SELECT pg_advisory_lock({})",
            migrator.history().lock_key()
        ))
        .await
        .unwrap();
    let pid: i32 = scalar(&holder, "SELECT pg_backend_pid()")
        .await
        .unwrap()
        .parse()
        .unwrap();
    let error = migrator.run(db.pool()).await.unwrap_err();
    let Error::LockTimeout {
        holder: Some(h), ..
    } = &error
    else {
        panic!("{error}")
    };
    assert_eq!((h.pid, h.application_name.as_str()), (pid, "the holder"));
    assert!(error.to_string().contains("the holder"), "{error}");
    assert!(!exists(&holder, "a").await);
    assert!(!exists(&holder, "dbprep_schema_history").await);
}

/// The history a run read before waiting for the lock is reused under it
/// only while its digest stays the same: one edited meanwhile (here an
/// applied migration's checksum, as a peer or a hand could) is read again,
/// and the run refuses it rather than applying from what it read before.
#[tokio::test]
async fn a_history_changed_while_the_run_waits_for_the_lock_is_read_again() {
    let db = database().await;
    let first = migrations(&[("V1__a.sql", "CREATE TABLE a (id int);")]);
    let both = migrations(&[
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        ("V2__b.sql", "CREATE TABLE b (id int);"),
    ]);
    let _ = Migrator::new(&first).run(db.pool()).await.unwrap();
    let holder = db.connect().await.unwrap();
    let key = Migrator::new(&both).history().lock_key();
    holder
        .batch_execute(&format!("SELECT pg_advisory_lock({key})"))
        .await
        .unwrap();
    let waiting = {
        let pool = db.pool().clone();
        tokio::spawn(async move { Migrator::new(&both).run(&pool).await })
    };
    assert!(
        eventually(
            &holder,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'dbprep migrator %'",
            "1",
            10
        )
        .await
    );
    holder
        .batch_execute(&format!(
            "UPDATE dbprep_schema_history SET checksum = '\\x00' WHERE version = 1;
             SELECT pg_advisory_unlock({key});"
        ))
        .await
        .unwrap();
    let error = waiting.await.unwrap().unwrap_err();
    assert!(
        matches!(&error, Error::Drift(d) if matches!(d[..], [Drift::Edited { version: 1, .. }])),
        "{error}"
    );
    assert!(!exists(&holder, "b").await);
}

#[tokio::test]
async fn a_migrator_in_the_middle_of_a_batch_is_named_as_the_holder() {
    // Every migration's message starts with RESET ALL, which would also
    // reset the name the run gave its session: it is restored with the
    // role and search path.
    let db = database().await;
    let m = five("SELECT pg_sleep(2);", "CREATE TABLE e (id int);");
    let running = {
        let pool = db.pool().clone();
        let m = m.clone();
        tokio::spawn(async move { Migrator::new(&m).run(&pool).await.map(|r| r.applied.len()) })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    let error = Migrator::new(&m)
        .lock_wait(Duration::from_millis(200))
        .run(db.pool())
        .await
        .unwrap_err();
    let Error::LockTimeout {
        holder: Some(h), ..
    } = &error
    else {
        panic!("{error}")
    };
    assert!(
        h.application_name.starts_with("dbprep migrator "),
        "{}",
        h.application_name
    );
    assert_eq!(running.await.unwrap().unwrap(), 5);
}

#[tokio::test]
async fn eight_migrators_at_once_apply_each_migration_once() {
    let db = database().await;
    let files: Vec<(String, String)> = (1..=20)
        .map(|v| {
            (
                format!("V{v}__t{v}.sql"),
                format!("CREATE TABLE t{v} (id int);"),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let m: &'static Migrations = Box::leak(Box::new(migrations(&refs)));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let pool = dbprep_runtime::testing::pool(db.config(), 1);
            tokio::spawn(async move { Migrator::new(m).run(&pool).await })
        })
        .collect();
    let mut applied = 0;
    for task in tasks {
        applied += task.await.unwrap().unwrap().applied.len();
    }
    assert_eq!(applied, 20);
    let client = db.connect().await.unwrap();
    assert_eq!(recorded(&client).await, (1..=20).collect::<Vec<_>>());
}

#[tokio::test]
async fn no_transaction_migration_runs_concurrently_built_index() {
    let db = database().await;
    let m = migrations(&[
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        (
            "V2__ix.sql",
            "-- dbprep:no-transaction\nCREATE INDEX CONCURRENTLY ix_a ON a (id);\nVACUUM a;",
        ),
        ("V3__b.sql", "CREATE TABLE b (id int);"),
    ]);
    let report = Migrator::new(&m).run(db.pool()).await.unwrap();
    assert_eq!(report.applied.len(), 3);
    let client = db.connect().await.unwrap();
    assert!(exists(&client, "ix_a").await);
    assert_eq!(recorded(&client).await, [1, 2, 3]);
}

/// Two rows of one value, then a no-transaction migration that builds a
/// unique index on them concurrently (`clause` after `CONCURRENTLY`): it
/// fails, leaving an INVALID index.
fn duplicate_rows_then_a_unique_index(clause: &str) -> Migrations {
    migrations(&[
        (
            "V1__a.sql",
            "CREATE TABLE a (id int);\nINSERT INTO a VALUES (1), (1);",
        ),
        (
            "V2__ix.sql",
            &format!("-- dbprep:no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY {clause}ix_a ON a (id);"),
        ),
    ])
}

/// Run `files` on a new database, where one fails: what its error says
/// was applied and left pending, and its message.
async fn failure_of(files: &[(&str, &str)]) -> (Vec<i64>, Vec<i64>, String) {
    let db = database().await;
    let error = Migrator::new(&migrations(files))
        .run(db.pool())
        .await
        .unwrap_err();
    let Error::Migration(failure) = &error else {
        panic!("{error}")
    };
    (
        failure.applied.clone(),
        failure.not_applied.clone(),
        error.to_string(),
    )
}

#[tokio::test]
async fn a_failure_names_what_the_whole_run_applied_and_left_pending() {
    // Batches on either side of a no-transaction migration: the error
    // speaks of the run, not of the batch that failed.
    const INDEX: (&str, &str) = (
        "V3__ix.sql",
        "-- dbprep:no-transaction\nCREATE INDEX CONCURRENTLY ix_a ON a (id);",
    );
    let (applied, not_applied, error) = failure_of(&[
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        ("V2__b.sql", "CREATE TABLE b (id int);"),
        INDEX,
        ("V4__c.sql", "CREATE TABLE c (id no_such_type);"),
        ("V5__d.sql", "CREATE TABLE d (id int);"),
    ])
    .await;
    assert_eq!(
        (&applied[..], &not_applied[..]),
        (&[1, 2, 3][..], &[5][..]),
        "{error}"
    );

    // A failure before the no-transaction migration leaves it pending too.
    let (applied, not_applied, error) = failure_of(&[
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        ("V2__b.sql", "CREATE TABLE b (id no_such_type);"),
        INDEX,
        ("V4__c.sql", "CREATE TABLE c (id int);"),
    ])
    .await;
    assert_eq!(
        (&applied[..], &not_applied[..]),
        (&[1][..], &[3, 4][..]),
        "{error}"
    );
    assert!(error.ends_with("not applied: 3, 4"), "{error}");
}

#[tokio::test]
async fn failed_no_transaction_migration_is_dirty_until_repair() {
    let db = database().await;
    let broken = duplicate_rows_then_a_unique_index("");
    let error = Migrator::new(&broken).run(db.pool()).await.unwrap_err();
    let Error::Migration(failure) = &error else {
        panic!("{error}")
    };
    assert_eq!(
        (
            failure.version,
            failure.code.as_ref().map_or("", SqlState::code),
            failure.position
        ),
        (2, "23505", Some((2, 1)))
    );
    // What stays is said, not that nothing was kept.
    let said = error.to_string();
    assert!(
        said.contains("migration 2 ran outside a transaction")
            && said.contains("its history row is left dirty")
            && !said.contains("was kept"),
        "{said}"
    );
    // Every later run refuses, naming the dirty migration.
    let error = Migrator::new(&broken).run(db.pool()).await.unwrap_err();
    assert!(matches!(&error, Error::Dirty { version: 2, .. }), "{error}");
    assert!(error.to_string().contains("V2__ix.sql"), "{error}");
    let status = Migrator::new(&broken).status(db.pool()).await.unwrap();
    assert_eq!(status.entries[1].state, State::Dirty);
    // Fix the data and the leftover invalid index, repair, run again.
    let client = db.connect().await.unwrap();
    client
        .batch_execute("DELETE FROM a; DROP INDEX ix_a")
        .await
        .unwrap();
    let repaired = Migrator::new(&broken).repair(db.pool()).await.unwrap();
    assert_eq!(repaired.removed_dirty, [2]);
    let report = Migrator::new(&broken).run(db.pool()).await.unwrap();
    assert_eq!(applied(&report), [2]);
}

#[tokio::test]
async fn a_dirty_migration_names_its_invalid_index_and_repair_can_drop_it() {
    let db = database().await;
    let broken = duplicate_rows_then_a_unique_index("IF NOT EXISTS ");
    let _ = Migrator::new(&broken).run(db.pool()).await.unwrap_err();
    let error = Migrator::new(&broken).run(db.pool()).await.unwrap_err();
    let Error::Dirty {
        version: 2,
        invalid_indexes,
        ..
    } = &error
    else {
        panic!("{error}")
    };
    assert_eq!(
        invalid_indexes
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["public.ix_a on a"]
    );
    let message = error.to_string();
    assert!(
        message.contains("INVALID indexes left in the database: public.ix_a on a")
            && message.contains("would skip them without building them")
            && message.contains("repair --drop-invalid-indexes"),
        "{message}"
    );
    let status = Migrator::new(&broken).status(db.pool()).await.unwrap();
    assert_eq!(status.invalid_indexes, invalid_indexes.clone());
    // A plain repair forgets the row but leaves the index, and says so.
    let client = db.connect().await.unwrap();
    client
        .batch_execute("DELETE FROM a WHERE ctid = (SELECT min(ctid) FROM a)")
        .await
        .unwrap();
    let repaired = Migrator::new(&broken).repair(db.pool()).await.unwrap();
    assert_eq!(repaired.removed_dirty, [2]);
    assert_eq!(repaired.invalid_indexes, invalid_indexes.clone());
    assert!(repaired.to_string().contains("skips it"), "{repaired}");
    // The rerun's IF NOT EXISTS skips the build: the very trap it warned of.
    let _ = Migrator::new(&broken).run(db.pool()).await.unwrap();
    let valid = "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_a'::regclass";
    assert_eq!(scalar(&client, valid).await.as_deref(), Some("f"));
    // Recover properly: drop the INVALID index, forget the row, run again.
    client
        .batch_execute("DELETE FROM dbprep_schema_history WHERE version = 2")
        .await
        .unwrap();
    let repaired = Migrator::new(&broken)
        .repair_with(
            db.pool(),
            RepairOptions::default().drop_invalid_indexes(true),
        )
        .await
        .unwrap();
    assert_eq!(repaired.dropped_indexes, invalid_indexes.clone());
    assert!(repaired.invalid_indexes.is_empty());
    let report = Migrator::new(&broken).run(db.pool()).await.unwrap();
    assert_eq!(applied(&report), [2]);
    assert_eq!(scalar(&client, valid).await.as_deref(), Some("t"));
    assert!(Migrator::new(&broken)
        .verify(db.pool())
        .await
        .unwrap()
        .is_clean());
}

#[tokio::test]
async fn a_no_transaction_migration_being_run_is_in_progress_not_dirty() {
    let db = database().await;
    let slow: &'static Migrations = Box::leak(Box::new(migrations(&[
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        (
            "V2__slow.sql",
            "-- dbprep:no-transaction\nSELECT pg_sleep(3);\nCREATE INDEX CONCURRENTLY ix_a ON a (id);",
        ),
    ])));
    let running = run_in_background(slow, db.pool(), LockMode::Session);
    let client = db.connect().await.unwrap();
    assert!(eventually(&client, SLEEPING, "1", 30).await);
    let status = Migrator::new(slow).status(db.pool()).await.unwrap();
    let State::InProgress { holder } = &status.entries[1].state else {
        panic!("{:?}", status.entries[1].state)
    };
    assert!(
        holder.application_name.starts_with("dbprep migrator"),
        "{holder}"
    );
    assert!(status.entries[1]
        .state
        .to_string()
        .starts_with("in progress (pid "));
    let report = Migrator::new(slow).verify(db.pool()).await.unwrap();
    assert!(report.is_clean(), "{report}");
    assert!(
        report.notes.iter().any(|n| n.contains("in progress")),
        "{report}"
    );
    // A peer arriving now waits for the lock instead of calling it dirty,
    // then has nothing to do.
    let peer = Migrator::new(slow).run(db.pool()).await.unwrap();
    assert!(peer.applied.is_empty(), "{peer}");
    assert!(peer.lock.unwrap().tries > 1);
    let first = running.await.unwrap().unwrap();
    assert_eq!(applied(&first), [1, 2]);
}

#[tokio::test]
async fn a_run_that_lost_its_lease_records_nothing_more() {
    // Transaction lock mode on a direct connection: the lease row removed
    // while a no-transaction migration runs (no transaction holds the row
    // then). The next migration's guard refuses it before its SQL.
    let db = database().await;
    let m: &'static Migrations = Box::leak(Box::new(migrations(&[
        (
            "V1__slow.sql",
            "-- dbprep:no-transaction\nSELECT pg_sleep(2);",
        ),
        ("V2__b.sql", "CREATE TABLE b (id int);"),
    ])));
    let run = run_in_background(m, db.pool(), LockMode::Transaction);
    let client = db.connect().await.unwrap();
    assert!(eventually(&client, SLEEPING, "1", 30).await);
    assert_eq!(
        scalar(&client, "SELECT count(*) FROM dbprep_schema_history_lock")
            .await
            .as_deref(),
        Some("1")
    );
    client
        .batch_execute("DELETE FROM dbprep_schema_history_lock")
        .await
        .unwrap();
    let error = run.await.unwrap().unwrap_err();
    let Error::Migration(failure) = &error else {
        panic!("{error}")
    };
    assert_eq!(failure.version, 2, "{error}");
    assert!(
        error
            .to_string()
            .contains("this run no longer holds the migration lock")
            && error.to_string().contains("nothing of this migration ran"),
        "{error}"
    );
    assert_eq!(recorded(&client).await, [1]);
    assert!(!exists(&client, "b").await);
    // The next run takes the lease again and applies it.
    let report = Migrator::new(m)
        .lock_mode(LockMode::Transaction)
        .run(db.pool())
        .await
        .unwrap();
    assert_eq!(applied(&report), [2]);
}

#[tokio::test]
async fn a_migrator_of_another_database_is_not_taken_for_this_ones() {
    // Advisory locks belong to a database: the same key held in another
    // database neither blocks this one's run nor makes its dirty row look
    // in progress.
    let other = database().await;
    let key = dbprep_runtime::HistoryTable::default().lock_key();
    let holder = other.connect().await.unwrap();
    holder
        .batch_execute(&format!("SELECT pg_advisory_lock({key})"))
        .await
        .unwrap();
    let db = database().await;
    let broken = duplicate_rows_then_a_unique_index("");
    let _ = Migrator::new(&broken)
        .lock_wait(Duration::from_secs(5))
        .run(db.pool())
        .await
        .unwrap_err();
    let status = Migrator::new(&broken).status(db.pool()).await.unwrap();
    assert_eq!(status.entries[1].state, State::Dirty);
    let report = Migrator::new(&broken).verify(db.pool()).await.unwrap();
    assert!(
        matches!(
            report.errors().next(),
            Some(Drift::Dirty { version: 2, .. })
        ),
        "{report}"
    );
}

#[tokio::test]
async fn a_history_column_changed_by_hand_is_named_and_nothing_is_written() {
    let db = database().await;
    let m = five("CREATE TABLE c (id int);", "CREATE TABLE e (id int);");
    let _ = Migrator::new(&m).target(2).run(db.pool()).await.unwrap();
    let client = db.connect().await.unwrap();
    client
        .batch_execute(
            "ALTER TABLE dbprep_schema_history ALTER COLUMN execution_ms TYPE text; \
             UPDATE dbprep_schema_history SET execution_ms = 'slow' WHERE version = 2",
        )
        .await
        .unwrap();
    let error = Migrator::new(&m).run(db.pool()).await.unwrap_err();
    assert!(matches!(error, Error::DamagedHistory { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        "the history table \"public\".\"dbprep_schema_history\" is damaged: version \"2\": \
         execution_ms is not an integer: \"slow\". Fix the row by hand (or restore the table), \
         then run again; nothing was written"
    );
    assert!(!exists(&client, "c").await, "migration 3 ran");
    let status = Migrator::new(&m).status(db.pool()).await.unwrap_err();
    assert!(matches!(status, Error::DamagedHistory { .. }), "{status}");
}

#[tokio::test]
async fn a_migration_failing_on_its_last_statement_leaves_none_of_its_objects() {
    let db = database().await;
    let mut sql: String = (0..20)
        .map(|i| {
            format!(
                "CREATE TABLE t{i} (id int PRIMARY KEY, v text);\nCREATE INDEX ix{i} ON t{i} (v);\n\
                 INSERT INTO t{i} SELECT g, g::text FROM generate_series(1, 100) g;\n"
            )
        })
        .collect();
    sql.push_str("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;\n");
    sql.push_str("CREATE VIEW v AS SELECT * FROM t0;\n");
    sql.push_str("INSERT INTO t0 VALUES (1, 'taken');\n");
    let m = migrations(&[
        ("V1__many.sql", "CREATE TABLE a (id int);"),
        ("V2__many.sql", &sql),
    ]);
    let error = Migrator::new(&m).run(db.pool()).await.unwrap_err();
    let Error::Migration(failure) = &error else {
        panic!("{error}")
    };
    assert_eq!(
        (failure.version, failure.position, failure.code.clone()),
        // A constraint's error has no position in the text: the file is named.
        (2, None, Some(SqlState::UNIQUE_VIOLATION)),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("nothing of migration 2 was kept"),
        "{error}"
    );
    let client = db.connect().await.unwrap();
    let left = scalar(
        &client,
        "SELECT count(*) FROM pg_class WHERE relname ~ '^(t|ix)[0-9]+$' OR relname = 'v'",
    )
    .await;
    assert_eq!(left.as_deref(), Some("0"), "objects of migration 2 remain");
    assert!(
        scalar(&client, "SELECT count(*) FROM pg_proc WHERE proname = 'f'")
            .await
            .as_deref()
            == Some("0")
    );
    assert_eq!(recorded(&client).await, [1]);
}

#[tokio::test]
async fn a_history_table_named_with_a_quote_and_a_semicolon_is_quoted_everywhere() {
    let db = database().await;
    let table = r#"hist"; DROP TABLE a; --é"#;
    let m = five("CREATE TABLE c (id int);", "CREATE TABLE e (id int);");
    let migrator = Migrator::new(&m).history_table(table);
    let report = migrator.run(db.pool()).await.unwrap();
    assert_eq!(report.version, Some(5));
    let client = db.connect().await.unwrap();
    assert!(exists(&client, "a").await, "a was dropped");
    let made = client
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname = ANY($1)",
            &[&vec![table.to_owned(), format!("{table}_digest")]],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(made, 2);
    assert!(migrator.run(db.pool()).await.unwrap().was_up_to_date());
    assert!(migrator.verify(db.pool()).await.unwrap().is_clean());
    let stamped = migrator.stamp(db.pool(), None).await.unwrap();
    assert!(stamped.applied.is_empty());
}

#[tokio::test]
async fn target_stops_there_and_an_unknown_target_runs_nothing() {
    let db = database().await;
    let m = five("CREATE TABLE c (id int);", "CREATE TABLE e (id int);");
    let error = Migrator::new(&m)
        .target(7)
        .run(db.pool())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::UnknownTarget(7)), "{error}");
    let client = db.connect().await.unwrap();
    assert!(!exists(&client, "dbprep_schema_history").await);
    let report = Migrator::new(&m).target(3).run(db.pool()).await.unwrap();
    assert_eq!(report.version, Some(3));
    assert_eq!(recorded(&client).await, [1, 2, 3]);
    let again = Migrator::new(&m).target(3).run(db.pool()).await.unwrap();
    assert!(again.was_up_to_date());
}

#[tokio::test]
async fn out_of_order_pending_is_refused_unless_allowed() {
    let db = database().await;
    let before = migrations(&[
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        ("V3__c.sql", "CREATE TABLE c (id int);"),
    ]);
    let _ = Migrator::new(&before).run(db.pool()).await.unwrap();
    let after = migrations(&[
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        ("V2__b.sql", "CREATE TABLE b (id int);"),
        ("V3__c.sql", "CREATE TABLE c (id int);"),
    ]);
    let error = Migrator::new(&after).run(db.pool()).await.unwrap_err();
    assert!(error.to_string().contains("migration 2"), "{error}");
    let report = Migrator::new(&after)
        .out_of_order(Policy::Allow)
        .run(db.pool())
        .await
        .unwrap();
    assert_eq!(applied(&report), [2]);
}

#[tokio::test]
async fn stamp_records_versions_without_running_them() {
    let db = database().await;
    let m = five("CREATE TABLE c (id int);", "CREATE TABLE e (id int);");
    let report = Migrator::new(&m).stamp(db.pool(), Some(4)).await.unwrap();
    assert_eq!(report.applied.len(), 4);
    let client = db.connect().await.unwrap();
    assert!(!exists(&client, "a").await);
    assert_eq!(recorded(&client).await, [1, 2, 3, 4]);
    let run = Migrator::new(&m).run(db.pool()).await.unwrap();
    assert_eq!(applied(&run), [5]);
    assert!(exists(&client, "e").await);
}

#[tokio::test]
async fn fresh_database_uses_the_baseline() {
    let db = database().await;
    let m = migrations(&[
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        ("V2__b.sql", "CREATE TABLE b (id int);"),
        (
            "B2__base.sql",
            "CREATE TABLE a (id int);\nCREATE TABLE b (id int);\nCREATE TABLE from_baseline ();",
        ),
        ("V3__c.sql", "CREATE TABLE c (id int);"),
    ]);
    let report = Migrator::new(&m).run(db.pool()).await.unwrap();
    assert_eq!(applied(&report), [2, 3]);
    let client = db.connect().await.unwrap();
    assert!(exists(&client, "from_baseline").await);
    let again = Migrator::new(&m).run(db.pool()).await.unwrap();
    assert!(again.was_up_to_date());
}

#[tokio::test]
async fn dropping_the_run_cancels_the_server_query() {
    let db = database().await;
    let m = migrations(&[(
        "V1__slow.sql",
        "CREATE TABLE slow (id int);\nSELECT pg_sleep(30);",
    )]);
    let migrator = Migrator::new(&m);
    let run = migrator.run(db.pool());
    assert!(tokio::time::timeout(Duration::from_millis(500), run)
        .await
        .is_err());
    let client = db.connect().await.unwrap();
    let mut still_running = true;
    for _ in 0..50 {
        let n = scalar(&client, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid()").await;
        if n.as_deref() == Some("0") {
            still_running = false;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!still_running, "the migration still runs on the server");
    assert!(!exists(&client, "slow").await);
}

/// Whether a run of `m` finds nothing to do.
async fn up_to_date(m: &Migrations, db: &TestDatabase) -> bool {
    Migrator::new(m)
        .run(db.pool())
        .await
        .unwrap()
        .was_up_to_date()
}

/// The history digest's row count.
async fn digest_rows(client: &tokio_postgres::Client) -> Option<String> {
    scalar(client, "SELECT rows FROM dbprep_schema_history_digest").await
}

#[tokio::test]
async fn a_history_row_deleted_by_hand_is_seen_at_the_next_start() {
    let (db, m, _client) =
        migrated_then("DELETE FROM dbprep_schema_history WHERE version = 5; DROP TABLE e;").await;
    let report = Migrator::new(&m).run(db.pool()).await.unwrap();
    assert_eq!(applied(&report), [5]);
    assert!(up_to_date(&m, &db).await);
}

/// Five migrations applied to a new database, then `damage` done to it by
/// hand: the database, the set, and a connection.
async fn migrated_then(damage: &str) -> (TestDatabase, Migrations, tokio_postgres::Client) {
    let db = database().await;
    let m = five("CREATE TABLE c (id int);", "CREATE TABLE e (id int);");
    let _ = Migrator::new(&m).run(db.pool()).await.unwrap();
    let client = db.connect().await.unwrap();
    client.batch_execute(damage).await.unwrap();
    (db, m, client)
}

#[tokio::test]
async fn a_dropped_digest_table_is_rebuilt_from_the_history() {
    let (db, m, client) = migrated_then("DROP TABLE dbprep_schema_history_digest CASCADE").await;
    assert!(up_to_date(&m, &db).await);
    assert!(exists(&client, "dbprep_schema_history_digest").await);
    assert_eq!(digest_rows(&client).await.as_deref(), Some("5"));
    // And the fast path works again.
    assert!(up_to_date(&m, &db).await);
}

#[tokio::test]
async fn a_digest_row_deleted_by_hand_is_written_again() {
    let (db, m, client) = migrated_then("DELETE FROM dbprep_schema_history_digest").await;
    // The start-up finds no digest, checks under the lock, finds nothing
    // to apply, and writes the digest back from the history.
    let report = Migrator::new(&m).run(db.pool()).await.unwrap();
    assert!(report.was_up_to_date());
    assert_eq!(digest_rows(&client).await.as_deref(), Some("5"));
    assert!(up_to_date(&m, &db).await);
}

#[tokio::test]
async fn a_history_table_dropped_by_hand_is_refused_until_stamped() {
    let (db, m, client) = migrated_then("DROP TABLE dbprep_schema_history").await;
    // Its digest still says "up to date": the start-up must not believe it.
    let error = Migrator::new(&m).run(db.pool()).await.unwrap_err();
    assert!(matches!(error, Error::DamagedHistory { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        "the history table \"public\".\"dbprep_schema_history\" is damaged: it is missing while \
         its digest \"public\".\"dbprep_schema_history_digest\" remains, so it was dropped by hand. If the schema is at a known version, record it with \
         `stamp <version>` (Migrator::stamp); else restore the table from a backup, then run \
         again; nothing was written"
    );
    assert!(
        !exists(&client, "dbprep_schema_history").await,
        "it made one"
    );
    // The repair path: stamp the version the schema is at.
    let stamped = Migrator::new(&m).stamp(db.pool(), Some(5)).await.unwrap();
    assert_eq!(applied(&stamped), [1, 2, 3, 4, 5]);
    assert!(up_to_date(&m, &db).await);
}

#[tokio::test]
async fn a_digest_trigger_without_its_when_clause_is_replaced() {
    // A trigger that fires for every row (as an older dbprep made it) would
    // count a batch's rows twice: the next locked run puts the right one
    // back, with the digest rebuilt from the history.
    let db = database().await;
    let m = five("CREATE TABLE c (id int);", "CREATE TABLE e (id int);");
    let first_three = Migrator::new(&m).target(3);
    let _ = first_three.run(db.pool()).await.unwrap();
    let client = db.connect().await.unwrap();
    client
        .batch_execute(
            "DROP TRIGGER dbprep_schema_history_digest ON dbprep_schema_history;
             CREATE TRIGGER dbprep_schema_history_digest AFTER INSERT OR UPDATE OR DELETE ON dbprep_schema_history
                 FOR EACH ROW EXECUTE FUNCTION dbprep_schema_history_digest_update();",
        )
        .await
        .unwrap();
    let report = Migrator::new(&m).run(db.pool()).await.unwrap();
    assert_eq!(report.applied.len(), 2);
    assert_eq!(digest_rows(&client).await.as_deref(), Some("5"));
    assert!(up_to_date(&m, &db).await);
}

#[tokio::test]
async fn a_batch_writes_the_digest_once_at_its_end_even_when_it_fails() {
    let db = database().await;
    let client = db.connect().await.unwrap();
    let failing = five("CREATE TABLE c (id int);", "CREATE TABLE e (id int) oops;");
    let _ = Migrator::new(&failing).run(db.pool()).await.unwrap_err();
    assert_eq!(digest_rows(&client).await.as_deref(), Some("4"));
    // A run killed half-way leaves the digest "in progress": the next
    // start-up cannot take it for an up-to-date history, and writes the
    // right one.
    let fixed = five("CREATE TABLE c (id int);", "CREATE TABLE e (id int);");
    let _ = Migrator::new(&fixed).run(db.pool()).await.unwrap();
    client
        .batch_execute("UPDATE dbprep_schema_history_digest SET rows = -1, hash = 0")
        .await
        .unwrap();
    let report = Migrator::new(&fixed).run(db.pool()).await.unwrap();
    assert!(report.applied.is_empty());
    assert_eq!(digest_rows(&client).await.as_deref(), Some("5"));
}

/// A new database migrated by an older binary, which embeds the first
/// `applied` of `files`, and the set of the newer binary: all of them.
async fn migrated_by_an_older_binary(
    files: &[(&str, &str)],
    applied: usize,
) -> (TestDatabase, Migrations) {
    let db = database().await;
    let older = migrations(&files[..applied]);
    let _ = Migrator::new(&older).run(db.pool()).await.unwrap();
    (db, migrations(files))
}

/// Whether a run of `m` refuses version 1 as pending out of order: the
/// history lost its row, and the digest says so.
async fn refuses_version_1_out_of_order(m: &Migrations, db: &TestDatabase) -> bool {
    match Migrator::new(m).run(db.pool()).await {
        Err(Error::Drift(drift)) => drift
            .iter()
            .any(|d| matches!(d, Drift::OutOfOrder { version: 1, .. })),
        _ => false,
    }
}

#[tokio::test]
async fn a_deploy_after_an_older_binary_continues_its_history() {
    // The history is the versions of an older binary: the run knows it
    // from the digest, and continues the ranks however they were written.
    let files = [
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        ("V2__b.sql", "CREATE TABLE b (id int);"),
        ("V3__c.sql", "CREATE TABLE c (id int);"),
        ("V4__d.sql", "CREATE TABLE d (id int);"),
    ];
    let (db, all) = migrated_by_an_older_binary(&files, 2).await;
    let client = db.connect().await.unwrap();
    client
        .batch_execute("UPDATE dbprep_schema_history SET installed_rank = installed_rank + 10")
        .await
        .unwrap();
    let report = Migrator::new(&all).run(db.pool()).await.unwrap();
    assert_eq!(applied(&report), [3, 4]);
    assert_eq!(report.version, Some(4));
    assert_eq!(
        scalar(&client, "SELECT string_agg(installed_rank::text, ',' ORDER BY version) FROM dbprep_schema_history")
            .await
            .as_deref(),
        Some("11,12,13,14")
    );
    assert_eq!(digest_rows(&client).await.as_deref(), Some("4"));
    assert!(up_to_date(&all, &db).await);
    // Up to a target, and from an empty history.
    let (db, _) = migrated_by_an_older_binary(&files, 1).await;
    let client = db.connect().await.unwrap();
    client
        .batch_execute("DELETE FROM dbprep_schema_history; DROP TABLE a;")
        .await
        .unwrap();
    let report = Migrator::new(&all).target(3).run(db.pool()).await.unwrap();
    assert_eq!(applied(&report), [1, 2, 3]);
    assert_eq!(report.version, Some(3));
    assert_eq!(recorded(&client).await, [1, 2, 3]);
    assert_eq!(digest_rows(&client).await.as_deref(), Some("3"));
}

/// The history is known from its digest on a deploy, not when the table
/// was changed by hand: it is read then, and its damage would be named.
#[test]
fn a_deploy_reads_no_history_unless_the_table_was_changed_by_hand() {
    let files = [
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        ("V2__b.sql", "CREATE TABLE b (id int);"),
        ("V3__c.sql", "CREATE TABLE c (id int);"),
    ];
    // What the deploy logged, after what the older binary's run did.
    let deploy = |change: &'static str| {
        let text = logged(tracing::Level::DEBUG, async {
            let (db, all) = migrated_by_an_older_binary(&files, 2).await;
            let client = db.connect().await.unwrap();
            client.batch_execute(change).await.unwrap();
            tracing::info!("the deploy starts");
            let report = Migrator::new(&all).run(db.pool()).await.unwrap();
            assert_eq!(applied(&report), [3]);
            assert!(up_to_date(&all, &db).await);
        });
        let (_, deploy) = text.split_once("the deploy starts").unwrap();
        deploy.to_owned()
    };
    let known = [
        "the history holds the first 2 migration(s), as its digest says",
        "the digest is unchanged under the lock: planning from it",
        "nobody else changed the history: reading this run's rows alone",
    ];
    let text = deploy("SELECT 1");
    for line in known {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    let text = deploy("ALTER TABLE dbprep_schema_history ADD COLUMN note text");
    assert!(text.contains(known[0]), "{text}");
    assert!(
        !text.contains(known[1]) && !text.contains(known[2]),
        "{text}"
    );
}

#[tokio::test]
async fn a_migration_that_changes_the_history_moves_the_digest() {
    let files = [
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        ("V2__b.sql", "CREATE TABLE b (id int);"),
        (
            "V3__forget.sql",
            "DELETE FROM dbprep_schema_history WHERE version = 1;",
        ),
    ];
    let (db, all) = migrated_by_an_older_binary(&files, 2).await;
    let report = Migrator::new(&all).run(db.pool()).await.unwrap();
    assert_eq!(applied(&report), [3]);
    let client = db.connect().await.unwrap();
    assert_eq!(recorded(&client).await, [2, 3]);
    assert!(refuses_version_1_out_of_order(&all, &db).await);
}

#[tokio::test]
async fn a_history_changed_by_another_session_during_a_deploy_is_not_hidden() {
    // While the new migration waits (on an advisory lock the test holds),
    // another session deletes a row: its trigger waits for the run's
    // transaction, then the session waits (on a second advisory lock) to
    // commit until the end of the run has read the digest and tries to
    // write it. The digest must not claim the deleted row. (When the end
    // of the run writes the digest before the trigger can, the trigger
    // then takes the row out of what was written: right too, and the run
    // is over without waiting.)
    let files = [
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        ("V2__b.sql", "CREATE TABLE b (id int);"),
        ("V3__wait.sql", "SELECT pg_advisory_xact_lock(4242);"),
    ];
    let (db, all) = migrated_by_an_older_binary(&files, 2).await;
    let holder = db.connect().await.unwrap();
    let meddler = db.connect().await.unwrap();
    let watcher = db.connect().await.unwrap();
    holder
        .batch_execute("SELECT pg_advisory_lock(4242), pg_advisory_lock(4243)")
        .await
        .unwrap();
    let meddler_pid = scalar(&meddler, "SELECT pg_backend_pid()").await.unwrap();
    let migrator = Migrator::new(&all).lock_timeout(Duration::ZERO);
    let run = migrator.run(db.pool());
    let waits_for_a_transaction = |whose: &str| {
        format!(
            "SELECT count(*) FROM pg_stat_activity WHERE {whose} \
             AND wait_event_type = 'Lock' AND wait_event IN ('transactionid', 'tuple')"
        )
    };
    let meddle = async {
        let migration_waits = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
                               AND objid = 4242 AND NOT granted";
        assert!(eventually(&watcher, migration_waits, "1", 30).await);
        let delete = meddler.batch_execute(
            "BEGIN; DELETE FROM dbprep_schema_history WHERE version = 1; \
             SELECT pg_advisory_xact_lock(4243); COMMIT;",
        );
        let release = async {
            let meddler_waits = waits_for_a_transaction(&format!("pid = {meddler_pid}"));
            assert!(eventually(&watcher, &meddler_waits, "1", 30).await);
            holder
                .batch_execute("SELECT pg_advisory_unlock(4242)")
                .await
                .unwrap();
            let end_of_run_waits = waits_for_a_transaction(&format!(
                "pid <> {meddler_pid} AND datname = current_database()"
            ));
            let waits_or_is_over = format!(
                "SELECT ({end_of_run_waits}) = 1 OR NOT EXISTS (SELECT FROM pg_stat_activity \
                 WHERE datname = current_database() AND application_name LIKE 'dbprep migrator%')"
            );
            assert!(eventually(&watcher, &waits_or_is_over, "t", 30).await);
            holder
                .batch_execute("SELECT pg_advisory_unlock(4243)")
                .await
                .unwrap();
        };
        let (deleted, ()) = tokio::join!(delete, release);
        deleted.unwrap();
    };
    let (report, ()) = tokio::join!(run, meddle);
    assert_eq!(applied(&report.unwrap()), [3]);
    assert_eq!(recorded(&watcher).await, [2, 3]);
    assert!(refuses_version_1_out_of_order(&all, &db).await);
}

#[tokio::test]
async fn rows_written_by_hand_still_move_the_digest() {
    // Batch inserts keep the digest themselves; everything else goes
    // through the trigger.
    let db = database().await;
    let m = five("CREATE TABLE c (id int);", "CREATE TABLE e (id int);");
    let _ = Migrator::new(&m).run(db.pool()).await.unwrap();
    let client = db.connect().await.unwrap();
    client
        .batch_execute(
            "INSERT INTO dbprep_schema_history (installed_rank, version, name, kind, applied_by, success, run_id) \
             VALUES (6, 6, 'by_hand', 'migration', current_user, true, 'hand')",
        )
        .await
        .unwrap();
    assert_eq!(digest_rows(&client).await.as_deref(), Some("6"));
    let error = Migrator::new(&m)
        .on_unknown(Policy::Error)
        .run(db.pool())
        .await
        .unwrap_err();
    assert!(error.to_string().contains('6'), "{error}");
}

#[tokio::test]
async fn ensure_database_creates_once_under_concurrency() {
    let db = database().await;
    let mut config = db.config();
    let name = format!("{}_made", db.name());
    config.dbname(&name);
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let config = config.clone();
            tokio::spawn(async move { dbprep_runtime::ensure_database(&config).await })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        created += usize::from(task.await.unwrap().unwrap());
    }
    assert!(created <= 1, "created {created} times");
    let client = db.connect().await.unwrap();
    let found = scalar(
        &client,
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"),
    )
    .await;
    assert_eq!(found.as_deref(), Some("1"));
    assert!(
        !dbprep_runtime::ensure_database(&config).await.unwrap(),
        "a second call creates nothing"
    );
    client
        .batch_execute(&format!("DROP DATABASE \"{name}\""))
        .await
        .unwrap();
}

#[tokio::test]
async fn connect_gives_up_on_an_unreachable_server_with_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user("nobody")
        .password("s3cret-pw")
        .dbname("x");
    let started = std::time::Instant::now();
    let error = dbprep_runtime::connect(&config, Duration::from_millis(400))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    let text = error.to_string();
    assert!(text.starts_with("cannot connect to the database"), "{text}");
    assert!(!text.contains("s3cret-pw"), "{text}");
}

#[tokio::test]
async fn progress_is_reported_after_each_migration() {
    let db = database().await;
    let m = migrations(&[
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        (
            "V2__ix.sql",
            "-- dbprep:no-transaction\nCREATE INDEX CONCURRENTLY ix_a ON a (id);",
        ),
        ("V3__b.sql", "CREATE TABLE b (id int);"),
        ("V4__c.sql", "CREATE TABLE c (id int);"),
    ]);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let _ = Migrator::new(&m)
        .on_progress(move |done, total| log.lock().unwrap().push((done, total)))
        .run(db.pool())
        .await
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), [(1, 4), (2, 4), (3, 4), (4, 4)]);
}

#[tokio::test]
async fn a_last_migration_that_sets_role_and_settings_leaves_the_callers_session_as_it_was() {
    // The end of the run (history read, digest, unlock) must not run as the
    // last migration's role, and the caller gets its session back.
    let db = database().await;
    let client = db.connect().await.unwrap();
    client
        .batch_execute(
            "CREATE ROLE dbprep_test_last_role NOLOGIN; CREATE SCHEMA IF NOT EXISTS elsewhere;
             SET application_name = 'the app'; SET search_path = elsewhere, public",
        )
        .await
        .unwrap();
    let m = migrations(&[
        ("V1__t.sql", "CREATE TABLE t (id int);"),
        (
            "V2__role.sql",
            "SET ROLE dbprep_test_last_role;\nSET search_path = nowhere;\nSET statement_timeout = '1ms';",
        ),
    ]);
    let report = Migrator::new(&m).run_on(&client).await;
    assert_eq!(report.map(|r| r.version).ok(), Some(Some(2)));
    let session = scalar(
        &client,
        "SELECT concat_ws(' | ', current_user, current_setting('search_path'), \
         current_setting('application_name'), current_setting('statement_timeout'))",
    )
    .await;
    assert_eq!(
        session.as_deref(),
        Some("postgres | elsewhere, public | the app | 0")
    );
}

/// A caller's connection with a search path of its own: each migration
/// starts with it, also after one that sets another.
#[tokio::test]
async fn each_migration_starts_with_the_callers_search_path() {
    let db = database().await;
    let client = db.connect().await.unwrap();
    client
        .batch_execute("CREATE SCHEMA app; CREATE SCHEMA other; SET search_path = app, public")
        .await
        .unwrap();
    let m = migrations(&[
        ("V1__a.sql", "CREATE TABLE a (id int);"),
        (
            "V2__b.sql",
            "SET search_path = other;\nCREATE TABLE b (id int);",
        ),
        ("V3__c.sql", "CREATE TABLE c (id int);"),
        ("V4__d.sql", "CREATE TABLE d (id int);"),
    ]);
    let report = Migrator::new(&m).run_on(&client).await.unwrap();
    assert_eq!(report.version, Some(4));
    for table in ["app.a", "other.b", "app.c", "app.d"] {
        assert!(exists(&client, table).await, "{table} is missing");
    }
}

#[tokio::test]
async fn a_session_authorization_set_by_a_migration_ends_with_it() {
    let db = database().await;
    let client = db.connect().await.unwrap();
    client
        .batch_execute(
            "CREATE ROLE dbprep_test_auth NOLOGIN; GRANT CREATE ON SCHEMA public TO dbprep_test_auth",
        )
        .await
        .unwrap();
    let m = migrations(&[
        (
            "V1__auth.sql",
            "SET SESSION AUTHORIZATION dbprep_test_auth;\nCREATE TABLE by_auth (id int);",
        ),
        ("V2__after.sql", "CREATE TABLE after_auth (id int);"),
    ]);
    let report = Migrator::new(&m).run_on(&client).await;
    assert_eq!(report.map(|r| r.version).ok(), Some(Some(2)));
    let owners = scalar(
        &client,
        "SELECT string_agg(tablename || ' ' || tableowner, ', ' ORDER BY tablename) \
         FROM pg_tables WHERE tablename IN ('by_auth', 'after_auth')",
    )
    .await;
    assert_eq!(
        owners.as_deref(),
        Some("after_auth postgres, by_auth dbprep_test_auth")
    );
    let session = scalar(&client, "SELECT session_user || ' ' || current_user").await;
    assert_eq!(session.as_deref(), Some("postgres postgres"));
}

/// An owner that is not a superuser: every migration's message puts back
/// its session authorization and role, which the server allows for the
/// user the session logged in as.
#[tokio::test]
async fn an_ordinary_owner_role_runs_the_migrations() {
    an_ordinary_owner_runs(LockMode::Session).await;
}

#[tokio::test]
async fn an_ordinary_owner_role_runs_the_migrations_in_transaction_lock_mode() {
    // The lease table too is made without asking for CREATE on the
    // database.
    an_ordinary_owner_runs(LockMode::Transaction).await;
}

/// A login role granted no more than CREATE on `public` runs five
/// migrations and loads a fixture, in `mode`; it owns what they made.
async fn an_ordinary_owner_runs(mode: LockMode) {
    let db = database().await;
    let (owner, pool) = login_role(&db, "owner", "GRANT CREATE ON SCHEMA public TO {role};").await;
    let m = five("CREATE TABLE c (id int);", "CREATE TABLE e (id int);");
    let migrator = Migrator::new(&m).lock_mode(mode);
    let report = migrator.run(&pool).await.unwrap();
    assert_eq!(report.version, Some(5));
    let fixture = Fixture::from_text("a".into(), "a.json".into(), br#"{"a": [{"id": 1}]}"#)
        .unwrap_or_else(|e| panic!("{e}"));
    let loaded = migrator.populate(&pool, &fixture, None).await.unwrap();
    assert_eq!(loaded.rows, 1);
    drop(pool);
    let client = db.connect().await.unwrap();
    let owners = scalar(
        &client,
        "SELECT string_agg(DISTINCT tableowner, ',') FROM pg_tables WHERE schemaname = 'public'",
    )
    .await;
    assert_eq!(owners, Some(owner.clone()));
    drop_role(&client, &owner).await;
}

#[tokio::test]
async fn session_defaults_set_by_a_migration_do_not_reach_the_next_one() {
    // The server reads a whole message before running any of it, and its
    // BEGIN takes the session's defaults: the reset must come before both.
    for setting in [
        "SET standard_conforming_strings = off;",
        "SET default_transaction_read_only = on;",
    ] {
        let db = database().await;
        let m = migrations(&[
            ("V1__t.sql", "CREATE TABLE t (id int, note text);"),
            ("V2__set.sql", setting),
            (
                "V3__u.sql",
                "INSERT INTO t VALUES (1, 'a\\b');\nCREATE TABLE u (id int);",
            ),
        ]);
        let report = Migrator::new(&m).run(db.pool()).await;
        assert_eq!(report.map(|r| r.version).ok(), Some(Some(3)), "{setting}");
        let client = db.connect().await.unwrap();
        let note = scalar(&client, "SELECT note FROM t").await;
        assert_eq!(note.as_deref(), Some("a\\b"), "{setting}");
        // The history holds every checksum as computed from the files.
        let report = Migrator::new(&m).verify(db.pool()).await.unwrap();
        assert!(report.findings.is_empty(), "{setting}: {report}");
    }
}

#[tokio::test]
async fn session_defaults_set_by_a_no_transaction_migration_do_not_reach_its_history_row() {
    let db = database().await;
    let m = migrations(&[
        ("V1__t.sql", "CREATE TABLE t (id int);"),
        (
            "V2__defaults.sql",
            "-- dbprep:no-transaction\nSET default_transaction_read_only = on;\nSET standard_conforming_strings = off;",
        ),
        ("V3__u.sql", "CREATE TABLE u (id int);"),
        (
            "V4__last.sql",
            "-- dbprep:no-transaction\nSET default_transaction_read_only = on;",
        ),
    ]);
    let report = Migrator::new(&m).run(db.pool()).await;
    assert_eq!(report.map(|r| r.version).ok(), Some(Some(4)));
    let report = Migrator::new(&m).verify(db.pool()).await.unwrap();
    assert!(report.findings.is_empty(), "{report}");
}

#[tokio::test]
async fn rows_a_migration_returns_are_read_and_dropped() {
    let db = database().await;
    let m = migrations(&[
        (
            "V1__rows.sql",
            "SELECT g, repeat('x', 100) FROM generate_series(1, 100000) AS g;",
        ),
        (
            "V2__rows.sql",
            "-- dbprep:no-transaction\nSELECT g FROM generate_series(1, 1000) AS g;",
        ),
        ("V3__t.sql", "CREATE TABLE t (id int);"),
    ]);
    let report = Migrator::new(&m).run(db.pool()).await;
    assert_eq!(report.map(|r| r.version).ok(), Some(Some(3)));
}

#[tokio::test]
async fn a_run_on_a_connection_inside_a_transaction_is_refused_before_writing() {
    let db = database().await;
    let client = db.connect().await.unwrap();
    let m = five("SELECT 1;", "SELECT 2;");
    client
        .batch_execute("BEGIN; CREATE TABLE callers_work (id int)")
        .await
        .unwrap();
    let error = Migrator::new(&m).run_on(&client).await.unwrap_err();
    assert!(
        error.to_string().contains("inside a transaction block"),
        "{error}"
    );
    // The caller's transaction is still open and still its own.
    client.batch_execute("ROLLBACK").await.unwrap();
    assert!(!exists(&client, "public.callers_work").await);
    assert!(!exists(&client, "public.dbprep_schema_history").await);

    // Up to date, a run inside a transaction only reads: it is allowed.
    let _ = Migrator::new(&m).run_on(&client).await.unwrap();
    client.batch_execute("BEGIN").await.unwrap();
    assert!(Migrator::new(&m)
        .run_on(&client)
        .await
        .unwrap()
        .was_up_to_date());
    // With something pending it is refused, and the caller's transaction
    // goes on untouched.
    let six = migrations(&[
        ("V1__a.sql", "CREATE TABLE a (id int PRIMARY KEY);"),
        ("V2__b.sql", "CREATE TABLE b (id int);"),
        ("V3__c.sql", "SELECT 1;"),
        ("V4__d.sql", "CREATE TABLE d (id int);"),
        ("V5__e.sql", "SELECT 2;"),
        ("V6__f.sql", "CREATE TABLE f (id int);"),
    ]);
    let error = Migrator::new(&six).run_on(&client).await.unwrap_err();
    assert!(
        error.to_string().contains("inside a transaction block"),
        "{error}"
    );
    client
        .batch_execute("CREATE TABLE callers_work (id int); COMMIT")
        .await
        .unwrap();
    assert!(exists(&client, "public.callers_work").await);
    assert!(!exists(&client, "public.f").await);
}

#[tokio::test]
async fn a_file_of_comments_alone_is_a_migration_that_changes_nothing() {
    // As `sqlx migrate add` and `diesel migration generate` start them.
    let m = migrations(&[
        ("V1__accounts.sql", "CREATE TABLE accounts (id int);"),
        ("V2__later.sql", "-- Add migration script here\n"),
        (
            "V3__nothing.sql",
            "-- dbprep:no-transaction\n-- Your SQL goes here\n",
        ),
        (
            "V4__notes.sql",
            "ALTER TABLE accounts ADD COLUMN notes text;",
        ),
    ]);
    let db = database().await;
    let report = Migrator::new(&m).run(db.pool()).await.unwrap();
    assert_eq!(applied(&report), [1, 2, 3, 4]);
    let client = db.connect().await.unwrap();
    assert_eq!(recorded(&client).await, [1, 2, 3, 4]);
    let verify = Migrator::new(&m).verify(db.pool()).await.unwrap();
    assert!(verify.is_clean(), "{verify}");
    let again = Migrator::new(&m).run(db.pool()).await.unwrap();
    assert!(applied(&again).is_empty());
}

/// What `body` logs at `level` and above (with the close of each span),
/// run on a runtime of its own under a subscriber that captures it.
fn logged<F: std::future::Future<Output = ()>>(level: tracing::Level, body: F) -> String {
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::format::FmtSpan;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_span_events(FmtSpan::CLOSE)
        .with_ansi(false)
        .with_max_level(level)
        .with_writer(move || writer.clone())
        .finish();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // `tracing` caches whether a callsite is wanted, process-wide: with
    // one live subscriber it asks the thread that first reaches the
    // callsite, and a test thread without one would answer "never" for
    // every thread. With a second one alive it asks them all.
    let _anchor = tracing::Dispatch::new(
        tracing_subscriber::fmt()
            .with_max_level(level)
            .with_writer(std::io::sink)
            .finish(),
    );
    tracing::subscriber::with_default(subscriber, || {
        tracing::callsite::rebuild_interest_cache();
        runtime.block_on(body)
    });
    let text = capture.0.lock().unwrap().clone();
    String::from_utf8(text).unwrap()
}

/// An application's subscriber gets a run and its migrations as spans with
/// fields, without parsing messages.
#[test]
fn a_run_is_a_span_with_a_span_per_migration() {
    let set = migrations(&[
        ("V1__users.sql", "CREATE TABLE users (id int);"),
        ("V2__events.sql", "CREATE TABLE events (id int);"),
    ]);
    let text = logged(tracing::Level::INFO, async {
        let db = database().await;
        let _ = Migrator::new(&set).run(db.pool()).await.unwrap();
    });
    let closed: Vec<&str> = text.lines().filter(|l| l.contains("close")).collect();
    assert!(
        closed
            .iter()
            .any(|l| l.contains("dbprep.migration{version=2 name=\"events\"")
                && l.contains("outcome=\"applied\"")),
        "{text}"
    );
    assert!(
        closed.iter().any(|l| l.contains("dbprep.run{")
            && l.contains("outcome=\"applied\"")
            && l.contains("applied=2")
            && l.contains("version=2")),
        "{text}"
    );
}
