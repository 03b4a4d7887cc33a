//! Deciding what a run must do from the embedded set and the history.

use std::collections::BTreeMap;

use super::error::{Drift, Error, LockHolder, Result};
use super::history::HistoryRow;
use super::report::State;
use crate::model::migration::{Migration, Migrations};

/// What to do when the database differs from the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Refuse to run (the default).
    #[default]
    Error,
    /// Go on, and log a warning.
    Warn,
    /// Go on silently.
    Allow,
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
    /// The policy for a recorded version that `migrations` does not embed.
    pub(crate) fn for_unknown(&self, migrations: &Migrations, version: i64) -> Policy {
        if migrations.head().is_none_or(|head| version > head) {
            self.future
        } else {
            self.unknown
        }
    }
}

/// The migrations a run applies, in order.
pub(crate) struct Plan<'m> {
    pub pending: Vec<&'m Migration>,
}

/// The embedded migration (or baseline) a history row is about.
fn embedded_for<'m>(migrations: &'m Migrations, row: &HistoryRow) -> Option<&'m Migration> {
    if row.kind == "baseline" {
        migrations
            .baselines()
            .iter()
            .find(|b| b.version() == row.version)
    } else {
        migrations.get(row.version)
    }
}

/// The version a recorded baseline covers up to, if any.
fn baseline_cover(rows: &[HistoryRow]) -> Option<i64> {
    rows.iter()
        .filter(|r| r.kind == "baseline")
        .map(|r| r.version)
        .max()
}

/// The state of every version, embedded or recorded.
pub(crate) fn states<'m>(
    migrations: &'m Migrations,
    rows: &'m [HistoryRow],
) -> Vec<(i64, Option<&'m Migration>, Option<&'m str>, State)> {
    let mut out: BTreeMap<i64, (Option<&Migration>, State)> = BTreeMap::new();
    let cover = baseline_cover(rows);
    for m in migrations.iter() {
        let state = match cover {
            Some(b) if m.version() <= b => State::InBaseline { baseline: b },
            _ => State::Pending,
        };
        out.insert(m.version(), (Some(m), state));
    }
    let mut names = BTreeMap::new();
    for row in rows {
        let embedded = embedded_for(migrations, row);
        let state = if !row.success {
            State::Dirty
        } else {
            match embedded {
                None => State::Unknown,
                Some(m) if row.checksum.as_deref() != Some(&m.checksum().to_string()) => {
                    State::Edited {
                        applied: row.checksum.clone().unwrap_or_default(),
                        embedded: m.checksum().to_string(),
                    }
                }
                Some(_) => State::Applied {
                    at: row.applied_at.clone(),
                    duration: std::time::Duration::from_millis(row.execution_ms.max(0) as u64),
                    kind: row.kind.clone(),
                },
            }
        };
        names.insert(row.version, row.name.as_str());
        out.insert(row.version, (embedded, state));
    }
    out.into_iter()
        .map(|(v, (m, s))| (v, m, names.get(&v).copied(), s))
        .collect()
}

/// A dirty state is in progress while `running` (the live session holding
/// the lock) runs it.
pub(crate) fn in_progress(state: State, running: Option<&LockHolder>) -> State {
    match (state, running) {
        (State::Dirty, Some(holder)) => State::InProgress {
            holder: holder.clone(),
        },
        (state, _) => state,
    }
}

impl<'m> Plan<'m> {
    /// Check the history against the embedded set and list what to apply up
    /// to `target` (default: head).
    pub(crate) fn new(
        migrations: &'m Migrations,
        rows: &[HistoryRow],
        target: Option<i64>,
        policies: Policies,
    ) -> Result<Self> {
        let upto = |v: i64| target.is_none_or(|t| v <= t);
        if let Some(dirty) = rows.iter().find(|r| !r.success) {
            let file = embedded_for(migrations, dirty)
                .map_or("unknown file".to_owned(), |m| m.file().to_owned());
            return Err(Error::Dirty {
                version: dirty.version,
                file,
                invalid_indexes: Vec::new(),
            });
        }
        let mut refused = Vec::new();
        let mut report = |policy: Policy, drift: Drift| match policy {
            Policy::Error => refused.push(drift),
            Policy::Warn => tracing::warn!("{drift}"),
            Policy::Allow => {}
        };
        for row in rows {
            match embedded_for(migrations, row) {
                None => report(
                    policies.for_unknown(migrations, row.version),
                    Drift::Unknown {
                        version: row.version,
                        name: row.name.clone(),
                    },
                ),
                Some(m) if row.checksum.as_deref() != Some(&m.checksum().to_string()) => report(
                    policies.edited,
                    Drift::Edited {
                        version: m.version(),
                        file: m.file().to_owned(),
                        applied: row.checksum.clone().unwrap_or_default(),
                        embedded: m.checksum().to_string(),
                    },
                ),
                Some(_) => {}
            }
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
            let applied: std::collections::BTreeSet<i64> = rows.iter().map(|r| r.version).collect();
            let cover = baseline_cover(rows).unwrap_or(i64::MIN);
            let newest = rows.iter().map(|r| r.version).max().unwrap_or(i64::MIN);
            let mut pending = Vec::new();
            for m in migrations.iter().filter(|m| upto(m.version())) {
                if applied.contains(&m.version()) || m.version() <= cover {
                    continue;
                }
                if m.version() < newest {
                    let drift = Drift::OutOfOrder {
                        version: m.version(),
                        file: m.file().to_owned(),
                        newest_applied: newest,
                    };
                    report(policies.out_of_order, drift);
                }
                pending.push(m);
            }
            pending
        };
        if !refused.is_empty() {
            return Err(Error::Drift(refused));
        }
        Ok(Plan { pending })
    }
}
