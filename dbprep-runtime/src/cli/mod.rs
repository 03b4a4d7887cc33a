//! The command-line front end (feature `cli`).
//!
//! An application adds the subcommands to its own binary with
//! [`run`], on the migrations and fixtures it embeds:
//!
//! ```no_run
//! use dbprep_runtime::{Fixtures, Migrations};
//! # static MIGRATIONS: Migrations = Migrations::empty();
//! # static FIXTURES: Fixtures = Fixtures::__embedded(&[]);
//!
//! fn main() -> std::process::ExitCode {
//!     dbprep_runtime::cli::run(&MIGRATIONS, &FIXTURES)
//! }
//! ```
//!
//! The standalone `dbprep` binary does the same on folders read at run time
//! ([`run_folders`]: `--migrations DIR --fixtures DIR`).
//!
//! Connection settings, in this order: `--url`, `DATABASE_URL`, then the
//! service it or `PGSERVICE` names in libpq's service file, then the libpq
//! variables (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`,
//! `PGAPPNAME`, `PGCONNECT_TIMEOUT`, `PGOPTIONS`, `PGSSLMODE`,
//! `PGSSLCERT`, …), then the password file (`PGPASSFILE`, else
//! `~/.pgpass`); `--password-file` overrides the password. No output ever
//! shows a password.

mod commands;
mod describe;
mod output;
mod server;
mod settings;
mod stdout;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::model::fixture::Fixtures;
use crate::model::migration::Migrations;

/// Prepare a PostgreSQL database: migrations, fixtures, drift.
#[derive(Debug, Parser)]
#[command(name = "dbprep", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, Args)]
struct Global {
    /// Connection URL (else DATABASE_URL, then PGHOST, PGUSER, …).
    #[arg(long, global = true, value_name = "URL")]
    url: Option<String>,
    /// Read the password from this file (first line), so that it needs no
    /// escaping and never appears in a process list.
    #[arg(long, global = true, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Read shared settings from this TOML file (default: dbprep.toml
    /// beside the migrations folder, when there is one); flags and
    /// environment variables win over it.
    #[arg(long, global = true, env = "DBPREP_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Schema of dbprep's history tables.
    #[arg(
        long,
        global = true,
        env = "DBPREP_HISTORY_SCHEMA",
        default_value = "public",
        value_name = "SCHEMA"
    )]
    history_schema: String,
    /// Whether the history's schema was given (a flag, the environment, a
    /// settings file naming another), not left to the default.
    #[arg(skip)]
    history_schema_given: bool,
    /// Name of the history table (default: dbprep_schema_history).
    #[arg(
        long,
        global = true,
        env = "DBPREP_HISTORY_TABLE",
        value_name = "TABLE"
    )]
    history_table: Option<String>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    json: bool,
    /// More log lines (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// How long to wait for another migrator's lock, in seconds.
    #[arg(
        long,
        global = true,
        env = "DBPREP_LOCK_WAIT",
        default_value_t = 60,
        value_name = "SECONDS"
    )]
    lock_wait: u64,
    /// Wait up to this many seconds for the server to accept connections
    /// (it may still be starting), retrying with a bounded backoff; a
    /// refused password or an unknown role fails at once.
    #[arg(
        long,
        global = true,
        env = "DBPREP_WAIT",
        default_value_t = 0,
        value_name = "SECONDS"
    )]
    wait: u64,
    /// How migrators keep out of each other's way: `session`, a session
    /// advisory lock (a direct connection, or a pooler in session mode), or
    /// `transaction`, a lease renewed by each transaction (through a pooler
    /// in transaction mode, such as PgBouncer's pool_mode = transaction).
    /// Every migrator of a database must use the same.
    #[arg(
        long,
        global = true,
        env = "DBPREP_LOCK_MODE",
        default_value = "session",
        value_name = "MODE"
    )]
    lock_mode: crate::pg::run::lock::LockMode,
    /// How long a transactional migration may wait for a lock on a table
    /// before it is rolled back (so the application's queries stop queueing
    /// behind it) and tried again: `0`, or a whole number with ms, s or min.
    /// `0` waits as long as it takes. A file's `-- dbprep:lock-timeout`
    /// wins.
    #[arg(
        long,
        global = true,
        env = "DBPREP_LOCK_TIMEOUT",
        default_value = "2s",
        value_name = "DURATION",
        value_parser = crate::model::directive::parse_duration
    )]
    lock_timeout: std::time::Duration,
    /// How many times a migration that ran out of its lock timeout is tried
    /// again, after a growing pause, before the run fails naming the
    /// sessions that blocked it.
    #[arg(
        long,
        global = true,
        env = "DBPREP_LOCK_RETRIES",
        default_value_t = 5,
        value_name = "N"
    )]
    lock_retries: u32,
    /// A pending version older than the newest applied one: `error`
    /// (refuse, the default), `warn` or `allow` (apply it).
    #[arg(
        long,
        global = true,
        env = "DBPREP_OUT_OF_ORDER",
        value_name = "POLICY"
    )]
    out_of_order: Option<crate::Policy>,
    /// An applied migration whose file was edited: `error` (the default),
    /// `warn` or `allow`.
    #[arg(long, global = true, env = "DBPREP_ON_EDITED", value_name = "POLICY")]
    on_edited: Option<crate::Policy>,
    /// Versions in the database that the migrations do not have: `error`,
    /// `warn` or `allow` (default: newer ones warn, others are errors).
    #[arg(long, global = true, env = "DBPREP_ON_UNKNOWN", value_name = "POLICY")]
    on_unknown: Option<crate::Policy>,
    /// What `verify` does when the schema was changed by hand: `error`
    /// (exit 1, the default), `warn` or `allow`.
    #[arg(
        long,
        global = true,
        env = "DBPREP_ON_SCHEMA_DRIFT",
        value_name = "POLICY"
    )]
    on_schema_drift: Option<crate::Policy>,
}

/// What to do.
#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending migrations (up to --to).
    Upgrade {
        /// Stop at this version.
        #[arg(long)]
        to: Option<i64>,
        /// Store which objects the schema has, not their definitions:
        /// `verify` then says the schema changed by hand, not how.
        #[arg(long)]
        no_schema_snapshot: bool,
        #[command(flatten)]
        tenants: TenantArgs,
        /// With tenants: migrate the first N first, and stop before the
        /// others if one of them fails.
        #[arg(long, value_name = "N", default_value_t = 0, requires = "tenants")]
        canary: usize,
        /// With tenants: what a failed tenant does to the others, `stop`
        /// (start no other) or `continue` (go on, and list the failed ones
        /// at the end).
        #[arg(
            long,
            value_name = "POLICY",
            default_value = "stop",
            requires = "tenants"
        )]
        on_failure: crate::OnFailure,
    },
    /// Run the down files of the applied migrations above a version, newest
    /// first, each with the removal of its history row; refuse, before
    /// anything runs, when one cannot be undone.
    Downgrade {
        /// The version to go back to (0: before the first migration).
        #[arg(long, value_name = "VERSION")]
        to: i64,
        /// Check and list what would run, and run nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Take over a database another tool migrated: check every version its
    /// history lists against the embedded files (and the checksums it
    /// recorded), then record them in dbprep's history in one transaction;
    /// the other tool's table is left as it is.
    Adopt {
        /// The tool: sqlx, refinery, diesel or flyway.
        #[arg(long, value_name = "TOOL")]
        from: crate::pg::run::adopt::Tool,
        /// The schema of its history table.
        #[arg(long, default_value = "public")]
        schema: String,
        /// Its history table, when it is not the tool's default name.
        #[arg(long)]
        table: Option<String>,
        /// Check and report, and stamp nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Look for DDL that blocks the application's traffic (CREATE INDEX
    /// without CONCURRENTLY, validating constraints, SET NOT NULL, type
    /// changes, renames and drops, …) in the migrations; exit 1 on
    /// findings. Needs no database. `-- dbprep:allow(rule)` accepts one
    /// on purpose.
    Lint {
        /// Skip this version and older ones (already applied everywhere).
        #[arg(long, value_name = "VERSION")]
        since: Option<i64>,
    },
    /// On a scratch database of the server (the role needs CREATEDB), apply,
    /// revert and apply again each migration with a down file, and report
    /// every down that does not give back the schema from before its
    /// migration; exit 1 when one does not.
    CheckReversible {
        /// Check up to this version (default: the newest).
        #[arg(long, value_name = "VERSION")]
        to: Option<i64>,
    },
    /// Create the database if missing, install the schema and stamp it, in
    /// one step.
    Oneshot,
    /// Every version: applied (when, how long), pending, unknown, edited,
    /// dirty. With tenants, one line per tenant.
    Status {
        #[command(flatten)]
        tenants: TenantArgs,
    },
    /// The history table's rows.
    History,
    /// Write one self-contained HTML page about the database (the server,
    /// every migration with its state and timing, drift, INVALID indexes,
    /// fixtures, the tables with their columns and foreign keys). Reads
    /// only, like `verify`.
    Report {
        /// The file to write (`-`: standard output).
        #[arg(long, value_name = "FILE")]
        html: PathBuf,
    },
    /// Record versions as applied without running them (adopt a database).
    Stamp {
        /// A version, or `head`.
        target: String,
    },
    /// Compare the database with the migrations; exit 1 on drift. With
    /// tenants, one line per tenant.
    Verify {
        #[command(flatten)]
        tenants: TenantArgs,
    },
    /// Write the baseline of the migrations up to a version: they run on a
    /// scratch database of the server (the role needs CREATEDB), whose
    /// schema pg_dump --schema-only writes as B<V>__baseline.sql.
    Squash {
        /// The version (default: the newest).
        #[arg(long, value_name = "VERSION")]
        to: Option<i64>,
        /// Write it in this folder (as B<V>__baseline.sql) or to this file;
        /// else print it.
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
    },
    /// Print, without connecting, the SQL that `upgrade` would run, history
    /// rows included, as a script to review and run with `psql -v
    /// ON_ERROR_STOP=1 -f FILE`.
    Sql {
        /// The version the database is at (default: a fresh database).
        #[arg(long, value_name = "VERSION")]
        from: Option<i64>,
        /// Stop at this version (default: the newest).
        #[arg(long, value_name = "VERSION")]
        to: Option<i64>,
        /// Store which objects the schema has, not their definitions (as
        /// `upgrade --no-schema-snapshot`).
        #[arg(long)]
        no_schema_snapshot: bool,
    },
    /// Forget dirty rows and accept edited checksums.
    Repair {
        /// First drop the database's INVALID indexes (what an interrupted
        /// CREATE INDEX CONCURRENTLY leaves), so that the dirty migration's
        /// rerun builds them instead of skipping them.
        #[arg(long)]
        drop_invalid_indexes: bool,
    },
    /// Fixtures.
    Fixture {
        #[command(subcommand)]
        command: FixtureCommand,
    },
    /// Diagnose the connection step by step.
    Check,
    /// Print the completion script for a shell (bash, zsh, fish, elvish,
    /// powershell), e.g. `dbprep completions bash >
    /// ~/.local/share/bash-completion/completions/dbprep`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `dbprep man > dbprep.1`, then
    /// `man ./dbprep.1`.
    Man,
    /// Move a SQLite database in: bring the schema to the version its data
    /// matches, copy every row of the tables both have in one transaction,
    /// then apply the rest of the migrations.
    #[cfg(feature = "sqlite")]
    ImportSqlite {
        /// The SQLite file (opened read-only).
        file: PathBuf,
        /// The version whose schema the data matches (default: the newest).
        #[arg(long, value_name = "VERSION")]
        at: Option<i64>,
        /// Copy only these SQLite tables.
        #[arg(long, value_delimiter = ',', value_name = "TABLE,…")]
        tables: Vec<String>,
        /// Leave out these tables, or columns written table.column.
        #[arg(long, value_delimiter = ',', value_name = "NAME,…")]
        exclude: Vec<String>,
        /// Empty the target tables first, in the same transaction.
        #[arg(long)]
        truncate: bool,
        /// The time zone of date-times written without one (default UTC).
        #[arg(long, value_name = "ZONE")]
        timezone: Option<String>,
    },
    /// Create a database from an admin connection (idempotent).
    CreateDatabase {
        /// Its name.
        name: String,
        /// Its owner.
        #[arg(long)]
        owner: Option<String>,
        /// The admin connection (else the libpq variables).
        #[arg(long, value_name = "URL")]
        admin_url: Option<String>,
    },
    /// Create a login role from an admin connection (idempotent). The
    /// password comes from stdin, a file or a variable, never a flag.
    CreateRole {
        /// Its name.
        name: String,
        /// Read the password from standard input.
        #[arg(long, conflicts_with_all = ["password_from_file", "password_from_env"])]
        password_stdin: bool,
        /// Read the password from this file.
        #[arg(long, value_name = "FILE")]
        password_from_file: Option<PathBuf>,
        /// Read the password from this environment variable.
        #[arg(long, value_name = "VAR")]
        password_from_env: Option<String>,
        /// The admin connection (else the libpq variables).
        #[arg(long, value_name = "URL")]
        admin_url: Option<String>,
    },
}

/// Which tenants `upgrade`, `status` and `verify` go through: one schema
/// per tenant in the database connected to, or one database per tenant on
/// its server. Without one of them, the command works on the database
/// alone.
#[derive(Debug, Clone, Args)]
#[group(skip)]
struct TenantArgs {
    /// Every schema whose name matches this LIKE pattern is a tenant
    /// (`tenant_%`; `\_` for a literal underscore): its history lives in its
    /// schema and its migrations run with search_path set to it.
    #[arg(long, value_name = "PATTERN", group = "tenants")]
    each_schema: Option<String>,
    /// The tenant schemas are the first column of this query's rows, in
    /// its order; a schema that does not exist yet is created by its first
    /// run (a new tenant).
    #[arg(long, value_name = "SQL", group = "tenants")]
    schemas_from: Option<String>,
    /// Every database of the server whose name matches this LIKE pattern
    /// is a tenant.
    #[arg(long, value_name = "PATTERN", group = "tenants")]
    each_database: Option<String>,
    /// The tenant databases are listed in this file, one per line (`#`
    /// starts a comment).
    #[arg(long, value_name = "FILE", group = "tenants")]
    databases_from: Option<PathBuf>,
    /// How many tenants at once (one connection each).
    #[arg(long, value_name = "N", default_value_t = 4, requires = "tenants")]
    jobs: usize,
}

impl TenantArgs {
    /// Whether tenants were asked for.
    fn given(&self) -> bool {
        self.each_schema.is_some()
            || self.schemas_from.is_some()
            || self.each_database.is_some()
            || self.databases_from.is_some()
    }
}

/// Fixture subcommands.
#[derive(Debug, Subcommand)]
enum FixtureCommand {
    /// The embedded fixtures.
    List,
    /// Load a fixture by name, or a JSON file by path.
    Populate {
        /// A fixture name, or a path to a JSON file.
        fixture: String,
        /// What to do with rows whose primary key exists (default: the
        /// file's __mode).
        #[arg(long, value_enum)]
        on_conflict: Option<OnConflict>,
    },
}

impl Command {
    /// Whether the command works on the migrations (the standalone binary
    /// refuses to run it without a migrations folder).
    fn needs_migrations(&self) -> bool {
        match self {
            Command::Upgrade { .. }
            | Command::Oneshot
            | Command::Status { .. }
            | Command::Stamp { .. }
            | Command::Verify { .. }
            | Command::Report { .. }
            | Command::Sql { .. }
            | Command::Lint { .. }
            | Command::Squash { .. }
            | Command::Downgrade { .. }
            | Command::Adopt { .. }
            | Command::CheckReversible { .. }
            | Command::Repair { .. } => true,
            #[cfg(feature = "sqlite")]
            Command::ImportSqlite { .. } => true,
            Command::History
            | Command::Fixture { .. }
            | Command::Check
            | Command::CreateDatabase { .. }
            | Command::CreateRole { .. }
            | Command::Completions { .. }
            | Command::Man => false,
        }
    }
}

impl Command {
    /// The tenants the command goes through, if any.
    fn tenants(&self) -> Option<&TenantArgs> {
        match self {
            Command::Upgrade { tenants, .. }
            | Command::Status { tenants }
            | Command::Verify { tenants } => Some(tenants).filter(|t| t.given()),
            _ => None,
        }
    }
}

/// `--on-conflict`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum OnConflict {
    Error,
    Skip,
    Update,
}

/// Run the command line of this process on `migrations` and `fixtures`,
/// and return the exit code: 0 on success, 1 on failure or drift, 2 on a
/// usage error.
pub fn run(migrations: &Migrations, fixtures: &Fixtures) -> ExitCode {
    run_from(std::env::args_os(), migrations, fixtures)
}

/// The standalone `dbprep` binary: [`run`] on the migration and fixture
/// folders named by `--migrations DIR` (`DBPREP_MIGRATIONS`, default
/// `migrations`) and `--fixtures DIR` (`DBPREP_FIXTURES`, default
/// `fixtures`), read at run time with the checks of `embed_migrations!`.
/// A missing default folder is an error for the commands that need
/// migrations; provisioning commands run without one.
pub fn run_folders() -> ExitCode {
    run_folders_from(std::env::args_os())
}

/// [`run_folders`] with explicit arguments (the first is the program name).
pub fn run_folders_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::parser::ValueSource;
    use clap::{Arg, CommandFactory, FromArgMatches};
    let folder = |name: &'static str, env: &'static str, help: &'static str| {
        Arg::new(name)
            .long(name)
            .global(true)
            .env(env)
            .value_name("DIR")
            .default_value(name)
            .help(help)
    };
    let command = || {
        Cli::command()
            .arg(folder(
                "migrations",
                "DBPREP_MIGRATIONS",
                "The migrations folder, read at run time with the checks of embed_migrations!",
            ))
            .arg(folder("fixtures", "DBPREP_FIXTURES", "The fixtures folder"))
    };
    let (command, matches) = match parse(command, args, true) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => with_sources(cli, &matches),
        Err(e) => return parse_failure(&e),
    };
    let dir = |name: &str| {
        let path = matches.get_one::<String>(name).cloned().unwrap_or_default();
        let defaulted = matches.value_source(name) == Some(ValueSource::DefaultValue);
        (path, defaulted)
    };
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    };
    let (migrations_dir, defaulted) = dir("migrations");
    let migrations = match Migrations::from_dir(&migrations_dir) {
        Ok(m) => m,
        // Provisioning commands (create-database, check, …) need none.
        Err(_)
            if defaulted
                && !cli.command.needs_migrations()
                && !std::path::Path::new(&migrations_dir).exists() =>
        {
            Migrations::empty()
        }
        Err(e) => return fail(&e),
    };
    let (fixtures_dir, defaulted) = dir("fixtures");
    let fixtures = match Fixtures::from_dir(&fixtures_dir) {
        Ok(f) => f,
        Err(_) if defaulted && !std::path::Path::new(&fixtures_dir).exists() => {
            Fixtures::__embedded(&[])
        }
        Err(e) => return fail(&e),
    };
    execute(cli, command, &migrations, &fixtures)
}

/// [`run`] with explicit arguments (the first is the program name).
pub fn run_from<I, T>(args: I, migrations: &Migrations, fixtures: &Fixtures) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::{CommandFactory, FromArgMatches};
    let (command, matches) = match parse(Cli::command, args, false) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => with_sources(cli, &matches),
        Err(e) => return parse_failure(&e),
    };
    execute(cli, command, migrations, fixtures)
}

/// `cli` with what the parse knows of where its values came from.
fn with_sources(mut cli: Cli, matches: &clap::ArgMatches) -> Cli {
    let defaulted =
        matches.value_source("history_schema") == Some(clap::parser::ValueSource::DefaultValue);
    // A settings file's value becomes the default: one that names another
    // schema than dbprep's own default was given all the same.
    cli.global.history_schema_given = !defaulted || cli.global.history_schema != "public";
    cli
}

/// Parse the command line with the definition `command` makes, then with
/// a fresh one whose defaults are the settings file's values when there is
/// a file (`--config`, or, for the standalone binary, `dbprep.toml` beside
/// the migrations folder): the definition it was parsed with, and what it
/// found. Help, a usage error or a bad settings file end the process with
/// their exit code.
fn parse<I, T>(
    command: impl Fn() -> clap::Command,
    args: I,
    beside_migrations: bool,
) -> Result<(clap::Command, clap::ArgMatches), ExitCode>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    let mut first = command();
    let matches = first
        .try_get_matches_from_mut(&args)
        .map_err(|e| parse_failure(&e))?;
    let given = matches.get_one::<PathBuf>("config").map(PathBuf::as_path);
    let migrations = beside_migrations
        .then(|| matches.get_one::<String>("migrations"))
        .flatten()
        .map(std::path::Path::new);
    let Some(file) = settings::locate(given, migrations) else {
        return Ok((first, matches));
    };
    let mut command = settings::apply(command(), &file).map_err(|message| {
        eprintln!("error: {message}");
        ExitCode::from(2)
    })?;
    let matches = command
        .try_get_matches_from_mut(&args)
        .map_err(|e| parse_failure(&e))?;
    tracing::debug!("settings from {}", file.display());
    Ok((command, matches))
}

/// Print clap's message: help and version exit 0, a usage error 2.
fn parse_failure(e: &clap::Error) -> ExitCode {
    let _ = e.print();
    if e.use_stderr() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// Run a parsed command line; `command` is the definition it was parsed
/// with, which completions and the man page describe.
fn execute(
    cli: Cli,
    command: clap::Command,
    migrations: &Migrations,
    fixtures: &Fixtures,
) -> ExitCode {
    match &cli.command {
        Command::Completions { shell } => return describe::completions(command, *shell),
        Command::Man => return describe::man(command),
        _ => {}
    }
    // Over many tenants, a line per tenant says what each run said.
    init_logging(&cli.global, cli.command.tenants().is_some());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let program = describe::program_name(&command);
    match runtime.block_on(commands::execute(&cli, &program, migrations, fixtures)) {
        Ok(code) => stdout::exit_code(code),
        Err(e) => {
            if cli.global.json {
                stdout::line(&serde_json::json!({ "error": e.to_string() }).to_string());
            } else {
                eprintln!("error: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

fn init_logging(global: &Global, terse: bool) {
    let level = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) if terse => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("dbprep_runtime={level}")));
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    // The run's and the migrations' spans are for an application's
    // subscriber; on a terminal their fields would repeat on every line.
    // A tenant's name stays: it says whose line it is.
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            !meta.is_span() || meta.name() == "tenant"
        }));
    let _ = tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .try_init();
}
