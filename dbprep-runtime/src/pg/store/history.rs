//! The history table, `dbprep_schema_history`: its DDL, reading it, and the
//! statements that write it.

use tokio_postgres::Client;

pub use super::HistoryTable;
pub use crate::model::history::HistoryRow;
use crate::model::history::RowKind;
use crate::pg::error::{Error, Result};
use crate::pg::sql::{column, ident, rows};

impl HistoryTable {
    /// The statement that creates the table if missing, and with
    /// `create_schema` its schema. (`CREATE SCHEMA IF NOT EXISTS` asks for
    /// the right to create schemas in the database even when the schema is
    /// there: an owner granted no more than a schema could not run.)
    ///
    /// `previous_version` is the migration applied before it in the same
    /// batch, and `run_id` names the run that wrote the row: the history
    /// insert of a batch leaves it `NULL`, which the table refuses, when
    /// the predecessor was not committed (the batch guard).
    ///
    /// Half of each page is left free: a batch writes its durations into
    /// rows it has just inserted, and with room on their page the new
    /// versions stay there and the primary key is not touched (3.5 instead
    /// of 7 ms for 1,000 rows).
    pub fn create_sql(&self, create_schema: bool) -> String {
        let t = self.qualified();
        let pkey = ident(&format!("{}_pkey", self.table));
        format!(
            "{schema}CREATE TABLE IF NOT EXISTS {t} (
    installed_rank   integer NOT NULL,
    version          bigint NOT NULL CONSTRAINT {pkey} PRIMARY KEY,
    name             text NOT NULL,
    checksum         bytea,
    kind             text NOT NULL CHECK (kind IN ('migration', 'baseline', 'stamp')),
    applied_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    execution_ms     integer NOT NULL DEFAULT 0,
    applied_by       text NOT NULL,
    success          boolean NOT NULL,
    previous_version bigint,
    run_id           text NOT NULL
) WITH (fillfactor = 50);",
            schema = self.create_schema_sql(create_schema),
        )
    }

    /// Read every row, in version order.
    pub(crate) async fn read(&self, client: &Client) -> Result<Vec<HistoryRow>> {
        let sql = format!(
            "SELECT version, name, pg_catalog.encode(checksum, 'hex'), kind, success, installed_rank, applied_at, execution_ms, applied_by \
             FROM {} ORDER BY version",
            self.qualified()
        );
        let answer = client
            .simple_query(&sql)
            .await
            .map_err(Error::postgres("read the history table"))?;
        let table = self.qualified();
        rows(answer)
            .iter()
            .map(|row| row_from(&table, row))
            .collect()
    }
}

/// Read one row as [`HistoryTable::read`] selects it. A value that does
/// not read as its column's type means the table was changed by hand:
/// nothing is decided on a guess.
fn row_from(table: &str, row: &tokio_postgres::SimpleQueryRow) -> Result<HistoryRow> {
    let text = |i| column(row, i).unwrap_or_default();
    let version_text = text(0);
    let damaged = |what: &str, value: &str| Error::DamagedHistory {
        table: table.to_owned(),
        detail: format!("version {version_text:?}: {what} {value:?}"),
    };
    let number = |i: usize, what: &str| -> Result<i64> {
        text(i).parse().map_err(|_| damaged(what, text(i)))
    };
    let kind = RowKind::parse(text(3))
        .ok_or_else(|| damaged("kind is not migration, baseline or stamp but", text(3)))?;
    Ok(HistoryRow {
        version: number(0, "the version is not a bigint:")?,
        name: text(1).to_owned(),
        checksum: column(row, 2).map(str::to_owned),
        kind,
        success: column(row, 4) == Some("t"),
        installed_rank: i32::try_from(number(5, "installed_rank is not an integer:")?)
            .map_err(|_| damaged("installed_rank is out of range:", text(5)))?,
        applied_at: text(6).to_owned(),
        execution_ms: i32::try_from(number(7, "execution_ms is not an integer:")?)
            .map_err(|_| damaged("execution_ms is out of range:", text(7)))?,
        applied_by: text(8).to_owned(),
    })
}
