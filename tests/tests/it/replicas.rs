//! Replicas that start at once: many migrator processes released together
//! on one database, with a `CREATE INDEX CONCURRENTLY` migration in the
//! set, directly and through PgBouncer in transaction mode. None fails,
//! each migration is applied once, no index is left INVALID.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use std::sync::OnceLock;

use dbprep_runtime::testing::{Bouncer, PoolMode, TestDatabase, TestServer};
use dbprep_runtime::Migrator;

use crate::support::{database, libpq_env, scalar};

/// Transactional migrations, a no-transaction `CREATE INDEX CONCURRENTLY`
/// in the middle, and more after it. The table has rows, so that the index
/// build takes long enough for the others to arrive while it runs.
const SET: &[(&str, &str)] = &[
    (
        "V1__accounts.sql",
        "CREATE TABLE accounts (id bigint PRIMARY KEY, owner text NOT NULL);\n\
         INSERT INTO accounts SELECT g, 'owner ' || g % 997 FROM generate_series(1, 50000) AS g;",
    ),
    (
        "V2__events.sql",
        "CREATE TABLE events (id bigint PRIMARY KEY, account_id bigint REFERENCES accounts);",
    ),
    (
        "V3__index_accounts_by_owner.sql",
        "-- dbprep:no-transaction\n\
         CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_accounts_owner ON accounts (owner);",
    ),
    (
        "V4__events_at.sql",
        "ALTER TABLE events ADD COLUMN at timestamptz NOT NULL DEFAULT now();",
    ),
    (
        "V5__recent_events.sql",
        "CREATE VIEW recent_events AS SELECT * FROM events WHERE at > now() - interval '1 day';",
    ),
];

/// A migrations folder holding the first `n` files of [`SET`] and `extra`.
fn folder(n: usize, extra: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, sql) in SET[..n].iter().chain(extra) {
        std::fs::write(dir.path().join(name), sql).unwrap();
    }
    dir
}

/// What one migrator process did.
struct Outcome {
    success: bool,
    applied: Vec<i64>,
    lock_tries: u32,
    done_by_peer: bool,
    output: String,
}

/// How the processes reach the database.
#[derive(Clone, Copy)]
enum Route {
    /// Straight to the server, with the session lock.
    Direct,
    /// Through PgBouncer in this pool mode: in transaction mode with the
    /// transaction lock mode, in session mode with the session lock.
    Bouncer(PoolMode),
}

/// The shared PgBouncer in `mode`, or `None` when the tests run against a
/// `DATABASE_URL` server (PgBouncer is set up for the throwaway cluster).
fn bouncer(mode: PoolMode) -> Option<&'static Bouncer> {
    static SESSION: OnceLock<Bouncer> = OnceLock::new();
    let TestServer::Cluster(cluster) = TestServer::get().unwrap() else {
        println!("DATABASE_URL is set: the PgBouncer case needs the throwaway cluster");
        return None;
    };
    Some(match mode {
        PoolMode::Transaction => Bouncer::shared().unwrap_or_else(|e| panic!("{e}")),
        PoolMode::Session => SESSION.get_or_init(|| {
            Bouncer::start(cluster, PoolMode::Session).unwrap_or_else(|e| panic!("{e}"))
        }),
    })
}

/// Start one migrator process per folder, each blocked on its standard
/// input, then release them all at once and wait for every one.
fn release_together(db: &TestDatabase, folders: &[&Path], route: Route) -> Vec<Outcome> {
    let mut env = libpq_env(db);
    let mode = match route {
        Route::Direct => "session",
        Route::Bouncer(pool_mode) => {
            let port = bouncer(pool_mode).expect("a PgBouncer").port().to_string();
            env.retain(|(name, _)| *name != "PGPORT");
            env.push(("PGPORT", port));
            match pool_mode {
                PoolMode::Session => "session",
                PoolMode::Transaction => "transaction",
            }
        }
    };
    let mut children: Vec<Child> = folders
        .iter()
        .map(|folder| {
            Command::new(env!("CARGO_BIN_EXE_dbprep-test-migrate"))
                .arg(folder)
                .arg(mode)
                .env_remove("DATABASE_URL")
                .envs(env.clone())
                .env("DBPREP_TEST_BARRIER", "1")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // The barrier: every process is started and waits on its input.
    let inputs: Vec<_> = children.iter_mut().map(|c| c.stdin.take()).collect();
    drop(inputs);
    children
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            let line = |prefix: &str| {
                stdout
                    .lines()
                    .find_map(|l| l.strip_prefix(prefix))
                    .unwrap_or_default()
                    .to_owned()
            };
            Outcome {
                success: output.status.success(),
                applied: line("applied: ")
                    .split(',')
                    .filter(|v| !v.is_empty())
                    .map(|v| v.parse().unwrap())
                    .collect(),
                lock_tries: line("lock tries: ").parse().unwrap_or(0),
                done_by_peer: line("done by peer: ") == "true",
                output: format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)),
            }
        })
        .collect()
}

/// Every process succeeded, and each of `expected` was applied by exactly
/// one of them.
fn assert_each_applied_once(outcomes: &[Outcome], expected: &[i64]) {
    let failures: Vec<&str> = outcomes
        .iter()
        .filter(|o| !o.success)
        .map(|o| o.output.as_str())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} processes failed:\n{}",
        failures.len(),
        outcomes.len(),
        failures.join("\n---\n")
    );
    let mut applied: Vec<i64> = outcomes.iter().flat_map(|o| o.applied.clone()).collect();
    applied.sort();
    assert_eq!(applied, expected, "each pending migration applied once");
}

/// [`assert_each_applied_once`], and the database holds the whole set, recorded once, with no
/// INVALID index.
async fn assert_all_applied_once(db: &TestDatabase, outcomes: &[Outcome], expected: &[i64]) {
    assert_each_applied_once(outcomes, expected);
    let client = db.connect().await.unwrap();
    let history = scalar(
        &client,
        "SELECT count(*) || ' ' || count(DISTINCT version) || ' ' || bool_and(success) \
         FROM public.dbprep_schema_history",
    )
    .await;
    assert_eq!(history.as_deref(), Some("5 5 true"));
    let invalid = scalar(
        &client,
        "SELECT count(*) FROM pg_catalog.pg_index WHERE NOT indisvalid",
    )
    .await;
    assert_eq!(invalid.as_deref(), Some("0"), "an INVALID index was left");
    let complete = scalar(
        &client,
        "SELECT to_regclass('ix_accounts_owner') IS NOT NULL \
         AND to_regclass('recent_events') IS NOT NULL \
         AND EXISTS (SELECT FROM pg_attribute WHERE attrelid = 'events'::regclass AND attname = 'at')",
    )
    .await;
    assert_eq!(complete.as_deref(), Some("t"), "the schema is incomplete");
    let tries: Vec<u32> = outcomes.iter().map(|o| o.lock_tries).collect();
    let done_by_peer = outcomes.iter().filter(|o| o.done_by_peer).count();
    println!(
        "lock tries per process: max {}, total {}; {done_by_peer} found the work done while waiting",
        tries.iter().max().unwrap(),
        tries.iter().sum::<u32>()
    );
    // Waiters look at the history between tries: those that arrived with
    // the holder end when it is done, without taking the lock in turn.
    assert!(done_by_peer > 0, "every waiter took the lock in turn");
}

/// 32 processes on a fresh database, three times.
async fn thirty_two_on_a_fresh_database(route: Route) {
    let set = folder(SET.len(), &[]);
    for _ in 0..3 {
        let db = database().await;
        let outcomes = release_together(&db, &[set.path(); 32], route);
        assert_all_applied_once(&db, &outcomes, &[1, 2, 3, 4, 5]).await;
    }
}

/// 32 processes on a database at half the set, three times.
async fn thirty_two_at_half_the_set(route: Route) {
    let set = folder(SET.len(), &[]);
    let migrations = dbprep_runtime::Migrations::from_dir(set.path()).unwrap();
    for _ in 0..3 {
        let db = database().await;
        let report = Migrator::new(&migrations)
            .target(2)
            .run(db.pool())
            .await
            .unwrap();
        assert_eq!(report.version, Some(2));
        let outcomes = release_together(&db, &[set.path(); 32], route);
        assert_all_applied_once(&db, &outcomes, &[3, 4, 5]).await;
    }
}

#[tokio::test]
async fn thirty_two_processes_on_a_fresh_database() {
    thirty_two_on_a_fresh_database(Route::Direct).await;
}

#[tokio::test]
async fn thirty_two_processes_on_a_database_at_half_the_set() {
    thirty_two_at_half_the_set(Route::Direct).await;
}

#[tokio::test]
async fn thirty_two_processes_through_pgbouncer_on_a_fresh_database() {
    if bouncer(PoolMode::Transaction).is_some() {
        thirty_two_on_a_fresh_database(Route::Bouncer(PoolMode::Transaction)).await;
    }
}

#[tokio::test]
async fn thirty_two_processes_through_pgbouncer_at_half_the_set() {
    if bouncer(PoolMode::Transaction).is_some() {
        thirty_two_at_half_the_set(Route::Bouncer(PoolMode::Transaction)).await;
    }
}

#[tokio::test]
async fn thirty_two_processes_through_pgbouncer_in_session_mode() {
    // A pooler in session mode keeps the session lock working as it does
    // on a direct connection.
    if bouncer(PoolMode::Session).is_some() {
        thirty_two_on_a_fresh_database(Route::Bouncer(PoolMode::Session)).await;
    }
}

#[tokio::test]
async fn old_and_new_binaries_started_together_during_a_rolling_deploy() {
    // The new release adds one migration; the old one does not embed it
    // and must start all the same, before and after the new one applied it.
    const NEW: (&str, &str) = (
        "V6__events_kind.sql",
        "ALTER TABLE events ADD COLUMN kind text NOT NULL DEFAULT 'unknown';",
    );
    let old = folder(SET.len(), &[]);
    let new = folder(SET.len(), &[NEW]);
    let migrations = dbprep_runtime::Migrations::from_dir(old.path()).unwrap();
    for _ in 0..3 {
        let db = database().await;
        let _ = Migrator::new(&migrations).run(db.pool()).await.unwrap();
        let folders: Vec<&Path> = (0..32)
            .map(|i| if i % 2 == 0 { new.path() } else { old.path() })
            .collect();
        let outcomes = release_together(&db, &folders, Route::Direct);
        let failures: Vec<&str> = outcomes
            .iter()
            .filter(|o| !o.success)
            .map(|o| o.output.as_str())
            .collect();
        assert!(failures.is_empty(), "{}", failures.join("\n---\n"));
        let applied: Vec<i64> = outcomes.iter().flat_map(|o| o.applied.clone()).collect();
        assert_eq!(applied, [6], "the new migration applied once");
        let client = db.connect().await.unwrap();
        let kind = scalar(
            &client,
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'events'::regclass AND attname = 'kind'",
        )
        .await;
        assert_eq!(kind.as_deref(), Some("1"));
    }
}

/// 16 processes released together on a fresh database with a repeatable
/// migration in the set: every one succeeds, each versioned migration
/// runs once, and so does the repeatable (it logs each of its runs).
async fn sixteen_with_a_repeatable(route: Route) {
    let repeatable = (
        "R__account_owners.sql",
        "CREATE TABLE IF NOT EXISTS repeatable_runs (at timestamptz DEFAULT now());\n\
         INSERT INTO repeatable_runs DEFAULT VALUES;\n\
         CREATE OR REPLACE VIEW account_owners AS SELECT DISTINCT owner FROM accounts;",
    );
    let set = folder(SET.len(), &[repeatable]);
    let db = database().await;
    let outcomes = release_together(&db, &[set.path(); 16], route);
    assert_each_applied_once(&outcomes, &[1, 2, 3, 4, 5]);
    let client = db.connect().await.unwrap();
    assert_eq!(
        scalar(&client, "SELECT count(*) FROM repeatable_runs")
            .await
            .as_deref(),
        Some("1"),
        "the repeatable migration ran more than once"
    );
}

#[tokio::test]
async fn sixteen_processes_with_a_repeatable_migration() {
    sixteen_with_a_repeatable(Route::Direct).await;
}

#[tokio::test]
async fn sixteen_processes_with_a_repeatable_migration_through_pgbouncer() {
    if bouncer(PoolMode::Transaction).is_some() {
        sixteen_with_a_repeatable(Route::Bouncer(PoolMode::Transaction)).await;
    }
}
