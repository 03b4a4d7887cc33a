//! The commands that prepare a server for an application, from an admin
//! connection or the application's own: `check` walks the steps of a
//! connection one by one, `create-database` and `create-role` make what
//! the application needs (each idempotent).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;
use tokio_postgres::error::SqlState;
use tokio_postgres::Config;

use super::commands::{connection, print, target};
use crate::pg::connect::tls::{SslMode, Tls};
use crate::pg::connect::DATABASE_EXISTS;
use crate::pg::error::{describe, is_sqlstate, Error, Result};
use crate::pg::sql::{ident, literal};
use crate::Migrator;

/// Where `create-role` reads the role's password, as its options say.
pub(super) enum Password<'a> {
    /// The first line of standard input.
    Stdin,
    /// The first line of a file.
    File(&'a Path),
    /// An environment variable.
    Variable(&'a str),
    /// None: the role logs in by other means.
    None,
}

impl<'a> Password<'a> {
    /// The source the options name (clap lets one at most be given).
    pub(super) fn given(stdin: bool, file: Option<&'a Path>, variable: Option<&'a str>) -> Self {
        match (stdin, file, variable) {
            (true, _, _) => Password::Stdin,
            (false, Some(file), _) => Password::File(file),
            (false, None, Some(variable)) => Password::Variable(variable),
            (false, None, None) => Password::None,
        }
    }

    /// The password, refused when empty.
    fn read(&self) -> Result<Option<String>> {
        match self {
            Password::Stdin => {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).map_err(|e| {
                    Error::config_caused(format!("cannot read the password from stdin: {e}"), e)
                })?;
                let line = line.trim_end_matches(['\n', '\r']).to_owned();
                not_empty(line, "the password read from stdin").map(Some)
            }
            Password::File(file) => {
                let text = std::fs::read_to_string(file).map_err(|e| {
                    Error::config_caused(
                        format!("cannot read the password file {}: {e}", file.display()),
                        e,
                    )
                })?;
                let first = text.lines().next().unwrap_or_default().to_owned();
                not_empty(
                    first,
                    &format!("the first line of the password file {}", file.display()),
                )
                .map(Some)
            }
            Password::Variable(var) => {
                let value = std::env::var(var)
                    .map_err(|_| Error::config(format!("the variable {var} is not set")))?;
                not_empty(value, &format!("the variable {var}")).map(Some)
            }
            Password::None => Ok(None),
        }
    }
}

/// `create-database`: the database `name` (owned by `owner`), unless it
/// exists.
pub(super) async fn create_database(
    admin_url: Option<&str>,
    password_file: Option<&Path>,
    name: &str,
    owner: Option<&str>,
    json: bool,
) -> Result<()> {
    let (client, exists) = admin_lookup(
        admin_url,
        password_file,
        "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1",
        name,
    )
    .await?;
    if !exists {
        let owner_clause = owner
            .map(|o| format!(" OWNER {}", ident(o)))
            .unwrap_or_default();
        match client
            .batch_execute(&format!("CREATE DATABASE {}{owner_clause}", ident(name)))
            .await
        {
            Ok(()) => {}
            Err(e) if is_sqlstate(&e, DATABASE_EXISTS) => {}
            Err(e) => return Err(Error::postgres(format!("create database {name}"))(e)),
        }
    }
    let text = if exists {
        format!("database {name} already exists")
    } else {
        format!("created database {name}")
    };
    print(json, json!({"database": name, "created": !exists}), || text);
    Ok(())
}

/// `create-role`: the login role `name`, made or given `password`.
pub(super) async fn create_role(
    admin_url: Option<&str>,
    password_file: Option<&Path>,
    name: &str,
    password: Password<'_>,
    json: bool,
) -> Result<()> {
    let password = password.read()?;
    let (client, exists) = admin_lookup(
        admin_url,
        password_file,
        "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1",
        name,
    )
    .await?;
    // The server receives a SCRAM verifier, never the password itself:
    // statement logs cannot leak it.
    let new_password = password.is_some();
    let password_clause = password
        .map(|p| {
            format!(
                " PASSWORD {}",
                literal(&postgres_protocol::password::scram_sha_256(p.as_bytes()))
            )
        })
        .unwrap_or_default();
    let verb = if exists { "ALTER" } else { "CREATE" };
    client
        .batch_execute(&format!(
            "{verb} ROLE {} LOGIN{password_clause}",
            ident(name)
        ))
        .await
        .map_err(Error::postgres(format!(
            "{} role {name}",
            verb.to_lowercase()
        )))?;
    let text = match (exists, new_password) {
        (true, true) => format!("role {name} already exists (login and password updated)"),
        (true, false) => format!("role {name} already exists (login granted)"),
        (false, _) => format!("created role {name}"),
    };
    print(json, json!({"role": name, "created": !exists}), || text);
    Ok(())
}

/// A connection from the admin settings, and whether `sql` (a lookup by
/// `$1 = name`) finds a row.
async fn admin_lookup(
    admin_url: Option<&str>,
    password_file: Option<&Path>,
    sql: &str,
    name: &str,
) -> Result<(tokio_postgres::Client, bool)> {
    let (admin, tls) = connection(admin_url, password_file)?;
    let client =
        crate::pg::connect::connect_with(&admin, tls.connector()?, Duration::from_secs(10)).await?;
    let exists = client
        .query_opt(sql, &[&name])
        .await
        .map_err(Error::postgres(format!("look for {name}")))?
        .is_some();
    Ok((client, exists))
}

/// `password`, or an error naming where it came from when it is empty.
/// PostgreSQL stores no password for an empty one (with a notice), so the
/// role could not log in with a password at all; and an empty line is what
/// `echo "$UNSET" |` sends.
fn not_empty(password: String, from: &str) -> Result<String> {
    if password.is_empty() {
        return Err(Error::config(format!(
            "{from} is empty: PostgreSQL would keep no password for the role (nothing was created or changed)"
        )));
    }
    Ok(password)
}

/// `check`: each step a person would try, in order, with what to do when it
/// fails.
pub(super) async fn check(
    config: &Config,
    tls: &Tls,
    migrator: &Migrator<'_>,
    program: &str,
    json: bool,
) -> ExitCode {
    let mut steps: Vec<(String, bool, String)> = Vec::new();
    let target = target(config);
    let connector = match tls.connector() {
        Ok(connector) => connector,
        Err(e) => {
            steps.push(("TLS".into(), false, e.to_string()));
            return report_steps(&steps, json);
        }
    };
    let result = config.connect(connector).await;
    let client = match result {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            steps.push(("server reachable".into(), true, target.clone()));
            steps.push((
                "authentication".into(),
                true,
                format!("as {}", config.get_user().unwrap_or("?")),
            ));
            steps.push((
                "database exists".into(),
                true,
                config.get_dbname().unwrap_or("?").to_owned(),
            ));
            Some(client)
        }
        Err(e) => {
            let (step, hint) = match e.code() {
                Some(&SqlState::INVALID_PASSWORD)
                | Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION) => (
                    "authentication",
                    "check the user and password (PGUSER, PGPASSWORD or --password-file) and pg_hba.conf".to_owned(),
                ),
                Some(&SqlState::INVALID_CATALOG_NAME) => ("database exists", format!("create it: `{program} create-database NAME` or `{program} oneshot`")),
                Some(_) => ("server reachable", "the server refused the connection".to_owned()),
                None if describe(&e).contains("TLS") => (
                    "TLS",
                    format!("check sslmode ({:?}) and sslrootcert, and that the certificate names the host", tls.mode),
                ),
                None => ("server reachable", format!("is PostgreSQL running and listening at {target}?")),
            };
            if step != "server reachable" {
                steps.push(("server reachable".into(), true, target.clone()));
            }
            if step == "database exists" {
                steps.push((
                    "authentication".into(),
                    true,
                    format!("as {}", config.get_user().unwrap_or("?")),
                ));
            }
            steps.push((step.into(), false, format!("{}; {hint}", describe(&e))));
            None
        }
    };
    if let Some(client) = client {
        let encrypted = client
            .query_opt("SELECT version FROM pg_catalog.pg_stat_ssl WHERE pid = pg_catalog.pg_backend_pid() AND ssl", &[])
            .await;
        match (encrypted, tls.mode) {
            (Ok(Some(row)), mode) => steps.push((
                "TLS".into(),
                true,
                format!("encrypted ({}, sslmode {mode:?})", row.get::<_, String>(0)),
            )),
            (Ok(None), SslMode::Disable | SslMode::Allow | SslMode::Prefer) => steps.push((
                "TLS".into(),
                true,
                format!("not encrypted (sslmode {:?})", tls.mode),
            )),
            (Ok(None), mode) => steps.push((
                "TLS".into(),
                false,
                format!("not encrypted although sslmode is {mode:?}"),
            )),
            (Err(e), _) => steps.push(("TLS".into(), false, describe(&e))),
        }
        let version = client
            .query_one("SELECT current_setting('server_version_num')::int, current_setting('server_version')", &[])
            .await;
        match version {
            Ok(row) if row.get::<_, i32>(0) >= 120000 => {
                steps.push(("server version".into(), true, row.get::<_, String>(1)))
            }
            Ok(row) => steps.push((
                "server version".into(),
                false,
                format!(
                    "{} is too old: dbprep needs PostgreSQL 12 or newer",
                    row.get::<_, String>(1)
                ),
            )),
            Err(e) => steps.push(("server version".into(), false, describe(&e))),
        }
        let history = migrator.history();
        let privileges = client
            .query_one(
                "SELECT has_schema_privilege(n.oid, 'CREATE'), to_regclass($2) IS NOT NULL AND has_table_privilege(to_regclass($2), 'SELECT') \
                 FROM pg_namespace n WHERE n.nspname = $1 UNION ALL SELECT has_database_privilege(current_database(), 'CREATE'), false LIMIT 1",
                &[&history.schema, &history.qualified()],
            )
            .await;
        match privileges {
            Ok(row) if row.get::<_, bool>(0) => steps.push(("privileges".into(), true, format!("can create tables in schema {}", history.schema))),
            Ok(row) if row.get::<_, bool>(1) => steps.push(("privileges".into(), true, "can read the history (verify and status only)".into())),
            Ok(_) => steps.push((
                "privileges".into(),
                false,
                format!("cannot create tables in schema {}: grant CREATE on it (PostgreSQL 15+ no longer grants it on public) or make the role its owner", history.schema),
            )),
            Err(e) => steps.push(("privileges".into(), false, describe(&e))),
        }
    }
    report_steps(&steps, json)
}

/// The steps of `check`, each passed or not, and the exit code they make.
fn report_steps(steps: &[(String, bool, String)], json: bool) -> ExitCode {
    let ok = steps.iter().all(|(_, passed, _)| *passed);
    let value: Vec<_> = steps
        .iter()
        .map(|(step, passed, detail)| json!({"step": step, "ok": passed, "detail": detail}))
        .collect();
    print(json, json!({"ok": ok, "steps": value}), || {
        steps
            .iter()
            .map(|(step, passed, detail)| {
                format!("{} {step}: {detail}", if *passed { "ok  " } else { "FAIL" })
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
