//! Helpers shared by the integration tests.

use dbprep_runtime::testing::TestDatabase;

/// A fresh database; panics with the reason when no server can be had.
pub async fn database() -> TestDatabase {
    TestDatabase::new().await.unwrap_or_else(|e| panic!("{e}"))
}

/// The single value of a one-row, one-column query, as text.
pub async fn scalar(client: &tokio_postgres::Client, sql: &str) -> Option<String> {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    messages.into_iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_owned)),
        _ => None,
    })?
}

/// A migrations folder written from `(file name, SQL)` pairs and read at
/// run time, with the same checks as `embed_migrations!`.
pub fn migrations(files: &[(&str, &str)]) -> dbprep_runtime::Migrations {
    let dir = tempfile::tempdir().unwrap();
    for (name, sql) in files {
        std::fs::write(dir.path().join(name), sql).unwrap();
    }
    dbprep_runtime::Migrations::from_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"))
}

/// The versions recorded in the history table, in version order.
pub async fn recorded(client: &tokio_postgres::Client) -> Vec<i64> {
    let rows = client
        .query(
            "SELECT version FROM public.dbprep_schema_history WHERE success ORDER BY version",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

/// Whether a relation exists.
pub async fn exists(client: &tokio_postgres::Client, relation: &str) -> bool {
    let found = scalar(
        client,
        &format!("SELECT to_regclass('{relation}') IS NOT NULL"),
    )
    .await;
    found.as_deref() == Some("t")
}

/// The libpq variables that point a child process at `db`.
pub fn libpq_env(db: &TestDatabase) -> Vec<(&'static str, String)> {
    let config = db.config();
    let mut env = vec![("PGDATABASE", db.name().to_owned())];
    if let Some(tokio_postgres::config::Host::Tcp(host)) = config.get_hosts().first() {
        env.push(("PGHOST", host.clone()));
    }
    if let Some(port) = config.get_ports().first() {
        env.push(("PGPORT", port.to_string()));
    }
    if let Some(user) = config.get_user() {
        env.push(("PGUSER", user.to_owned()));
    }
    if let Some(password) = config.get_password() {
        env.push(("PGPASSWORD", String::from_utf8_lossy(password).into_owned()));
    }
    env
}

/// Poll `sql` (a one-value query) until it returns `want`, for at most
/// `seconds`.
pub async fn eventually(
    client: &tokio_postgres::Client,
    sql: &str,
    want: &str,
    seconds: u64,
) -> bool {
    for _ in 0..seconds * 10 {
        if scalar(client, sql).await.as_deref() == Some(want) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

/// A new login role for `db` (its name ends in `suffix`), set up by
/// `grants` (SQL, `{role}` standing for its quoted name), and a pool that
/// connects as it. [`drop_role`] removes it.
pub async fn login_role(
    db: &TestDatabase,
    suffix: &str,
    grants: &str,
) -> (String, deadpool_postgres::Pool) {
    let role = format!("{}_{suffix}", db.name());
    let quoted = format!("\"{role}\"");
    db.connect()
        .await
        .unwrap()
        .batch_execute(&format!(
            "CREATE ROLE {quoted} LOGIN; {}",
            grants.replace("{role}", &quoted)
        ))
        .await
        .unwrap();
    let mut config = db.config();
    config.user(&role);
    (role, dbprep_runtime::testing::pool(config, 1))
}

/// Remove a role made by [`login_role`] and what it owns.
pub async fn drop_role(client: &tokio_postgres::Client, role: &str) {
    client
        .batch_execute(&format!("DROP OWNED BY \"{role}\"; DROP ROLE \"{role}\";"))
        .await
        .ok();
}

/// The versions a run applied, in order.
pub fn applied(report: &dbprep_runtime::Report) -> Vec<i64> {
    report.applied.iter().map(|a| a.version).collect()
}

/// Whether a statement of the connection's database sleeps in
/// `pg_sleep` (other tests sleep in theirs; and the server shows only the
/// first kilobyte of a message's text, which dbprep's own statements may
/// fill, so the query text is no guide).
pub const SLEEPING: &str = "SELECT count(*) FROM pg_stat_activity \
     WHERE wait_event = 'PgSleep' AND datname = current_database()";

/// A run of `migrations` on `pool` in `mode`, in a task of its own.
pub fn run_in_background(
    migrations: &'static dbprep_runtime::Migrations,
    pool: &deadpool_postgres::Pool,
    mode: dbprep_runtime::LockMode,
) -> tokio::task::JoinHandle<Result<dbprep_runtime::Report, dbprep_runtime::Error>> {
    let pool = pool.clone();
    tokio::spawn(async move {
        dbprep_runtime::Migrator::new(migrations)
            .lock_mode(mode)
            .run(&pool)
            .await
    })
}

/// The stored schema snapshot's objects, hashed (without their owners'
/// OIDs, which differ from one database to another): equal when two
/// snapshots describe the same schema.
pub const STORED_OBJECTS: &str = "SELECT coalesce(md5(string_agg(section || ' ' || name || ' ' || coalesce(definition::text, '-'), E'\\n' \
     ORDER BY section, name)), 'none') FROM public.dbprep_schema_snapshot WHERE section <> ''";

/// The stored schema snapshot's version, `itemized` and objects hash,
/// separated by spaces.
pub async fn stored_snapshot(client: &tokio_postgres::Client) -> String {
    let about = "SELECT (definition ->> 'version') || ' ' || (definition ->> 'itemized') \
                 FROM public.dbprep_schema_snapshot WHERE section = ''";
    format!(
        "{} {}",
        scalar(client, about).await.unwrap_or_default(),
        scalar(client, STORED_OBJECTS).await.unwrap_or_default()
    )
}
