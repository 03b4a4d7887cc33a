//! The engine's error type.

use std::fmt;
use std::time::Duration;

use tokio_postgres::error::SqlState;

use crate::model::source::SourceErrors;
use crate::pg::report::{InvalidIndex, LockHolder};

/// Everything that can go wrong while preparing a database. Each message
/// names the file, version or table it is about and says what to do next;
/// none holds a password. `Debug` prints the message and what caused it
/// (as `anyhow` does), so that `fn main() -> Result<(), Box<dyn Error>>`
/// shows a person what happened.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is invalid or cannot be read: the connection string, a
    /// TLS file, a password file, an option.
    #[error("{message}")]
    Config {
        /// What is wrong and where, as a person needs it.
        message: String,
        /// What caused it, when something did (the driver's parse error,
        /// an I/O error).
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
    /// The server answered what dbprep did not expect of it (no row where
    /// a query always returns one).
    #[error("the server's answer was not what dbprep expected: {0}")]
    Unexpected(String),
    /// No connection could be had from the pool or the server.
    #[error("cannot connect to the database: {reason}")]
    Connect {
        /// Why, as a person needs it: the server's message and SQLSTATE, or
        /// the driver's reason with its cause; never a password.
        reason: String,
        /// The driver's error, when there is one.
        #[source]
        source: Option<tokio_postgres::Error>,
    },
    /// One of dbprep's own statements failed.
    #[error("{what}: {}", describe(source))]
    Postgres {
        /// What dbprep was doing.
        what: String,
        /// The server's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A migration failed; what ran before it in the run is kept.
    #[error("{0}")]
    Migration(Box<MigrationError>),
    /// Another migrator held the lock for longer than the configured wait.
    #[error("gave up waiting {waited:?} for the migration lock{}; nothing was written (raise Migrator::lock_wait or stop the holder)", holder.as_ref().map(|h| format!(" held by {h}")).unwrap_or_default())]
    LockTimeout {
        /// How long dbprep waited.
        waited: Duration,
        /// Who held the lock when dbprep started waiting.
        holder: Option<LockHolder>,
    },
    /// A revert that cannot be done, for each reason named; nothing ran.
    #[error("cannot go back to version {to}: {}; nothing was reverted", problems.join("; "))]
    Revert {
        /// The version asked for.
        to: i64,
        /// Every reason, one per version.
        problems: Vec<String>,
    },
    /// A migration that could not take its locks within the lock timeout,
    /// try after try: it was rolled back each time, so the application's
    /// queries did not queue behind it.
    #[error(
        "migration {version} ({file}) could not take its locks within the lock timeout in {tries} tries; \
         sessions that hold table locks in older transactions: {}; {}. \
         Let them finish (or end them), or allow more with --lock-timeout / --lock-retries",
        crate::pg::run::retry::list(blockers),
        applied_before(applied)
    )]
    LockNotAvailable {
        /// The migration.
        version: i64,
        /// Its file.
        file: String,
        /// How many times it was tried.
        tries: u32,
        /// The sessions that likely blocked it at the last try.
        blockers: Vec<crate::pg::run::retry::Blocker>,
        /// What this run applied before it (committed, and kept).
        applied: Vec<i64>,
    },
    /// An adoption that cannot be done, for each reason named; nothing was
    /// stamped.
    #[error("cannot adopt the database from {tool}'s history {table}: {}; nothing was stamped", problems.join("; "))]
    Adopt {
        /// The tool (`sqlx`, `refinery`, `diesel`, `flyway`).
        tool: String,
        /// Its history table, qualified.
        table: String,
        /// Every reason, one per row.
        problems: Vec<String>,
    },
    /// A no-transaction migration failed or was interrupted earlier, and
    /// no migrator is running it now.
    #[error("migration {version} ({file}) is dirty: a no-transaction migration failed or was interrupted, and may be half-applied; {}", dirty_advice(invalid_indexes))]
    Dirty {
        /// The version.
        version: i64,
        /// Its file (or `unknown file` when the binary does not know it).
        file: String,
        /// The database's INVALID indexes: the usual leftover of an
        /// interrupted `CREATE INDEX CONCURRENTLY`.
        invalid_indexes: Vec<InvalidIndex>,
    },
    /// The database differs from the embedded migrations in a way the
    /// policies refuse.
    #[error("the database has drifted from the embedded migrations:\n{}", list(.0))]
    Drift(Vec<Drift>),
    /// One of dbprep's tables holds what dbprep never writes: it was
    /// changed by hand.
    #[error("the history table {table} is damaged: {detail}; nothing was written")]
    DamagedHistory {
        /// The table, qualified.
        table: String,
        /// What is wrong, and where.
        detail: String,
    },
    /// The requested target is not an embedded version.
    #[error("target version {0} is not one of the embedded migrations; nothing was written")]
    UnknownTarget(i64),
    /// The database refused a fixture row; nothing of the fixture was
    /// written.
    #[error("{0}")]
    Fixture(Box<FixtureFailure>),
    /// A fixture file is invalid.
    #[error("{0}")]
    FixtureFile(#[from] crate::model::fixture::FixtureError),
    /// A SQLite import was refused, or failed; no row was copied.
    #[error("import of {file}: {message}; no row was copied")]
    Import {
        /// The SQLite file.
        file: String,
        /// What is wrong, naming the table, rowid, column and value.
        message: String,
    },
    /// The migration folder read at run time is invalid.
    #[error("{0}")]
    Source(#[from] SourceErrors),
}

impl Error {
    /// A [`Error::Config`] with nothing behind it.
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::Config {
            message: message.into(),
            source: None,
        }
    }

    /// A [`Error::Config`] caused by `source`.
    pub(crate) fn config_caused(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Config {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = self.to_string();
        f.write_str(&message)?;
        // The causes the message does not already tell (a server error's
        // text is in it; the driver's "db error" says nothing).
        let mut causes = Vec::new();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            let text = cause.to_string();
            if text != "db error" && !message.contains(&text) {
                causes.push(text);
            }
            source = cause.source();
        }
        if !causes.is_empty() {
            f.write_str("\n\nCaused by:")?;
            for cause in causes {
                write!(f, "\n    {cause}")?;
            }
        }
        Ok(())
    }
}

/// Whether `error` is a server error with one of `codes`.
pub(crate) fn is_sqlstate(error: &tokio_postgres::Error, codes: &[SqlState]) -> bool {
    error.code().is_some_and(|code| codes.contains(code))
}

/// A driver error as a person needs it: tokio-postgres shows a server
/// error as just "db error", keeping message, detail, hint and SQLSTATE in
/// its source.
pub fn describe(error: &tokio_postgres::Error) -> String {
    let Some(db) = error.as_db_error() else {
        // The driver's own errors name their kind ("error connecting to
        // server") and keep the reason in their source.
        let mut text = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !text.contains(&cause_text) {
                text.push_str(": ");
                text.push_str(&cause_text);
            }
            source = cause.source();
        }
        return text;
    };
    let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
    if let Some(detail) = db.detail() {
        text.push_str(&format!("; detail: {detail}"));
    }
    if let Some(hint) = db.hint() {
        text.push_str(&format!("; hint: {hint}"));
    }
    text
}

/// What to do about a dirty migration, given the INVALID indexes found.
fn dirty_advice(invalid_indexes: &[InvalidIndex]) -> String {
    if invalid_indexes.is_empty() {
        return "no INVALID index was found; check what else it did, fix it by hand, then run `repair` so that it runs again".to_owned();
    }
    let names: Vec<String> = invalid_indexes.iter().map(ToString::to_string).collect();
    format!(
        "INVALID indexes left in the database: {}. A rerun's CREATE INDEX CONCURRENTLY IF NOT EXISTS would skip them without building them: drop them (`repair --drop-invalid-indexes` does, with DROP INDEX CONCURRENTLY) and run `repair`, so that the migration runs again",
        names.join(", ")
    )
}

fn list(drifts: &[Drift]) -> String {
    drifts
        .iter()
        .map(|d| format!("  - {d}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One way the database differs from the embedded migrations.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Drift {
    /// An applied migration whose file was edited afterwards.
    Edited {
        /// The version.
        version: i64,
        /// Its file.
        file: String,
        /// The checksum recorded when it was applied.
        applied: String,
        /// The checksum of the embedded file.
        embedded: String,
    },
    /// A version the database has and the binary does not.
    Unknown {
        /// The version.
        version: i64,
        /// The name recorded for it.
        name: String,
    },
    /// A no-transaction migration that failed or was interrupted.
    Dirty {
        /// The version.
        version: i64,
        /// Its file.
        file: String,
    },
    /// An index whose build did not finish (a failed or interrupted
    /// `CREATE INDEX CONCURRENTLY`): written to, never read.
    InvalidIndex(InvalidIndex),
    /// The schema differs from the snapshot stored by the last run: DDL
    /// was run by hand.
    Schema {
        /// What changed, one line each (`column public.users.nickname added`).
        changes: Vec<String>,
    },
    /// A fixture populated earlier whose file changed since.
    FixtureChanged {
        /// The fixture's name.
        name: String,
        /// Its file.
        file: String,
        /// The checksum recorded when it was populated.
        applied: String,
        /// The checksum of the embedded file.
        embedded: String,
    },
    /// A pending version lower than the newest applied one.
    OutOfOrder {
        /// The pending version.
        version: i64,
        /// Its file.
        file: String,
        /// The newest applied version.
        newest_applied: i64,
    },
}

impl Drift {
    /// The kind of drift as `--json` writes it: `edited`, `unknown`,
    /// `dirty`, `invalid_index`, `schema`, `out_of_order` or
    /// `fixture_changed`.
    pub fn kind(&self) -> &'static str {
        match self {
            Drift::Edited { .. } => "edited",
            Drift::Unknown { .. } => "unknown",
            Drift::Dirty { .. } => "dirty",
            Drift::InvalidIndex(_) => "invalid_index",
            Drift::Schema { .. } => "schema",
            Drift::OutOfOrder { .. } => "out_of_order",
            Drift::FixtureChanged { .. } => "fixture_changed",
        }
    }
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::Edited { version, file, applied, embedded } => write!(
                f,
                "migration {version} ({file}) was edited after it was applied: checksum {applied} in the database, {embedded} in the binary; restore the file, or run `repair` to accept the edit"
            ),
            Drift::Unknown { version, name } => write!(
                f,
                "version {version} ({name}) is applied but not embedded in this binary: the database is newer than the binary, or a file was deleted"
            ),
            Drift::Dirty { version, file } => write!(
                f,
                "migration {version} ({file}) is dirty: a no-transaction migration failed or was interrupted; fix the database, then run `repair`"
            ),
            Drift::InvalidIndex(index) => write!(
                f,
                "index {index} is INVALID: its build (CREATE INDEX CONCURRENTLY) failed or was interrupted; drop it (`repair --drop-invalid-indexes`) and build it again"
            ),
            Drift::Schema { changes } => write!(
                f,
                "the schema was changed outside migrations since the last run: {}; write a migration for it, or undo it",
                changes.join("; ")
            ),
            Drift::FixtureChanged { name, file, applied, embedded } => write!(
                f,
                "fixture '{name}' ({file}) changed since it was populated: checksum {applied} in the database, {embedded} in the binary; populate it again to apply the change"
            ),
            Drift::OutOfOrder { version, file, newest_applied } => write!(
                f,
                "migration {version} ({file}) is pending but older than the newest applied version {newest_applied}; allow out-of-order migrations to apply it"
            ),
        }
    }
}

/// A migration that failed, with where and why.
#[derive(Debug)]
pub struct MigrationError {
    /// Its version (0 for a repeatable migration).
    pub version: i64,
    /// Whether it is a repeatable migration (`R__x.sql`), which has no
    /// version.
    pub repeatable: bool,
    /// Its file.
    pub file: String,
    /// 1-based line and column in the file, when the server gave a position
    /// or the failing statement is known.
    pub position: Option<(usize, usize)>,
    /// The server's message.
    pub message: String,
    /// The server's detail.
    pub detail: Option<String>,
    /// The server's hint.
    pub hint: Option<String>,
    /// The server's SQLSTATE; `None` when the failure was the
    /// connection's, not the server's.
    pub code: Option<SqlState>,
    /// Versions applied (and kept) in this run before the failure.
    pub applied: Vec<i64>,
    /// Pending versions that were not applied because of the failure.
    pub not_applied: Vec<i64>,
    /// Whether it ran outside a transaction (`-- dbprep:no-transaction`):
    /// what its statements before the failing one did stays, and its
    /// history row is left dirty.
    pub outside_transaction: bool,
    /// The driver's error.
    pub source: Option<tokio_postgres::Error>,
}

impl fmt::Display for MigrationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.repeatable {
            write!(f, "repeatable migration failed: {}", self.file)?;
        } else {
            write!(f, "migration {} failed: {}", self.version, self.file)?;
        }
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        match &self.code {
            None => write!(f, ": {}", self.message)?,
            Some(code) => write!(f, ": {} (SQLSTATE {})", self.message, code.code())?,
        }
        if let Some(detail) = &self.detail {
            write!(f, "\n  detail: {detail}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        let versions = |v: &[i64]| v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
        if !self.applied.is_empty() {
            write!(
                f,
                "\n  applied before it in this run: {}",
                versions(&self.applied)
            )?;
        }
        if self.code.is_none() {
            // No answer from the server: its COMMIT may have run.
            write!(
                f,
                "\n  no answer came for migration {}: whether it committed, the next run reads from the history",
                self.version
            )?;
        } else if self.outside_transaction {
            write!(
                f,
                "\n  migration {} ran outside a transaction: what its statements before this one did stays, and its history row is left dirty (a failed CREATE INDEX CONCURRENTLY leaves an INVALID index); fix the database, then run `repair` (`--drop-invalid-indexes` drops such indexes)",
                self.version
            )?;
        } else {
            write!(f, "\n  nothing of migration {} was kept", self.version)?;
        }
        if !self.not_applied.is_empty() {
            write!(f, "; not applied: {}", versions(&self.not_applied))?;
        }
        Ok(())
    }
}

impl std::error::Error for MigrationError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

impl Error {
    /// The SQLSTATE of the server error behind this one, if any.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Postgres { source, .. } => source.code().map(|c| c.code()),
            Error::Migration(m) => m.code.as_ref().map(SqlState::code),
            Error::LockTimeout { .. } => Some("55P03"),
            _ => None,
        }
    }

    /// [`Error::Connect`] for `reason`, keeping the driver's error.
    pub(crate) fn connect(reason: String, source: Option<tokio_postgres::Error>) -> Error {
        Error::Connect { reason, source }
    }

    pub(crate) fn postgres(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Error {
        let what = what.into();
        move |source| Error::Postgres { what, source }
    }
}

/// A fixture row the database refused.
#[derive(Debug)]
pub struct FixtureFailure {
    /// The fixture.
    pub fixture: String,
    /// The table, as written in the file.
    pub table: String,
    /// The row's index in the table's array (0-based, as in `$.users[3]`).
    pub row: Option<usize>,
    /// The column, when it could be found.
    pub column: Option<String>,
    /// The value, when it could be found.
    pub value: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for FixtureFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fixture '{}': table {}", self.fixture, self.table)?;
        if let Some(row) = self.row {
            write!(f, ", row {row} ($.{}[{row}])", self.table)?;
        }
        if let Some(column) = &self.column {
            write!(f, ", column {column}")?;
        }
        if let Some(value) = &self.value {
            write!(f, ", value {value}")?;
        }
        write!(f, ": {}; nothing of the fixture was written", self.message)
    }
}

impl std::error::Error for FixtureFailure {}

/// "nothing was applied", or which versions were.
fn applied_before(applied: &[i64]) -> String {
    if applied.is_empty() {
        "nothing was applied".to_owned()
    } else {
        let versions: Vec<String> = applied.iter().map(i64::to_string).collect();
        format!("applied before it, and kept: {}", versions.join(", "))
    }
}

/// The result type of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: &str, message: &str) -> MigrationError {
        MigrationError {
            version: 2,
            repeatable: false,
            file: "migrations/V2__b.sql".into(),
            position: None,
            message: message.into(),
            detail: None,
            hint: None,
            code: (!code.is_empty()).then(|| SqlState::from_code(code)),
            applied: vec![1],
            not_applied: vec![3],
            outside_transaction: false,
            source: None,
        }
    }

    #[test]
    fn a_server_error_says_nothing_was_kept() {
        assert_eq!(
            failure("42P01", "relation \"t\" does not exist").to_string(),
            "migration 2 failed: migrations/V2__b.sql: relation \"t\" does not exist (SQLSTATE 42P01)\n  \
             applied before it in this run: 1\n  nothing of migration 2 was kept; not applied: 3"
        );
    }

    #[test]
    fn a_no_transaction_migration_says_what_stays() {
        let failure = MigrationError {
            outside_transaction: true,
            not_applied: Vec::new(),
            ..failure("23505", "could not create unique index \"ix\"")
        };
        assert_eq!(
            failure.to_string(),
            "migration 2 failed: migrations/V2__b.sql: could not create unique index \"ix\" (SQLSTATE 23505)\n  \
             applied before it in this run: 1\n  \
             migration 2 ran outside a transaction: what its statements before this one did stays, and its history row \
             is left dirty (a failed CREATE INDEX CONCURRENTLY leaves an INVALID index); fix the database, then run \
             `repair` (`--drop-invalid-indexes` drops such indexes)"
        );
    }

    #[test]
    fn a_connection_failure_does_not_claim_to_know_what_was_kept() {
        assert_eq!(
            failure("", "connection closed").to_string(),
            "migration 2 failed: migrations/V2__b.sql: connection closed\n  \
             applied before it in this run: 1\n  \
             no answer came for migration 2: whether it committed, the next run reads from the history; not applied: 3"
        );
    }
}
