//! What a run, a status query or a repair tells the caller. Every report
//! is `Serialize`: the command line's `--json` is written from them, with
//! durations in milliseconds.

use std::fmt;
use std::time::Duration;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::model::history::RowKind;
use crate::pg::sql::ident;

/// A duration as `--json` writes it: whole milliseconds.
pub(crate) fn millis<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(duration.as_millis().min(u64::MAX as u128) as u64)
}

/// A version as messages show it: `none` for no version.
pub(crate) fn show(version: Option<i64>) -> String {
    version.map_or_else(|| "none".to_owned(), |v| v.to_string())
}

/// What [`Migrator::run`](crate::Migrator::run) did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[must_use = "a report says what was applied; log it or check it"]
pub struct Report {
    /// The migrations applied by this run, in order.
    pub applied: Vec<Applied>,
    /// The version the database is at after the run (`None`: no migration
    /// applied, ever).
    pub version: Option<i64>,
    /// How long the whole run took, connection excluded.
    #[serde(rename = "elapsed_ms", serialize_with = "millis")]
    pub elapsed: Duration,
    /// How the run waited for the migration lock: `None` when it found
    /// nothing to do at once, without it.
    pub lock: Option<LockWait>,
    /// The repeatable migrations this run applied (new, or changed since
    /// they last ran), in name order, after the versioned ones.
    pub repeatables: Vec<AppliedRepeatable>,
    /// Each retry of a migration that ran out of its lock timeout, with
    /// the sessions that likely blocked it.
    pub lock_retries: Vec<crate::pg::run::retry::LockRetry>,
}

impl Report {
    /// A run that applied nothing: the database at `version`.
    pub(crate) fn nothing_applied(
        version: Option<i64>,
        elapsed: Duration,
        lock: Option<LockWait>,
    ) -> Report {
        Report {
            applied: Vec::new(),
            version,
            elapsed,
            lock,
            repeatables: Vec::new(),
            lock_retries: Vec::new(),
        }
    }

    /// Whether the run found nothing to do.
    pub fn was_up_to_date(&self) -> bool {
        self.applied.is_empty() && self.repeatables.is_empty()
    }
}

/// A repeatable migration applied by a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedRepeatable {
    /// Its name (`views` for `R__views.sql`).
    pub name: String,
    /// Its file.
    pub file: String,
    /// How long it took on the server.
    #[serde(rename = "duration_ms", serialize_with = "millis")]
    pub duration: Duration,
}

/// One migration applied (or stamped) by a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// Its version.
    pub version: i64,
    /// Its name.
    pub name: String,
    /// Its file.
    pub file: String,
    /// How long it took on the server.
    #[serde(rename = "duration_ms", serialize_with = "millis")]
    pub duration: Duration,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let version = show(self.version);
        if self.was_up_to_date() {
            return write!(f, "database up to date at version {version}");
        }
        if !self.applied.is_empty() {
            writeln!(
                f,
                "applied {} migration(s) in {:?}:",
                self.applied.len(),
                self.elapsed
            )?;
        }
        for a in &self.applied {
            writeln!(f, "  {:>6}  {:<32} {:>8.1?}", a.version, a.name, a.duration)?;
        }
        if !self.repeatables.is_empty() {
            writeln!(
                f,
                "applied {} repeatable migration(s):",
                self.repeatables.len()
            )?;
        }
        for r in &self.repeatables {
            writeln!(f, "  {:>6}  {:<32} {:>8.1?}", "R", r.name, r.duration)?;
        }
        write!(f, "database at version {version}")
    }
}

/// The state of every version, embedded or recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[must_use]
pub struct Status {
    /// One entry per version, in version order.
    #[serde(rename = "versions")]
    pub entries: Vec<StatusEntry>,
    /// The database's INVALID indexes (what a failed `CREATE INDEX
    /// CONCURRENTLY` leaves, or one being built now while a migration is
    /// in progress).
    pub invalid_indexes: Vec<InvalidIndex>,
    /// Every repeatable migration, embedded or recorded, in name order.
    pub repeatables: Vec<RepeatableStatus>,
}

/// The state of one repeatable migration (`R__name.sql`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepeatableStatus {
    /// Its name.
    pub name: String,
    /// Its file: the embedded one, else the one it last ran from.
    pub file: String,
    /// Its state.
    pub state: RepeatableState,
}

/// Where a repeatable migration stands: the checksum it last ran with
/// against the file's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RepeatableState {
    /// It ran with the embedded file's checksum.
    Applied {
        /// When it last ran.
        at: String,
        /// How long it took.
        #[serde(rename = "duration_ms", serialize_with = "millis")]
        duration: Duration,
    },
    /// It never ran: the next upgrade runs it.
    Pending,
    /// The file changed since it last ran: the next upgrade runs it again.
    Changed {
        /// The checksum it last ran with, as hex.
        applied: String,
        /// The embedded file's checksum, as hex.
        embedded: String,
    },
    /// It ran, but the binary does not embed it (any more).
    Unknown,
}

impl fmt::Display for RepeatableState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepeatableState::Applied { at, duration } => write!(f, "applied {at} ({duration:?})"),
            RepeatableState::Pending => write!(f, "pending"),
            RepeatableState::Changed { applied, embedded } => write!(
                f,
                "changed since it ran (ran with {}, file is {}): runs again at the next upgrade",
                &applied[..applied.len().min(12)],
                &embedded[..embedded.len().min(12)]
            ),
            RepeatableState::Unknown => write!(f, "unknown (not in this binary)"),
        }
    }
}

/// The state of one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEntry {
    /// The version.
    pub version: i64,
    /// Its name (embedded, else recorded).
    pub name: String,
    /// Its file, when the binary embeds it.
    pub file: Option<String>,
    /// What dbprep knows of it.
    pub state: State,
}

/// The state of one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Applied (or stamped, or installed by a baseline) with a matching
    /// checksum.
    Applied {
        /// When.
        at: String,
        /// How long it took.
        duration: Duration,
        /// How it was recorded.
        kind: RowKind,
    },
    /// Included in a baseline that was applied.
    InBaseline {
        /// The baseline's version.
        baseline: i64,
    },
    /// Not applied yet.
    Pending,
    /// Applied, but the binary does not embed it.
    Unknown,
    /// Applied, and its file was edited since.
    Edited {
        /// The checksum recorded, as hex.
        applied: String,
        /// The embedded checksum, as hex.
        embedded: String,
    },
    /// A no-transaction migration that failed or was interrupted: no
    /// migrator holds the lock.
    Dirty,
    /// A no-transaction migration that a live migrator is running now (it
    /// holds the lock): not dirty, it will finish or fail.
    InProgress {
        /// The session running it.
        holder: LockHolder,
    },
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Applied { at, duration, kind } if *kind == RowKind::Migration => {
                write!(f, "applied {at} ({duration:?})")
            }
            State::Applied { at, kind, .. } => write!(f, "{kind} {at}"),
            State::InBaseline { baseline } => write!(f, "in baseline {baseline}"),
            State::Pending => write!(f, "pending"),
            State::Unknown => write!(f, "unknown (not in this binary)"),
            State::Edited { .. } => write!(f, "edited since applied"),
            State::Dirty => write!(f, "dirty"),
            State::InProgress { holder } => write!(f, "in progress ({holder})"),
        }
    }
}

/// What [`Migrator::repair`](crate::Migrator::repair) changed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[must_use]
pub struct RepairReport {
    /// Dirty versions whose rows were removed (they will run again).
    pub removed_dirty: Vec<i64>,
    /// Versions whose recorded checksum was set to the embedded one.
    pub realigned: Vec<i64>,
    /// INVALID indexes dropped ([`RepairOptions::drop_invalid_indexes`]).
    pub dropped_indexes: Vec<InvalidIndex>,
    /// INVALID indexes left in place: a rerun's `CREATE INDEX CONCURRENTLY
    /// IF NOT EXISTS` skips them.
    pub invalid_indexes: Vec<InvalidIndex>,
}

impl fmt::Display for RepairReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let versions = |v: &[i64]| -> String {
            if v.is_empty() {
                return "none".to_owned();
            }
            v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
        };
        write!(
            f,
            "removed dirty rows: {}; realigned checksums: {}",
            versions(&self.removed_dirty),
            versions(&self.realigned)
        )?;
        for index in &self.dropped_indexes {
            write!(f, "\ndropped the INVALID index {index}")?;
        }
        for index in &self.invalid_indexes {
            write!(
                f,
                "\nINVALID index {index} left in place: a rerun's CREATE INDEX CONCURRENTLY IF NOT EXISTS skips it (repair --drop-invalid-indexes drops it)"
            )?;
        }
        Ok(())
    }
}

/// What [`Migrator::repair_with`](crate::Migrator::repair_with) may do
/// beyond removing dirty rows and realigning checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RepairOptions {
    /// Drop the database's INVALID indexes (`DROP INDEX CONCURRENTLY`,
    /// before the history is changed), so that the dirty migration's rerun
    /// builds them again instead of skipping them.
    pub drop_invalid_indexes: bool,
}

impl RepairOptions {
    /// Whether to drop the database's INVALID indexes.
    pub fn drop_invalid_indexes(mut self, drop: bool) -> Self {
        self.drop_invalid_indexes = drop;
        self
    }
}

/// An index whose build did not finish (`pg_index.indisvalid` is false).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidIndex {
    /// The index's schema.
    pub schema: String,
    /// The index.
    pub name: String,
    /// The table it is on.
    pub table: String,
}

impl InvalidIndex {
    /// `"schema"."name"`, quoted for SQL.
    pub(crate) fn qualified(&self) -> String {
        format!("{}.{}", ident(&self.schema), ident(&self.name))
    }

    /// The statement that drops it without blocking the table's writers
    /// (outside a transaction block).
    pub(crate) fn drop_sql(&self) -> String {
        format!("DROP INDEX CONCURRENTLY IF EXISTS {}", self.qualified())
    }
}

impl fmt::Display for InvalidIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{} on {}", self.schema, self.name, self.table)
    }
}

/// Who holds the migration lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockHolder {
    /// The backend's process id.
    pub pid: i32,
    /// Its `application_name` (a dbprep holder writes its start time there).
    pub application_name: String,
    /// When its current query started.
    pub query_start: Option<String>,
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pid {} (application_name {:?}",
            self.pid, self.application_name
        )?;
        if let Some(start) = &self.query_start {
            write!(f, ", query started {start}")?;
        }
        write!(f, ")")
    }
}

/// How a run waited for the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct LockWait {
    /// How many times it tried the lock (1: the lock was free).
    pub tries: u32,
    /// How long the run waited.
    #[serde(rename = "waited_ms", serialize_with = "millis")]
    pub waited: Duration,
    /// Whether the run ended its wait because the holder had applied what
    /// it came to apply: it never took the lock.
    pub done_by_peer: bool,
}

impl Serialize for InvalidIndex {
    /// As its text, `schema.name on table`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl State {
    /// The state's name as `--json` writes it: `applied`, `in_baseline`,
    /// `pending`, `unknown`, `edited`, `dirty` or `in_progress`.
    pub fn name(&self) -> &'static str {
        match self {
            State::Applied { .. } => "applied",
            State::InBaseline { .. } => "in_baseline",
            State::Pending => "pending",
            State::Unknown => "unknown",
            State::Edited { .. } => "edited",
            State::Dirty => "dirty",
            State::InProgress { .. } => "in_progress",
        }
    }
}

impl Serialize for StatusEntry {
    /// Its version, name and file, the state's [`name`](State::name), and
    /// the state as text (`detail`).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut entry = serializer.serialize_struct("StatusEntry", 5)?;
        entry.serialize_field("version", &self.version)?;
        entry.serialize_field("name", &self.name)?;
        entry.serialize_field("file", &self.file)?;
        entry.serialize_field("state", self.state.name())?;
        entry.serialize_field("detail", &self.state.to_string())?;
        entry.end()
    }
}
