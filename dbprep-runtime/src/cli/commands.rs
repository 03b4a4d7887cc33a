//! What each subcommand does.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use deadpool_postgres::Pool;
use serde_json::json;
use tokio_postgres::Config;

use super::output::{history_table, status_table, Table};
use super::server;
use super::stdout;
use super::{Cli, Command, FixtureCommand, OnConflict};
use crate::model::fixture::{Fixture, Fixtures};
use crate::model::migration::Migrations;

use crate::pg::connect::tls::Tls;
use crate::pg::drift::verify::VerifyReport;
use crate::pg::error::{Error, Result};
use crate::pg::populate::Conflict;
use crate::pg::report::{show, RepairOptions};
use crate::{Migrator, Rollout, Tenants};

/// The connection settings: `url` (else `DATABASE_URL`), the libpq
/// variables for the rest, and the password file.
pub(super) fn connection(url: Option<&str>, password_file: Option<&Path>) -> Result<(Config, Tls)> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (mut config, tls) = crate::pg::connect::tls::from_vars(|name| match name {
        "DATABASE_URL" => url.map(str::to_owned).or_else(|| env(name)),
        other => env(other),
    })?;
    if let Some(file) = password_file {
        let text = std::fs::read_to_string(file).map_err(|e| {
            Error::config_caused(
                format!("cannot read the password file {}: {e}", file.display()),
                e,
            )
        })?;
        config.password(text.lines().next().unwrap_or_default());
    }
    Ok((config, tls))
}

/// `user@host:port/database`, never with the password.
pub(super) fn target(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{}",
        config.get_user().unwrap_or("?"),
        config.get_dbname().unwrap_or("?")
    )
}

/// `value` as JSON, or `text` for a person.
pub(super) fn print(json: bool, value: impl serde::Serialize, text: impl FnOnce() -> String) {
    if json {
        // dbprep's reports serialize without fail: plain fields, string keys.
        stdout::line(&serde_json::to_string(&value).unwrap_or_default());
    } else {
        stdout::line(&text());
    }
}

pub(super) async fn execute(
    cli: &Cli,
    program: &str,
    migrations: &Migrations,
    fixtures: &Fixtures,
) -> Result<ExitCode> {
    let g = &cli.global;
    let json = g.json;
    let migrator = || {
        let mut migrator = Migrator::new(migrations)
            .lock_wait(Duration::from_secs(g.lock_wait))
            .lock_mode(g.lock_mode)
            .lock_timeout(g.lock_timeout)
            .lock_retries(g.lock_retries)
            .fixtures(fixtures);
        // Left to its default, the schema may be refused for a history
        // found elsewhere (see `Migrator::history_schema`).
        if g.history_schema_given {
            migrator = migrator.history_schema(&g.history_schema);
        }
        if let Some(table) = &g.history_table {
            migrator = migrator.history_table(table);
        }
        if let Some(policy) = g.out_of_order {
            migrator = migrator.out_of_order(policy);
        }
        if let Some(policy) = g.on_edited {
            migrator = migrator.on_edited(policy);
        }
        if let Some(policy) = g.on_unknown {
            migrator = migrator.on_unknown(policy);
        }
        if let Some(policy) = g.on_schema_drift {
            migrator = migrator.on_schema_drift(policy);
        }
        migrator
    };
    // Up to `--to` when given, else the newest.
    let migrator_to = |to: Option<i64>| match to {
        Some(version) => migrator().target(version),
        None => migrator(),
    };
    let database = || -> Result<(Config, Tls, Pool)> {
        let (config, tls) = connection(g.url.as_deref(), g.password_file.as_deref())?;
        let pool = crate::pg::connect::pool_with(config.clone(), tls.connector()?, 2);
        Ok((config, tls, pool))
    };
    // A progress bar on a terminal, for runs of more than a few migrations.
    let interactive = !json && !g.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    if cli.command.needs_migrations() && migrations.is_empty() {
        tracing::warn!(
            "no migrations: give the folder with --migrations DIR (default: ./migrations)"
        );
    }
    let offline = matches!(
        cli.command,
        Command::Fixture {
            command: FixtureCommand::List
        } | Command::CreateDatabase { .. }
            | Command::CreateRole { .. }
            | Command::Sql { .. }
            | Command::Lint { .. }
    );
    if g.wait > 0 && !offline {
        let (config, tls) = connection(g.url.as_deref(), g.password_file.as_deref())?;
        crate::pg::connect::wait_for_server(&config, tls.connector()?, Duration::from_secs(g.wait))
            .await?;
    }
    match &cli.command {
        Command::Upgrade {
            to,
            no_schema_snapshot,
            tenants,
            canary,
            on_failure,
        } => {
            let migrator = migrator_to(*to).schema_snapshot(!no_schema_snapshot);
            if tenants.given() {
                let (found, rollout) = tenant_walk(g, tenants, interactive).await?;
                let rollout = rollout.canary(*canary).on_failure(*on_failure);
                let report = migrator.run_each(&found, rollout).await?;
                print(json, &report, || report.to_string());
                return Ok(exit_code(report.is_success()));
            }
            let (_, _, pool) = database()?;
            let report = with_progress(migrator, interactive).run(&pool).await?;
            print(json, &report, || match *to {
                // "Up to date" would read as "at the target".
                Some(target) if report.applied.is_empty() && report.version > Some(target) => {
                    format!(
                        "database at version {}, past the target {target}: nothing to apply \
                         (`{program} downgrade --to {target}` goes back to it)",
                        show(report.version)
                    )
                }
                _ => report.to_string(),
            });
        }
        Command::Oneshot => {
            let (config, tls, pool) = database()?;
            let created =
                crate::pg::connect::ensure_database_with(&config, tls.connector()?).await?;
            if created && !json {
                stdout::line(&format!(
                    "created database {}",
                    config.get_dbname().unwrap_or_default()
                ));
            }
            let report = with_progress(migrator(), interactive).run(&pool).await?;
            let mut value = serde_json::to_value(&report).unwrap_or_default();
            value["created_database"] = json!(created);
            print(json, value, || report.to_string());
        }
        Command::CheckReversible { to } => {
            let (config, tls) = connection(g.url.as_deref(), g.password_file.as_deref())?;
            let report = migrator_to(*to)
                .check_reversible_with(&config, tls.connector()?)
                .await?;
            print(json, &report, || report.to_string());
            if !report.is_clean() {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Downgrade { to, dry_run } => {
            let (_, _, pool) = database()?;
            let report = migrator().revert(&pool, *to, *dry_run).await?;
            print(json, &report, || report.to_string());
        }
        Command::Adopt {
            from,
            schema,
            table,
            dry_run,
        } => {
            let (_, _, pool) = database()?;
            let mut adopt = crate::Adopt::new(*from).schema(schema).dry_run(*dry_run);
            if let Some(table) = table {
                adopt = adopt.table(table);
            }
            let report = migrator().adopt(&pool, &adopt).await?;
            print(json, &report, || report.to_string());
        }
        Command::Lint { since } => {
            let findings = migrations.lint_since(*since);
            let listed: Vec<serde_json::Value> = findings
                .iter()
                .map(|f| {
                    json!({
                        "rule": f.rule.name(),
                        "file": f.file,
                        "line": f.line,
                        "column": f.column,
                        "statement": f.statement,
                        "advice": f.rule.advice(),
                    })
                })
                .collect();
            print(json, json!({ "findings": listed }), || {
                if findings.is_empty() {
                    "no statement that blocks traffic".to_owned()
                } else {
                    let text: Vec<String> = findings.iter().map(ToString::to_string).collect();
                    format!(
                        "{} statement(s) would block the application's traffic:\n{}",
                        findings.len(),
                        text.join("\n")
                    )
                }
            });
            if !findings.is_empty() {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Sql {
            from,
            to,
            no_schema_snapshot,
        } => {
            let migrator = migrator_to(*to).schema_snapshot(!no_schema_snapshot);
            stdout::write(&migrator.script(*from)?);
        }
        Command::Status { tenants } if tenants.given() => {
            let (found, rollout) = tenant_walk(g, tenants, interactive).await?;
            let report = migrator().status_each(&found, rollout).await?;
            print(json, &report, || report.to_string());
            return Ok(exit_code(report.is_success()));
        }
        Command::Status { .. } => {
            let (_, _, pool) = database()?;
            let status = migrator().status(&pool).await?;
            print(json, &status, || {
                let mut text = status_table(
                    &status,
                    std::io::IsTerminal::is_terminal(&std::io::stdout()),
                )
                .to_string();
                for index in &status.invalid_indexes {
                    text.push_str(&format!(
                        "\nINVALID index {index}: its build failed or is still running"
                    ));
                }
                text
            });
        }
        Command::History => {
            let (_, _, pool) = database()?;
            let rows = migrator().history_rows(&pool).await?;
            print(json, json!({ "history": rows }), || {
                history_table(&rows).to_string()
            });
        }
        Command::Stamp { target } => {
            let version = match target.as_str() {
                "head" => None,
                v => Some(v.parse::<i64>().map_err(|_| {
                    Error::config(format!("stamp takes a version number or `head`, not {v:?}"))
                })?),
            };
            let (_, _, pool) = database()?;
            let report = migrator().stamp(&pool, version).await?;
            print(json, &report, || stamped(&report));
        }
        Command::Verify { tenants } if tenants.given() => {
            let (found, rollout) = tenant_walk(g, tenants, interactive).await?;
            let report = migrator().verify_each(&found, rollout).await?;
            print(json, &report, || report.to_string());
            let clean = report
                .tenants
                .iter()
                .all(|t| t.report().is_some_and(VerifyReport::is_clean));
            return Ok(exit_code(clean));
        }
        Command::Verify { .. } => {
            let (_, _, pool) = database()?;
            let report = migrator().verify(&pool).await?;
            print(json, &report, || report.to_string());
            if !report.is_clean() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Report { html } => {
            let (_, _, pool) = database()?;
            let overview = migrator().overview(&pool).await?;
            let page = overview.to_html();
            if html.as_os_str() == "-" {
                stdout::write(&page);
            } else {
                write_whole(html, page.as_bytes())?;
                print(
                    json,
                    json!({ "file": html, "clean": overview.verify.is_clean() }),
                    || {
                        format!(
                            "wrote {}: {} version(s), {}",
                            html.display(),
                            overview.status.entries.len(),
                            if overview.verify.findings.is_empty() {
                                "no drift".to_owned()
                            } else {
                                format!("{} drift finding(s)", overview.verify.findings.len())
                            }
                        )
                    },
                );
            }
        }
        Command::Repair {
            drop_invalid_indexes,
        } => {
            let (_, _, pool) = database()?;
            let options = RepairOptions::default().drop_invalid_indexes(*drop_invalid_indexes);
            let report = migrator().repair_with(&pool, options).await?;
            print(json, &report, || report.to_string());
        }
        Command::Fixture {
            command: FixtureCommand::List,
        } => {
            let value: Vec<_> = fixtures
                .iter()
                .map(|f| json!({"name": f.name(), "file": f.file(), "checksum": f.checksum().to_string()}))
                .collect();
            print(json, json!({ "fixtures": value }), || {
                let mut table = Table::new(["name", "checksum", "file"]);
                for f in fixtures.iter() {
                    table.row([
                        f.name().to_owned(),
                        f.checksum().short(),
                        f.file().to_owned(),
                    ]);
                }
                table.to_string()
            });
        }
        Command::Fixture {
            command:
                FixtureCommand::Populate {
                    fixture,
                    on_conflict,
                },
        } => {
            let fixture = match fixtures.get(fixture) {
                Some(f) => f.clone(),
                None if Path::new(fixture).is_file() => Fixture::from_path(fixture)?,
                None => {
                    let known: Vec<&str> = fixtures.iter().map(Fixture::name).collect();
                    return Err(Error::config(format!(
                        "no fixture named {fixture:?} and no such file; known fixtures: {}",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    )));
                }
            };
            let conflict = on_conflict.map(|c| match c {
                OnConflict::Error => Conflict::Error,
                OnConflict::Skip => Conflict::Skip,
                OnConflict::Update => Conflict::Update,
            });
            let (_, _, pool) = database()?;
            let report = migrator().populate(&pool, &fixture, conflict).await?;
            print(json, &report, || report.to_string());
        }
        #[cfg(feature = "sqlite")]
        Command::ImportSqlite {
            file,
            at,
            tables,
            exclude,
            truncate,
            timezone,
        } => {
            let mut options = crate::ImportOptions::default()
                .tables(tables.iter().cloned())
                .exclude(exclude.iter().cloned())
                .truncate(*truncate);
            if let Some(at) = at {
                options = options.at(*at);
            }
            if let Some(zone) = timezone {
                options = options.timezone(zone.clone());
            }
            let (_, _, pool) = database()?;
            let report = migrator().import_sqlite(&pool, file, &options).await?;
            print(json, &report, || report.to_string());
        }
        Command::Squash { to, out } => {
            let (config, tls) = connection(g.url.as_deref(), g.password_file.as_deref())?;
            let baseline = migrator_to(*to)
                .squash_with(&config, tls.connector()?)
                .await?;
            match out {
                None => stdout::write(&baseline.sql),
                Some(path) => {
                    let file = if path.is_dir() {
                        path.join(&baseline.file_name)
                    } else {
                        path.clone()
                    };
                    write_whole(&file, baseline.sql.as_bytes())?;
                    // A folder that pins its checksums lists the baseline
                    // too: else the next build refuses the file.
                    let folder = match file.parent() {
                        Some(parent) if !parent.as_os_str().is_empty() => parent,
                        _ => Path::new("."),
                    };
                    let sum = folder.join(crate::model::sum::SUM_FILE);
                    let sum_updated = sum.exists() && crate::write_sum_file(folder)?;
                    print(
                        json,
                        json!({ "version": baseline.version, "file": file, "sum_updated": sum_updated }),
                        || {
                            let mut text = format!(
                                "wrote {} (the baseline of version {})",
                                file.display(),
                                baseline.version
                            );
                            if sum_updated {
                                text.push_str(&format!("; listed it in {}", sum.display()));
                            }
                            text
                        },
                    );
                }
            }
        }
        // Answered by `cli::execute` before any runtime or connection.
        Command::Completions { .. } | Command::Man => {}
        Command::Check => {
            let (config, tls) = connection(g.url.as_deref(), g.password_file.as_deref())?;
            return Ok(server::check(&config, &tls, &migrator(), program, json).await);
        }
        Command::CreateDatabase {
            name,
            owner,
            admin_url,
        } => {
            let admin = admin_url.as_deref().or(g.url.as_deref());
            server::create_database(
                admin,
                g.password_file.as_deref(),
                name,
                owner.as_deref(),
                json,
            )
            .await?;
        }
        Command::CreateRole {
            name,
            password_stdin,
            password_from_file,
            password_from_env,
            admin_url,
        } => {
            let password = server::Password::given(
                *password_stdin,
                password_from_file.as_deref(),
                password_from_env.as_deref(),
            );
            let admin = admin_url.as_deref().or(g.url.as_deref());
            server::create_role(admin, g.password_file.as_deref(), name, password, json).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What `stamp` says: the versions it recorded (nothing ran, so no
/// durations), and the version the database is at.
fn stamped(report: &crate::Report) -> String {
    let at = show(report.version);
    if report.applied.is_empty() {
        return format!("nothing to stamp; database at version {at}");
    }
    let mut text = format!(
        "stamped {} version(s), database at version {at}:",
        report.applied.len()
    );
    for a in &report.applied {
        text.push_str(&format!("\n  {:>6}  {}", a.version, a.name));
    }
    text
}

/// `migrator` with a progress bar when the run is `interactive`.
fn with_progress(migrator: Migrator<'_>, interactive: bool) -> Migrator<'_> {
    if interactive {
        migrator.on_progress(|done, total| progress_bar(done, total, "migrations"))
    } else {
        migrator
    }
}

/// 0 when all went well, else 1.
fn exit_code(success: bool) -> ExitCode {
    if success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The tenants `args` name, found on the server the connection settings
/// point at, and a rollout of `--jobs` at a time (with a progress bar on a
/// terminal). Schema tenants share one pool of `--jobs` connections;
/// database tenants get a connection each, with the same settings and
/// their own database name.
async fn tenant_walk(
    g: &super::Global,
    args: &super::TenantArgs,
    interactive: bool,
) -> Result<(Tenants, Rollout)> {
    let (config, tls) = connection(g.url.as_deref(), g.password_file.as_deref())?;
    let connector = tls.connector()?;
    let pool = crate::pg::connect::pool_with(config.clone(), connector.clone(), args.jobs);
    let database_pool = move |name: &str| {
        let mut config = config.clone();
        config.dbname(name);
        crate::pg::connect::pool_with(config, connector.clone(), 1)
    };
    let tenants = if let Some(pattern) = &args.each_schema {
        Tenants::schemas_like(&pool, pattern).await?
    } else if let Some(query) = &args.schemas_from {
        Tenants::schemas_from(&pool, query).await?
    } else if let Some(pattern) = &args.each_database {
        Tenants::databases_like(&pool, pattern, database_pool).await?
    } else if let Some(file) = &args.databases_from {
        Tenants::databases_from_file(file, database_pool)?
    } else {
        return Err(Error::config("no tenants were named"));
    };
    if tenants.is_empty() {
        tracing::warn!("no tenant found: nothing to do");
    }
    let mut rollout = Rollout::jobs(args.jobs);
    if interactive {
        rollout = rollout.on_progress(|done, total| progress_bar(done, total, "tenants"));
    }
    Ok((tenants, rollout))
}

/// `[#########         ] 310/1000 migrations` on standard error.
fn progress_bar(done: usize, total: usize, what: &str) {
    const WIDTH: usize = 30;
    if total <= 5 {
        return;
    }
    let filled = done * WIDTH / total.max(1);
    eprint!(
        "\r[{}{}] {done}/{total} {what}",
        "#".repeat(filled),
        " ".repeat(WIDTH - filled)
    );
    if done == total {
        eprintln!();
    }
}

/// Write `bytes` to `path` whole or not at all: into a file beside it,
/// then renamed over it.
fn write_whole(path: &Path, bytes: &[u8]) -> Result<()> {
    let fail = |e: std::io::Error| {
        Error::config_caused(format!("cannot write {}: {e}", path.display()), e)
    };
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = std::path::PathBuf::from(partial);
    std::fs::write(&partial, bytes).map_err(fail)?;
    std::fs::rename(&partial, path).map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        fail(e)
    })
}
