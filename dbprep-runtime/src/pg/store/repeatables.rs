//! The history of repeatable migrations (`R__views.sql`),
//! `dbprep_schema_history_repeatables` beside the history: one row per
//! repeatable migration with the checksum it last ran with. They have no
//! version, so they stay out of the versioned history, its digest and its
//! batch guards; a set without them never creates the table.

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::HistoryTable;
use crate::model::migration::Migration;
use crate::pg::error::{Error, Result};
use crate::pg::report::{RepeatableState, RepeatableStatus};
use crate::pg::sql::{bytea, column, literal, rows};

/// A repeatable migration as its history records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RepeatableRow {
    /// Its name (`views` for `R__views.sql`).
    pub name: String,
    /// The file it last ran from.
    pub file: String,
    /// The checksum it last ran with, lowercase hex.
    pub checksum: String,
    /// When it last ran.
    pub applied_at: String,
    /// How long it took, in milliseconds.
    pub execution_ms: i32,
    /// Who ran it.
    pub applied_by: String,
}

impl HistoryTable {
    /// The table of repeatable migrations.
    pub fn repeatable_table(&self) -> String {
        self.beside(&format!("{}_repeatables", self.table))
    }

    /// The table if missing (the history's schema exists by then).
    pub(crate) fn create_repeatable_table_sql(&self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
    name         text PRIMARY KEY,
    file         text NOT NULL,
    checksum     bytea NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    execution_ms integer NOT NULL DEFAULT 0,
    applied_by   text NOT NULL,
    run_id       text NOT NULL
);\n",
            self.repeatable_table()
        )
    }

    /// Every recorded repeatable migration, by name; `None` when the table
    /// does not exist. One round trip, read-only.
    pub(crate) async fn read_repeatables(
        &self,
        client: &Client,
    ) -> Result<Option<Vec<RepeatableRow>>> {
        let sql = format!(
            "SELECT name, file, pg_catalog.encode(checksum, 'hex'), applied_at, execution_ms, applied_by \
             FROM {} ORDER BY name COLLATE \"C\"",
            self.repeatable_table()
        );
        let answer = match client.simple_query(&sql).await {
            Ok(answer) => answer,
            Err(error) if error.code() == Some(&SqlState::UNDEFINED_TABLE) => return Ok(None),
            Err(error) => return Err(Error::postgres("read the repeatable migrations")(error)),
        };
        Ok(Some(
            rows(answer)
                .iter()
                .map(|row| {
                    let text = |i| column(row, i).unwrap_or_default().to_owned();
                    RepeatableRow {
                        name: text(0),
                        file: text(1),
                        checksum: text(2),
                        applied_at: text(3),
                        execution_ms: text(4).parse().unwrap_or(0),
                        applied_by: text(5),
                    }
                })
                .collect(),
        ))
    }

    /// Record that `m` ran (or is running, in this transaction) by
    /// `applied_by` in the run `run_id`, both SQL (a guard may leave
    /// `run_id` `NULL`, which the table refuses).
    pub(crate) fn record_repeatable_sql(
        &self,
        m: &Migration,
        applied_by: &str,
        run_id: &str,
    ) -> String {
        format!(
            "INSERT INTO {t} AS r (name, file, checksum, applied_by, run_id) VALUES ({}, {}, {}, {}, {run_id}) \
             ON CONFLICT (name) DO UPDATE SET file = EXCLUDED.file, checksum = EXCLUDED.checksum, \
             applied_at = EXCLUDED.applied_at, execution_ms = 0, applied_by = EXCLUDED.applied_by, \
             run_id = EXCLUDED.run_id;\n",
            literal(m.name()),
            literal(m.file()),
            bytea(m.checksum().as_bytes()),
            applied_by,
            t = self.repeatable_table(),
        )
    }

    /// The durations of repeatable migrations, `(name, ms)`, in one
    /// `UPDATE`.
    pub(crate) fn repeatable_durations_sql(&self, durations: &[(&str, u128)]) -> String {
        let values: Vec<String> = durations
            .iter()
            .map(|(name, ms)| format!("({}, {ms})", literal(name)))
            .collect();
        format!(
            "UPDATE {} AS r SET execution_ms = d.ms FROM (VALUES {}) AS d (name, ms) \
             WHERE r.name = d.name;\n",
            self.repeatable_table(),
            values.join(", ")
        )
    }
}

/// The state of every repeatable migration, embedded (in name order) or
/// recorded (then, those the binary does not embed).
pub(crate) fn states(embedded: &[Migration], recorded: &[RepeatableRow]) -> Vec<RepeatableStatus> {
    let mut states: Vec<RepeatableStatus> = embedded
        .iter()
        .map(|m| {
            let state = match recorded.iter().find(|r| r.name == m.name()) {
                None => RepeatableState::Pending,
                Some(r) if m.checksum().matches_hex(&r.checksum) => RepeatableState::Applied {
                    at: r.applied_at.clone(),
                    duration: std::time::Duration::from_millis(r.execution_ms.max(0) as u64),
                },
                Some(r) => RepeatableState::Changed {
                    applied: r.checksum.clone(),
                    embedded: m.checksum().to_string(),
                },
            };
            RepeatableStatus {
                name: m.name().to_owned(),
                file: m.file().to_owned(),
                state,
            }
        })
        .collect();
    for r in recorded {
        if !embedded.iter().any(|m| m.name() == r.name) {
            states.push(RepeatableStatus {
                name: r.name.clone(),
                file: r.file.clone(),
                state: RepeatableState::Unknown,
            });
        }
    }
    states
}

/// The repeatable migrations of `embedded` whose checksum differs from
/// the one `recorded` holds (or that never ran), in name order.
pub(crate) fn outdated<'m>(
    embedded: &'m [Migration],
    recorded: &[RepeatableRow],
) -> Vec<&'m Migration> {
    embedded
        .iter()
        .filter(|m| {
            !recorded
                .iter()
                .any(|r| r.name == m.name() && m.checksum().matches_hex(&r.checksum))
        })
        .collect()
}
