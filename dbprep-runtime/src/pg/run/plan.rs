//! Deciding what a run must do from the embedded set and the history.

use crate::model::history::{reconcile, HistoryRow, VersionEntry, VersionState};
use crate::model::migration::{Migration, Migrations};
use crate::pg::error::{Drift, Error, Result};
use crate::pg::report::LockHolder;
use crate::pg::report::State;

/// What to do when the database differs from the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Refuse to run (the default).
    #[default]
    Error,
    /// Go on, and log a warning.
    Warn,
    /// Go on silently.
    Allow,
}

impl std::str::FromStr for Policy {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "error" => Ok(Policy::Error),
            "warn" => Ok(Policy::Warn),
            "allow" => Ok(Policy::Allow),
            other => Err(Error::config(format!(
                "unknown policy {other:?}: `error` (refuse), `warn` (go on and log a warning) or `allow` (go on silently)"
            ))),
        }
    }
}

/// The policies of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Policies {
    pub edited: Policy,
    /// Recorded versions the binary does not embed, below its newest one
    /// (a deleted or renamed file).
    pub unknown: Policy,
    /// Recorded versions above the binary's newest: an older binary during
    /// a rolling deployment, or after a rollback. Warned about by default,
    /// as Flyway's `ignoreFutureMigrations`: the binary starts, writing
    /// nothing.
    pub future: Policy,
    pub out_of_order: Policy,
}

impl Default for Policies {
    fn default() -> Self {
        Policies {
            edited: Policy::Error,
            unknown: Policy::Error,
            future: Policy::Warn,
            out_of_order: Policy::Error,
        }
    }
}

impl Policies {
    /// The policy for a recorded version the binary does not embed.
    pub(crate) fn for_unknown(&self, newer_than_binary: bool) -> Policy {
        if newer_than_binary {
            self.future
        } else {
            self.unknown
        }
    }

    /// The drift an entry's state is, with its policy: edited and unknown
    /// versions, and pending ones older than the newest recorded version
    /// (`newest`). `None` for the states that are not drift.
    pub(crate) fn drift(
        &self,
        entry: &VersionEntry<'_>,
        newest: Option<i64>,
    ) -> Option<(Drift, Policy)> {
        let version = entry.version;
        match &entry.state {
            VersionState::Edited { applied, embedded } => Some((
                Drift::Edited {
                    version,
                    file: entry.file().to_owned(),
                    applied: applied.clone(),
                    embedded: embedded.clone(),
                },
                self.edited,
            )),
            VersionState::Unknown { newer_than_binary } => Some((
                Drift::Unknown {
                    version,
                    name: entry.name().to_owned(),
                },
                self.for_unknown(*newer_than_binary),
            )),
            VersionState::Pending { out_of_order: true } => Some((
                Drift::OutOfOrder {
                    version,
                    file: entry.file().to_owned(),
                    newest_applied: newest.unwrap_or_default(),
                },
                self.out_of_order,
            )),
            _ => None,
        }
    }
}

/// The migrations a run applies, in order.
pub(crate) struct Plan<'m> {
    pub pending: Vec<&'m Migration>,
}

/// A state as `status` shows it: an unfinished row is in progress while
/// `running` (the live session holding the lock) runs it, else dirty.
pub(crate) fn state(entry: &VersionEntry<'_>, running: Option<&LockHolder>) -> State {
    match (&entry.state, running) {
        (VersionState::Unfinished, Some(holder)) => State::InProgress {
            holder: holder.clone(),
        },
        (VersionState::Unfinished, None) => State::Dirty,
        (VersionState::Pending { .. }, _) => State::Pending,
        (VersionState::Unknown { .. }, _) => State::Unknown,
        (VersionState::InBaseline { baseline }, _) => State::InBaseline {
            baseline: *baseline,
        },
        (VersionState::Edited { applied, embedded }, _) => State::Edited {
            applied: applied.clone(),
            embedded: embedded.clone(),
        },
        (VersionState::Applied, _) => match entry.row {
            Some(row) => State::Applied {
                at: row.applied_at.clone(),
                duration: std::time::Duration::from_millis(row.execution_ms.max(0) as u64),
                kind: row.kind,
            },
            // Applied means recorded: there is always a row.
            None => State::Pending,
        },
    }
}

impl<'m> Plan<'m> {
    /// Check the history against the embedded set and list what to apply up
    /// to `target` (default: head).
    pub(crate) fn new(
        migrations: &'m Migrations,
        rows: &'m [HistoryRow],
        target: Option<i64>,
        policies: Policies,
    ) -> Result<Self> {
        let upto = |v: i64| target.is_none_or(|t| v <= t);
        let entries = reconcile(migrations, rows);
        if let Some(dirty) = entries.iter().find(|e| e.state == VersionState::Unfinished) {
            return Err(Error::Dirty {
                version: dirty.version,
                file: dirty.file().to_owned(),
                invalid_indexes: Vec::new(),
            });
        }
        let newest = rows.iter().map(|r| r.version).max();
        let mut refused = Vec::new();
        // Recorded versions first, then the pending ones.
        let (recorded, unrecorded): (Vec<_>, Vec<_>) =
            entries.iter().partition(|e| e.row.is_some());
        for entry in recorded.iter().chain(&unrecorded) {
            if matches!(entry.state, VersionState::Pending { .. }) && !upto(entry.version) {
                continue;
            }
            match policies.drift(entry, newest) {
                Some((drift, Policy::Error)) => refused.push(drift),
                Some((drift, Policy::Warn)) => tracing::warn!("{drift}"),
                _ => {}
            }
        }
        if !refused.is_empty() {
            return Err(Error::Drift(refused));
        }
        let pending = if rows.is_empty() {
            // A fresh database: the newest baseline within the target, then
            // what follows it.
            let baseline = migrations
                .baselines()
                .iter()
                .rev()
                .find(|b| upto(b.version()));
            let after = baseline.map_or(i64::MIN, Migration::version);
            baseline
                .into_iter()
                .chain(
                    migrations
                        .iter()
                        .filter(|m| m.version() > after && upto(m.version())),
                )
                .collect()
        } else {
            unrecorded
                .iter()
                .filter(|e| matches!(e.state, VersionState::Pending { .. }) && upto(e.version))
                .filter_map(|e| e.embedded)
                .collect()
        };
        Ok(Plan { pending })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::history::RowKind;

    fn unfinished(row: &HistoryRow) -> VersionEntry<'_> {
        VersionEntry {
            version: row.version,
            embedded: None,
            row: Some(row),
            state: VersionState::Unfinished,
        }
    }

    fn row(version: i64, success: bool) -> HistoryRow {
        HistoryRow {
            version,
            name: "ix".into(),
            checksum: None,
            kind: RowKind::Migration,
            success,
            installed_rank: 1,
            applied_at: "2026-12-06 10:00:00+00".into(),
            execution_ms: 5,
            applied_by: "app".into(),
        }
    }

    #[test]
    fn an_unfinished_row_is_in_progress_while_a_holder_runs_it_else_dirty() {
        let row = row(5, false);
        let holder = LockHolder {
            pid: 42,
            application_name: "dbprep migrator 1-2 since 3".into(),
            query_start: None,
        };
        assert_eq!(
            state(&unfinished(&row), Some(&holder)),
            State::InProgress { holder }
        );
        assert_eq!(state(&unfinished(&row), None), State::Dirty);
    }

    #[test]
    fn an_applied_state_carries_its_row() {
        let row = row(3, true);
        let entry = VersionEntry {
            state: VersionState::Applied,
            ..unfinished(&row)
        };
        assert_eq!(
            state(&entry, None),
            State::Applied {
                at: "2026-12-06 10:00:00+00".into(),
                duration: std::time::Duration::from_millis(5),
                kind: RowKind::Migration,
            }
        );
    }
}
