//! The history table, `dbprep_schema_history`: its DDL, reading it, and the
//! statements that write it.

use tokio_postgres::Client;

pub use super::HistoryTable;
use crate::model::checksum::Checksum;
pub use crate::model::history::HistoryRow;
use crate::model::history::RowKind;
use crate::model::migration::Migration;
use crate::pg::error::{Error, Result};
use crate::pg::sql::{bytea, column, ident, literal, rows};

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

    /// A boolean expression: the table has the columns [`create_sql`]
    /// gives it, of their types, and no other (a table changed by hand is
    /// read, and its damage named, never known from its digest alone).
    ///
    /// [`create_sql`]: Self::create_sql
    pub(crate) fn columns_as_made_sql(&self) -> String {
        let made: Vec<String> = COLUMN_TYPES
            .iter()
            .map(|(name, ty)| format!("{name} {ty}"))
            .collect();
        format!(
            "(SELECT pg_catalog.string_agg(a.attname OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) \
             pg_catalog.format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attname) \
             FROM pg_catalog.pg_attribute a WHERE a.attrelid = pg_catalog.to_regclass({}) \
             AND a.attnum > 0 AND NOT a.attisdropped) = {}",
            literal(&self.qualified()),
            literal(&made.join(", "))
        )
    }

    /// Read every row, in version order.
    pub(crate) async fn read(&self, client: &Client) -> Result<Vec<HistoryRow>> {
        self.read_where(client, "true").await
    }

    /// Read the rows the run `run_id` wrote, all of them above `after`
    /// (the primary key finds them), in version order.
    pub(crate) async fn read_run(
        &self,
        client: &Client,
        run_id: &str,
        after: Option<i64>,
    ) -> Result<Vec<HistoryRow>> {
        let after = after.map_or(String::new(), |v| format!("version > {v} AND "));
        self.read_where(client, &format!("{after}run_id = {}", literal(run_id)))
            .await
    }

    /// Read the rows that meet `condition` (SQL), in version order.
    async fn read_where(&self, client: &Client, condition: &str) -> Result<Vec<HistoryRow>> {
        let sql = format!(
            "SELECT version, name, pg_catalog.encode(checksum, 'hex'), kind, success, installed_rank, applied_at, execution_ms, applied_by \
             FROM {} WHERE {condition} ORDER BY version",
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
    let damaged = |what: &str, value: &str| {
        Error::DamagedHistory {
        table: table.to_owned(),
        detail: format!(
            "version {version_text:?}: {what} {value:?}. Fix the row by hand (or restore the table), then run again"
        ),
    }
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

/// The history's columns as [`HistoryTable::create_sql`] makes them, by
/// name, with their types as `format_type` prints them.
const COLUMN_TYPES: [(&str, &str); 11] = [
    ("applied_at", "timestamp with time zone"),
    ("applied_by", "text"),
    ("checksum", "bytea"),
    ("execution_ms", "integer"),
    ("installed_rank", "integer"),
    ("kind", "text"),
    ("name", "text"),
    ("previous_version", "bigint"),
    ("run_id", "text"),
    ("success", "boolean"),
    ("version", "bigint"),
];

/// The columns dbprep's inserts write, in the order of [`NewRow`]'s values.
const INSERT_COLUMNS: &str = "installed_rank, version, name, checksum, kind, applied_at, \
     execution_ms, applied_by, success, previous_version, run_id";

/// One history row to insert, each value as SQL: a literal, a statement
/// parameter (`$1`) or an expression.
pub(crate) struct NewRow {
    pub installed_rank: String,
    pub version: String,
    pub name: String,
    pub checksum: String,
    pub kind: String,
    pub applied_at: String,
    pub execution_ms: String,
    pub applied_by: String,
    pub success: bool,
    pub previous_version: String,
    /// `NOT NULL` in the table: a guard leaves it `NULL` to refuse the row
    /// (see [`guarded`]).
    pub run_id: String,
}

impl NewRow {
    /// The row of migration `m` at `rank`, applied by `applied_by` in the
    /// run `run_id` (SQL): applied now, 0 ms, successful, no predecessor.
    pub(crate) fn of(m: &Migration, rank: i32, applied_by: &str, run_id: String) -> NewRow {
        let kind = if m.is_baseline() {
            RowKind::Baseline
        } else {
            RowKind::Migration
        };
        NewRow {
            installed_rank: rank.to_string(),
            version: m.version().to_string(),
            name: literal(m.name()),
            checksum: bytea(m.checksum().as_bytes()),
            kind: format!("'{kind}'"),
            applied_at: "pg_catalog.clock_timestamp()".to_owned(),
            execution_ms: "0".to_owned(),
            applied_by: literal(applied_by),
            success: true,
            previous_version: "NULL".to_owned(),
            run_id,
        }
    }
}

/// `run_id` as a guard writes it: `run_id` (SQL) when `condition` holds,
/// else `NULL`, which the table refuses, so the whole statement fails.
pub(crate) fn guarded(condition: &str, run_id: &str) -> String {
    format!("CASE WHEN {condition} THEN {run_id} END")
}

impl HistoryTable {
    /// The `INSERT` of `row`.
    pub(crate) fn insert_sql(&self, row: &NewRow) -> String {
        format!(
            "INSERT INTO {t} ({INSERT_COLUMNS}) VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {});\n",
            row.installed_rank,
            row.version,
            row.name,
            row.checksum,
            row.kind,
            row.applied_at,
            row.execution_ms,
            row.applied_by,
            row.success,
            row.previous_version,
            row.run_id,
            t = self.qualified(),
        )
    }

    /// A condition that holds when `previous` (if any) is recorded.
    pub(crate) fn recorded_sql(&self, previous: Option<i64>) -> String {
        previous.map_or("true".to_owned(), |v| {
            format!(
                "EXISTS (SELECT FROM {} WHERE version = {v})",
                self.qualified()
            )
        })
    }

    /// Forget a version (a dirty row, so that it runs again).
    pub(crate) fn delete_sql(&self, version: i64) -> String {
        format!(
            "DELETE FROM {} WHERE version = {version};\n",
            self.qualified()
        )
    }

    /// Record `checksum` for `version` (accepting an edited file).
    pub(crate) fn set_checksum_sql(&self, version: i64, checksum: Checksum) -> String {
        format!(
            "UPDATE {} SET checksum = {} WHERE version = {version};\n",
            self.qualified(),
            bytea(checksum.as_bytes())
        )
    }

    /// A no-transaction migration is over: successful, in `ms`.
    pub(crate) fn finished_sql(&self, version: i64, ms: u128) -> String {
        format!(
            "UPDATE {} SET success = true, execution_ms = {ms} WHERE version = {version};\n",
            self.qualified()
        )
    }

    /// The durations of several versions, `(version, ms)`, in one `UPDATE`.
    pub(crate) fn durations_sql(&self, durations: &[(i64, u128)]) -> String {
        let values: Vec<String> = durations
            .iter()
            .map(|(version, ms)| format!("({version}, {ms})"))
            .collect();
        format!(
            "UPDATE {} AS h SET execution_ms = d.ms FROM (VALUES {}) AS d (version, ms) \
             WHERE h.version = d.version::pg_catalog.int8;\n",
            self.qualified(),
            values.join(", ")
        )
    }

    /// The durations of the migrations of a batch, `versions` in the order
    /// they ran, each but the last from its `applied_at` to the next one's:
    /// the start of its transaction to the start of the next, which the
    /// server began once it was over. Nothing when there is no next.
    pub(crate) fn batch_durations_sql(&self, versions: &[i64]) -> String {
        if versions.len() < 2 {
            return String::new();
        }
        let list: Vec<String> = versions.iter().map(i64::to_string).collect();
        format!(
            "UPDATE {t} AS h SET execution_ms = (pg_catalog.date_part('epoch', n.next - h.applied_at) * 1000)::pg_catalog.int4 \
             FROM (SELECT version, pg_catalog.lead(applied_at) OVER (ORDER BY installed_rank) AS next \
             FROM {t} WHERE version = ANY ('{{{list}}}'::pg_catalog.int8[])) AS n \
             WHERE h.version = n.version AND n.next IS NOT NULL;\n",
            t = self.qualified(),
            list = list.join(","),
        )
    }

    /// The duration of `version`, the migration of the transaction, from
    /// the transaction's start to now.
    pub(crate) fn duration_so_far_sql(&self, version: i64) -> String {
        format!(
            "UPDATE {} SET execution_ms = (pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() - pg_catalog.now()) * 1000)::pg_catalog.int4 \
             WHERE version = {version};\n",
            self.qualified()
        )
    }
}
