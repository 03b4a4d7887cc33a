//! One migration set over many tenants: 200 schemas of one database and 20
//! databases of one server, a few at a time, with a no-transaction
//! `CREATE INDEX CONCURRENTLY` in the set. A tenant with a hand-made
//! conflict fails alone, a rerun finishes it, a failed canary stops the
//! rest, and two processes walking the same tenants at once never run one
//! tenant twice.

use std::process::{Command, Stdio};

use dbprep_runtime::testing::TestDatabase;
use dbprep_runtime::{Migrations, Migrator, OnFailure, Rollout, Tenants};

use crate::support::{database, libpq_env, migrations, scalar};

/// Unqualified migrations, as one set serves every tenant; the last one
/// logs each run in a table shared by all (written schema-qualified).
const SET: &[(&str, &str)] = &[
    (
        "V1__accounts.sql",
        "CREATE TABLE accounts (id bigint PRIMARY KEY, owner text NOT NULL);\n\
         INSERT INTO accounts SELECT g, 'owner ' || g % 97 FROM generate_series(1, 500) AS g;",
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
        "V5__log_the_run.sql",
        "INSERT INTO public.tenant_runs (tenant) VALUES (current_schema());",
    ),
];

/// The table the set's last migration writes to.
const RUNS_TABLE: &str = "CREATE TABLE IF NOT EXISTS public.tenant_runs (tenant text NOT NULL)";

/// `count` tenant schemas `tenant_001`… and the shared runs table.
async fn tenant_schemas(client: &tokio_postgres::Client, count: usize) -> Vec<String> {
    let names: Vec<String> = (1..=count).map(|i| format!("tenant_{i:03}")).collect();
    let create: Vec<String> = names
        .iter()
        .map(|n| format!("CREATE SCHEMA {n};"))
        .collect();
    client
        .batch_execute(&format!("{RUNS_TABLE};\n{}", create.join("\n")))
        .await
        .unwrap();
    names
}

/// A pool on the test database with room for `jobs` workers.
fn pool_for(db: &TestDatabase, jobs: usize) -> deadpool_postgres::Pool {
    dbprep_runtime::pg::connect::pool(db.config(), jobs)
}

async fn versions_of(client: &tokio_postgres::Client, schema: &str) -> Vec<i64> {
    client
        .query(
            &format!(
                "SELECT version FROM {schema}.dbprep_schema_history WHERE success ORDER BY version"
            ),
            &[],
        )
        .await
        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .unwrap_or_default()
}

async fn runs_of(client: &tokio_postgres::Client, tenant: &str) -> i64 {
    scalar(
        client,
        &format!("SELECT count(*) FROM public.tenant_runs WHERE tenant = '{tenant}'"),
    )
    .await
    .unwrap()
    .parse()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_schemas_with_a_conflict_that_fails_alone() {
    let db = database().await;
    let client = db.connect().await.unwrap();
    let names = tenant_schemas(&client, 200).await;
    // A hand-made table where the first migration creates one.
    client
        .batch_execute("CREATE TABLE tenant_117.accounts (id int)")
        .await
        .unwrap();
    let set: &'static Migrations = Box::leak(Box::new(migrations(SET)));
    let pool = pool_for(&db, 4);
    let tenants = Tenants::schemas_like(&pool, "tenant\\_%").await.unwrap();
    assert_eq!(tenants.names(), &names[..]);

    let rollout = Rollout::jobs(4).on_failure(OnFailure::Continue);
    // A walk is a future an application may spawn.
    let report = {
        let (tenants, rollout) = (tenants.clone(), rollout.clone());
        tokio::spawn(async move { Migrator::new(set).run_each(&tenants, rollout).await })
            .await
            .unwrap()
            .unwrap()
    };
    assert!(!report.is_success());
    let failed: Vec<&str> = report.failed().map(|t| t.tenant.as_str()).collect();
    assert_eq!(failed, ["tenant_117"], "{report}");
    let error = report
        .tenant("tenant_117")
        .unwrap()
        .error()
        .unwrap()
        .to_string();
    assert!(
        error.contains("V1__accounts.sql") && error.contains("already exists"),
        "{error}"
    );
    assert_eq!(report.counts()[0], ("migrated", 199), "{report}");
    assert_eq!(report.not_started().count(), 0);
    // Each tenant's tables in its schema, none in public; the failed
    // tenant has no history row and only its own table.
    assert_eq!(versions_of(&client, "tenant_001").await, [1, 2, 3, 4, 5]);
    assert_eq!(versions_of(&client, "tenant_200").await, [1, 2, 3, 4, 5]);
    assert_eq!(versions_of(&client, "tenant_117").await, Vec::<i64>::new());
    assert_eq!(
        scalar(&client, "SELECT to_regclass('public.accounts') IS NULL")
            .await
            .as_deref(),
        Some("t")
    );
    assert_eq!(
        scalar(
            &client,
            "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE c.relname = 'ix_accounts_owner' AND i.indisvalid"
        )
        .await
        .as_deref(),
        Some("199")
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

    let migrator = Migrator::new(set);
    let status = migrator.status_each(&tenants, 4).await.unwrap();
    assert_eq!(
        status.counts(),
        [
            ("up to date", 199),
            ("pending", 1),
            ("failed", 0),
            ("not started", 0)
        ],
        "{status}"
    );
    // verify, which finds no drift there, still shows what the failed walk
    // left behind.
    let verified = migrator.verify_each(&tenants, 4).await.unwrap().to_string();
    assert!(
        verified
            .lines()
            .any(|line| line.starts_with("tenant_117") && line.contains(", 5 pending")),
        "{verified}"
    );

    // The rerun after the conflict is cleared: the 199 cost their check.
    client
        .batch_execute("DROP TABLE tenant_117.accounts")
        .await
        .unwrap();
    let rerun = migrator.run_each(&tenants, rollout).await.unwrap();
    assert!(rerun.is_success(), "{rerun}");
    assert_eq!(
        rerun.counts(),
        [
            ("up to date", 199),
            ("migrated", 1),
            ("failed", 0),
            ("not started", 0)
        ],
        "{rerun}"
    );
    for name in ["tenant_001", "tenant_117", "tenant_200"] {
        assert_eq!(runs_of(&client, name).await, 1, "{name}");
    }

    // Each tenant's snapshot describes its own schema: a change by hand in
    // one is that tenant's drift alone.
    let verified = migrator.verify_each(&tenants, 4).await.unwrap();
    assert_eq!(verified.counts()[0], ("clean", 200), "{verified}");
    client
        .batch_execute("ALTER TABLE tenant_042.accounts ADD COLUMN nickname text")
        .await
        .unwrap();
    let verified = migrator.verify_each(&tenants, 4).await.unwrap();
    let drifted: Vec<&str> = verified
        .tenants
        .iter()
        .filter(|t| t.state() == "drift")
        .map(|t| t.tenant.as_str())
        .collect();
    assert_eq!(drifted, ["tenant_042"], "{verified}");
    let text = verified.to_string();
    assert!(
        text.contains("column tenant_042.accounts.nickname added"),
        "{text}"
    );
    assert!(
        text.contains("199 clean, 1 drift, 0 failed, 0 not started"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_canary_stops_the_rest() {
    let db = database().await;
    let client = db.connect().await.unwrap();
    let names = tenant_schemas(&client, 10).await;
    client
        .batch_execute("CREATE TABLE tenant_002.events (id int)")
        .await
        .unwrap();
    let set = migrations(SET);
    let pool = pool_for(&db, 2);
    let tenants = Tenants::schemas(&pool, &names);
    // Continue after the canary, but the canary's failure stops it all.
    // (One job, so that which tenants began before the failure is known.)
    let rollout = Rollout::jobs(1).canary(3).on_failure(OnFailure::Continue);
    let report = Migrator::new(&set)
        .run_each(&tenants, rollout)
        .await
        .unwrap();
    let states: Vec<&str> = report.tenants.iter().map(|t| t.state()).collect();
    assert_eq!(
        states,
        [
            "migrated",
            "failed",
            "not started",
            "not started",
            "not started",
            "not started",
            "not started",
            "not started",
            "not started",
            "not started"
        ],
        "{report}"
    );
    assert_eq!(versions_of(&client, "tenant_004").await, Vec::<i64>::new());
    assert!(
        report.to_string().contains("tenant_002  FAILED: "),
        "{report}"
    );

    // Under `stop`, a failure after the canary starts nobody new.
    client
        .batch_execute("DROP TABLE tenant_002.events; CREATE TABLE tenant_006.events (id int)")
        .await
        .unwrap();
    let rollout = Rollout::jobs(1).canary(3).on_failure(OnFailure::Stop);
    let report = Migrator::new(&set)
        .run_each(&tenants, rollout)
        .await
        .unwrap();
    let not_started: Vec<&str> = report.not_started().collect();
    assert_eq!(
        not_started,
        ["tenant_007", "tenant_008", "tenant_009", "tenant_010"]
    );
    assert_eq!(report.failed().count(), 1);
    assert_eq!(versions_of(&client, "tenant_005").await, [1, 2, 3, 4, 5]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_tenant_lists_are_refused_before_anything_runs() {
    let db = database().await;
    let set = migrations(SET);
    let long = "t".repeat(64);
    let tenants = Tenants::schemas(db.pool(), ["a", "a", "pg_x", long.as_str()]);
    let error = Migrator::new(&set)
        .run_each(&tenants, 2)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("\"a\" is listed twice"), "{error}");
    assert!(error.contains("pg_ are reserved"), "{error}");
    assert!(
        error.contains("longer than PostgreSQL's 63 bytes"),
        "{error}"
    );
    let client = db.connect().await.unwrap();
    assert_eq!(
        scalar(
            &client,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'a'"
        )
        .await
        .as_deref(),
        Some("0")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_databases() {
    let db = database().await;
    let server = db.server();
    let admin = {
        let (client, connection) = server
            .admin_config()
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    };
    let prefix = format!("{}_tenant", db.name());
    let names: Vec<String> = (1..=20).map(|i| format!("{prefix}_{i:02}")).collect();
    for name in &names {
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
    }
    // Every database has the runs table; one has a conflicting table.
    for name in &names {
        let (client, connection) = server
            .config(name)
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let mut sql = RUNS_TABLE.to_owned();
        if name.ends_with("_13") {
            sql.push_str("; CREATE TABLE public.accounts (id int)");
        }
        client.batch_execute(&sql).await.unwrap();
    }
    let set = migrations(SET);
    let base = db.config();
    let pool_of = move |name: &str| {
        let mut config = base.clone();
        config.dbname(name);
        dbprep_runtime::pg::connect::pool(config, 1)
    };
    let tenants = Tenants::databases_like(db.pool(), &format!("{prefix}\\_%"), pool_of)
        .await
        .unwrap();
    assert_eq!(tenants.names(), &names[..]);
    let migrator = Migrator::new(&set);
    let rollout = Rollout::jobs(4).on_failure(OnFailure::Continue);
    let report = migrator.run_each(&tenants, rollout.clone()).await.unwrap();
    let failed: Vec<&str> = report.failed().map(|t| t.tenant.as_str()).collect();
    assert_eq!(failed, [names[12].as_str()], "{report}");
    assert_eq!(report.counts()[0], ("migrated", 19), "{report}");

    let (thirteen, connection) = server
        .config(&names[12])
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    thirteen
        .batch_execute("DROP TABLE public.accounts")
        .await
        .unwrap();
    let rerun = migrator.run_each(&tenants, rollout).await.unwrap();
    assert_eq!(
        rerun.counts(),
        [
            ("up to date", 19),
            ("migrated", 1),
            ("failed", 0),
            ("not started", 0)
        ],
        "{rerun}"
    );
    assert_eq!(
        scalar(
            &thirteen,
            "SELECT count(*) FROM public.dbprep_schema_history"
        )
        .await
        .as_deref(),
        Some("5")
    );
    let verified = migrator.verify_each(&tenants, 4).await.unwrap();
    assert!(verified.is_success(), "{verified}");
    assert_eq!(verified.counts()[0], ("clean", 20), "{verified}");
    drop(thirteen);
    for name in &names {
        let _ = admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await;
    }
}

/// Two processes walking the same 60 tenants at once, released together,
/// four jobs each: every tenant migrated once.
#[test]
fn two_walks_at_once_never_run_one_tenant_twice() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = runtime.block_on(database());
    let client = runtime.block_on(db.connect()).unwrap();
    let names = runtime.block_on(tenant_schemas(&client, 60));
    let dir = tempfile::tempdir().unwrap();
    for (name, sql) in SET {
        std::fs::write(dir.path().join(name), sql).unwrap();
    }
    let mut children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_dbprep-test-migrate"))
                .arg(dir.path())
                .arg("session")
                .args(["--each-schema", "tenant\\_%", "--jobs", "4"])
                .env_remove("DATABASE_URL")
                .envs(libpq_env(&db))
                .env("DBPREP_TEST_BARRIER", "1")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let inputs: Vec<_> = children.iter_mut().map(|c| c.stdin.take()).collect();
    drop(inputs);
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let mut migrated_by = Vec::new();
    for output in &outputs {
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        migrated_by.push(
            stdout
                .lines()
                .filter(|l| l.contains("applied 5 migration(s)"))
                .count(),
        );
    }
    // Every tenant was migrated by one of the two, and logged once.
    assert_eq!(migrated_by.iter().sum::<usize>(), 60, "{migrated_by:?}");
    for name in &names {
        assert_eq!(runtime.block_on(runs_of(&client, name)), 1, "{name}");
    }
}
