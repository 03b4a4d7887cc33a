//! The history as data, and the one reconcile of the embedded set with it.
//!
//! [`reconcile`] says, for every version the binary embeds or the history
//! records, what state it is in. Planning a run, `status` and `verify` all
//! read its answer; none of them compares versions and checksums on its
//! own. It needs no server: the engine reads the rows, this decides.

use std::collections::BTreeMap;

use super::checksum::Checksum;
use super::migration::{Migration, Migrations};

/// How a history row came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RowKind {
    /// A migration that ran.
    Migration,
    /// A baseline that ran: it stands for every version up to its own.
    Baseline,
    /// A version recorded without running (adopting a database).
    Stamp,
}

impl RowKind {
    /// The word the history table stores.
    pub fn as_str(self) -> &'static str {
        match self {
            RowKind::Migration => "migration",
            RowKind::Baseline => "baseline",
            RowKind::Stamp => "stamp",
        }
    }

    /// The kind a stored word names, if any.
    pub fn parse(word: &str) -> Option<RowKind> {
        match word {
            "migration" => Some(RowKind::Migration),
            "baseline" => Some(RowKind::Baseline),
            "stamp" => Some(RowKind::Stamp),
            _ => None,
        }
    }
}

impl std::fmt::Display for RowKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of the history table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HistoryRow {
    /// The version.
    pub version: i64,
    /// The name recorded.
    pub name: String,
    /// The checksum recorded, as lowercase hex (none for rows written by
    /// hand without one).
    pub checksum: Option<String>,
    /// How the row came to be.
    pub kind: RowKind,
    /// `false` for a no-transaction migration that failed or is running.
    pub success: bool,
    /// Order of application.
    pub installed_rank: i32,
    /// When it was applied, as the server prints it.
    pub applied_at: String,
    /// How long it took, in milliseconds.
    pub execution_ms: i32,
    /// Who applied it.
    pub applied_by: String,
}

impl HistoryRow {
    /// Whether the row recorded `checksum`.
    pub(crate) fn recorded(&self, checksum: Checksum) -> bool {
        self.checksum
            .as_deref()
            .is_some_and(|hex| checksum.matches_hex(hex))
    }
}

/// Where one version stands between the binary and the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionState {
    /// Embedded, not recorded.
    Pending {
        /// Older than the newest recorded version: applying it now would
        /// run it out of order.
        out_of_order: bool,
    },
    /// Recorded, with the checksum the binary has.
    Applied,
    /// Embedded, and covered by a recorded baseline at this version.
    InBaseline {
        /// The baseline's version.
        baseline: i64,
    },
    /// Recorded with a checksum other than the embedded file's: the file
    /// was edited after it was applied.
    Edited {
        /// The recorded checksum, as hex.
        applied: String,
        /// The embedded checksum, as hex.
        embedded: String,
    },
    /// Recorded, and not embedded in this binary.
    Unknown {
        /// Newer than every embedded version (an older binary during a
        /// rolling deployment); else a file was deleted or renamed.
        newer_than_binary: bool,
    },
    /// Recorded with `success = false`: a no-transaction migration that
    /// failed, was interrupted, or is running now (only the lock can tell).
    Unfinished,
}

/// One version's state, with what the binary and the history know of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionEntry<'a> {
    /// The version.
    pub version: i64,
    /// The embedded migration (or baseline) of that version.
    pub embedded: Option<&'a Migration>,
    /// Its history row.
    pub row: Option<&'a HistoryRow>,
    /// Its state.
    pub state: VersionState,
}

impl VersionEntry<'_> {
    /// The file's name when embedded, else the name the history recorded.
    pub fn name(&self) -> &str {
        self.embedded
            .map(Migration::name)
            .or(self.row.map(|r| r.name.as_str()))
            .unwrap_or_default()
    }

    /// The embedded file, or `unknown file`.
    pub fn file(&self) -> &str {
        self.embedded.map_or("unknown file", Migration::file)
    }
}

/// The embedded migration (or baseline) a history row is about.
fn embedded_for<'m>(migrations: &'m Migrations, row: &HistoryRow) -> Option<&'m Migration> {
    if row.kind == RowKind::Baseline {
        migrations
            .baselines()
            .iter()
            .find(|b| b.version() == row.version)
    } else {
        migrations.get(row.version)
    }
}

/// Every version the binary embeds or the history records, in version
/// order, with its state.
pub fn reconcile<'a>(migrations: &'a Migrations, rows: &'a [HistoryRow]) -> Vec<VersionEntry<'a>> {
    let baseline = rows
        .iter()
        .filter(|r| r.kind == RowKind::Baseline)
        .map(|r| r.version)
        .max();
    let newest_recorded = rows.iter().map(|r| r.version).max();
    let head = migrations.head();
    let mut entries: BTreeMap<i64, VersionEntry<'a>> = BTreeMap::new();
    for m in migrations.iter() {
        let state = match baseline {
            Some(b) if m.version() <= b => VersionState::InBaseline { baseline: b },
            _ => VersionState::Pending {
                out_of_order: newest_recorded.is_some_and(|n| m.version() < n),
            },
        };
        entries.insert(
            m.version(),
            VersionEntry {
                version: m.version(),
                embedded: Some(m),
                row: None,
                state,
            },
        );
    }
    for row in rows {
        let embedded = embedded_for(migrations, row);
        let state = if !row.success {
            VersionState::Unfinished
        } else {
            match embedded {
                None => VersionState::Unknown {
                    newer_than_binary: head.is_none_or(|h| row.version > h),
                },
                Some(m) => {
                    if row.recorded(m.checksum()) {
                        VersionState::Applied
                    } else {
                        VersionState::Edited {
                            applied: row.checksum.clone().unwrap_or_default(),
                            embedded: m.checksum().to_string(),
                        }
                    }
                }
            }
        };
        entries.insert(
            row.version,
            VersionEntry {
                version: row.version,
                embedded,
                row: Some(row),
                state,
            },
        );
    }
    entries.into_values().collect()
}

/// A set of migrations from `files` (name, SQL), for unit tests.
#[cfg(test)]
pub(crate) fn set(files: &[(&str, &str)]) -> Migrations {
    let dir = tempfile::tempdir().unwrap();
    for (name, sql) in files {
        std::fs::write(dir.path().join(name), sql).unwrap();
    }
    Migrations::from_dir(dir.path()).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(m: Option<&Migration>, version: i64, kind: RowKind, success: bool) -> HistoryRow {
        HistoryRow {
            version,
            name: m.map_or("gone".to_owned(), |m| m.name().to_owned()),
            checksum: m.map(|m| m.checksum().to_string()),
            kind,
            success,
            installed_rank: version as i32,
            applied_at: String::new(),
            execution_ms: 0,
            applied_by: "app".into(),
        }
    }

    fn states(migrations: &Migrations, rows: &[HistoryRow]) -> Vec<(i64, VersionState)> {
        reconcile(migrations, rows)
            .into_iter()
            .map(|e| (e.version, e.state))
            .collect()
    }

    fn three() -> Migrations {
        set(&[
            ("V1__a.sql", "CREATE TABLE a (id int);"),
            ("V2__b.sql", "CREATE TABLE b (id int);"),
            ("V3__c.sql", "CREATE TABLE c (id int);"),
        ])
    }

    #[test]
    fn a_fresh_database_has_everything_pending_in_order() {
        let m = three();
        let pending = VersionState::Pending {
            out_of_order: false,
        };
        assert_eq!(
            states(&m, &[]),
            [(1, pending.clone()), (2, pending.clone()), (3, pending)]
        );
    }

    #[test]
    fn applied_pending_and_out_of_order() {
        let m = three();
        let rows = [
            row(m.get(1), 1, RowKind::Migration, true),
            row(m.get(3), 3, RowKind::Stamp, true),
        ];
        assert_eq!(
            states(&m, &rows),
            [
                (1, VersionState::Applied),
                (2, VersionState::Pending { out_of_order: true }),
                (3, VersionState::Applied),
            ]
        );
    }

    #[test]
    fn an_edited_file_shows_both_checksums() {
        let m = three();
        let mut edited = row(m.get(2), 2, RowKind::Migration, true);
        edited.checksum = Some("00".repeat(32));
        let entries = reconcile(&m, std::slice::from_ref(&edited));
        assert_eq!(
            entries[1].state,
            VersionState::Edited {
                applied: "00".repeat(32),
                embedded: m.get(2).unwrap().checksum().to_string(),
            }
        );
        assert_eq!(entries[1].file(), m.get(2).unwrap().file());
    }

    #[test]
    fn unknown_versions_newer_than_the_binary_and_between_its_versions() {
        let m = set(&[
            ("V1__a.sql", "CREATE TABLE a (id int);"),
            ("V3__c.sql", "CREATE TABLE c (id int);"),
        ]);
        let rows = [
            row(m.get(1), 1, RowKind::Migration, true),
            row(None, 2, RowKind::Migration, true),
            row(m.get(3), 3, RowKind::Migration, true),
            row(None, 4, RowKind::Migration, true),
        ];
        let entries = reconcile(&m, &rows);
        assert_eq!(
            entries.iter().map(|e| e.state.clone()).collect::<Vec<_>>(),
            [
                VersionState::Applied,
                VersionState::Unknown {
                    newer_than_binary: false
                },
                VersionState::Applied,
                VersionState::Unknown {
                    newer_than_binary: true
                },
            ]
        );
        assert_eq!(
            (entries[1].name(), entries[1].file()),
            ("gone", "unknown file")
        );
    }

    #[test]
    fn an_unfinished_row_is_unfinished_whatever_its_checksum() {
        let m = three();
        let rows = [
            row(m.get(1), 1, RowKind::Migration, true),
            row(m.get(2), 2, RowKind::Migration, false),
        ];
        assert_eq!(states(&m, &rows)[1], (2, VersionState::Unfinished));
    }

    #[test]
    fn a_recorded_baseline_covers_the_versions_up_to_it() {
        let m = set(&[
            ("V1__a.sql", "CREATE TABLE a (id int);"),
            ("V2__b.sql", "CREATE TABLE b (id int);"),
            (
                "B2__base.sql",
                "CREATE TABLE a (id int); CREATE TABLE b (id int);",
            ),
            ("V3__c.sql", "CREATE TABLE c (id int);"),
        ]);
        let baseline = &m.baselines()[0];
        let rows = [row(Some(baseline), 2, RowKind::Baseline, true)];
        assert_eq!(
            states(&m, &rows),
            [
                (1, VersionState::InBaseline { baseline: 2 }),
                (2, VersionState::Applied),
                (
                    3,
                    VersionState::Pending {
                        out_of_order: false
                    }
                ),
            ]
        );
    }

    #[test]
    fn row_kinds_read_back_what_they_write() {
        for kind in [RowKind::Migration, RowKind::Baseline, RowKind::Stamp] {
            assert_eq!(RowKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(RowKind::parse("squashed"), None);
    }
}
