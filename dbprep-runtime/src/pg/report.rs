//! What a run, a status query or a repair tells the caller.

use std::fmt;
use std::time::Duration;

/// What [`Migrator::run`](super::Migrator::run) did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a report says what was applied; log it or check it"]
pub struct Report {
    /// The migrations applied by this run, in order.
    pub applied: Vec<Applied>,
    /// The version the database is at after the run (`None`: no migration
    /// applied, ever).
    pub version: Option<i64>,
    /// How long the whole run took, connection excluded.
    pub elapsed: Duration,
}

impl Report {
    /// Whether the run found nothing to do.
    pub fn was_up_to_date(&self) -> bool {
        self.applied.is_empty()
    }
}

/// One migration applied (or stamped) by a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Its version.
    pub version: i64,
    /// Its name.
    pub name: String,
    /// Its file.
    pub file: String,
    /// How long it took on the server.
    pub duration: Duration,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let version = self.version.map_or("none".to_owned(), |v| v.to_string());
        if self.applied.is_empty() {
            return write!(f, "database up to date at version {version}");
        }
        writeln!(
            f,
            "applied {} migration(s) in {:?}:",
            self.applied.len(),
            self.elapsed
        )?;
        for a in &self.applied {
            writeln!(f, "  {:>6}  {:<32} {:>8.1?}", a.version, a.name, a.duration)?;
        }
        write!(f, "database at version {version}")
    }
}

/// The state of every version, embedded or recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Status {
    /// One entry per version, in version order.
    pub entries: Vec<StatusEntry>,
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
        /// `migration`, `baseline` or `stamp`.
        kind: String,
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
    /// A no-transaction migration that failed or was interrupted.
    Dirty,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Applied { at, duration, kind } if kind == "migration" => {
                write!(f, "applied {at} ({duration:?})")
            }
            State::Applied { at, kind, .. } => write!(f, "{kind} {at}"),
            State::InBaseline { baseline } => write!(f, "in baseline {baseline}"),
            State::Pending => write!(f, "pending"),
            State::Unknown => write!(f, "unknown (not in this binary)"),
            State::Edited { .. } => write!(f, "edited since applied"),
            State::Dirty => write!(f, "dirty"),
        }
    }
}

/// What [`Migrator::repair`](super::Migrator::repair) changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[must_use]
pub struct RepairReport {
    /// Dirty versions whose rows were removed (they will run again).
    pub removed_dirty: Vec<i64>,
    /// Versions whose recorded checksum was set to the embedded one.
    pub realigned: Vec<i64>,
}
