//! The history table, `dbprep_schema_history`: its SQL, and reading it.

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use super::error::{Error, Result};
use super::sql::{column, ident, literal, rows};
use crate::model::migration::{Migration, Migrations};

/// Where the history lives: a schema and a table name, always written
/// schema-qualified (a migration's `SET search_path` must not redirect it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryTable {
    /// The schema (default `public`).
    pub schema: String,
    /// The table (default `dbprep_schema_history`).
    pub table: String,
}

impl Default for HistoryTable {
    fn default() -> Self {
        HistoryTable {
            schema: "public".into(),
            table: "dbprep_schema_history".into(),
        }
    }
}

impl HistoryTable {
    /// `"schema"."table"`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", ident(&self.schema), ident(&self.table))
    }

    /// The statement that creates the schema and the table if missing.
    ///
    /// `previous_version` and `run_id` are the batch guards: the first makes
    /// a migration's history insert fail when its predecessor in the batch
    /// is not recorded, the second when the migration ended dbprep's
    /// transaction itself (the `SET LOCAL` value is then gone).
    pub fn create_sql(&self) -> String {
        let t = self.qualified();
        let pkey = ident(&format!("{}_pkey", self.table));
        format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {t} (
    installed_rank   integer NOT NULL,
    version          bigint NOT NULL CONSTRAINT {pkey} PRIMARY KEY,
    name             text NOT NULL,
    checksum         bytea,
    kind             text NOT NULL CHECK (kind IN ('migration', 'baseline', 'stamp')),
    applied_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    execution_ms     integer NOT NULL DEFAULT 0,
    applied_by       text NOT NULL,
    success          boolean NOT NULL,
    previous_version bigint REFERENCES {t} (version) ON DELETE SET NULL,
    run_id           text NOT NULL
);",
            schema = ident(&self.schema),
        )
    }

    /// `to_regclass` of the table: NULL when it does not exist.
    fn regclass(&self) -> String {
        format!("pg_catalog.to_regclass({})", literal(&self.qualified()))
    }

    /// The one statement of a start-up: whether the table exists, a digest
    /// of its rows (computed by the server, so that 1,000 rows cost one
    /// short answer), and the session facts a run needs. It never fails for
    /// a missing table: `query_to_xml` only reads the table when
    /// `to_regclass` found it.
    pub(crate) fn probe_sql(&self) -> String {
        let digest_query = format!(
            "SELECT pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(coalesce(pg_catalog.string_agg({row}, ',' ORDER BY version), ''), 'UTF8')), 'hex') AS d FROM {t}",
            row = DIGEST_ROW,
            t = self.qualified(),
        );
        format!(
            "SELECT r IS NOT NULL, \
             CASE WHEN r IS NOT NULL THEN (pg_catalog.xpath('/row/d/text()', pg_catalog.query_to_xml({q}, false, true, '')))[1]::text END, \
             pg_catalog.current_setting('server_version_num'), pg_catalog.current_setting('role'), \
             pg_catalog.current_setting('search_path'), current_user \
             FROM (SELECT {regclass} AS r) AS probe",
            q = literal(&digest_query),
            regclass = self.regclass(),
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
        Ok(rows(answer).iter().map(HistoryRow::from_row).collect())
    }

    /// Whether the table exists.
    pub(crate) async fn exists(&self, client: &Client) -> Result<bool> {
        let answer = client
            .simple_query(&format!("SELECT {} IS NOT NULL", self.regclass()))
            .await
            .map_err(Error::postgres("look for the history table"))?;
        Ok(rows(answer).first().and_then(|r| column(r, 0)) == Some("t"))
    }

    /// The advisory-lock key of this table: the first 8 bytes of the SHA-256
    /// of its qualified name, so that two histories in one database do not
    /// block each other.
    pub fn lock_key(&self) -> i64 {
        let digest = Sha256::digest(format!("dbprep:{}", self.qualified()).as_bytes());
        i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
    }
}

/// How one row enters the digest, in SQL; [`digest_of`] writes the same
/// text on the client.
const DIGEST_ROW: &str =
    "version::text || ':' || coalesce(pg_catalog.encode(checksum, 'hex'), '') || ':' || success::text";

/// The digest the probe returns when the history holds exactly `rows`
/// (version, checksum hex, success).
pub(crate) fn digest_of<'a>(rows: impl Iterator<Item = (i64, String, bool)> + 'a) -> String {
    let text = rows
        .map(|(version, checksum, success)| format!("{version}:{checksum}:{success}"))
        .collect::<Vec<_>>()
        .join(",");
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The digests of every up-to-date history `migrations` can leave at
/// `target`: everything applied one by one, or a baseline followed by the
/// migrations after it.
pub(crate) fn up_to_date_digests(migrations: &Migrations, target: Option<i64>) -> Vec<String> {
    let upto = |m: &&Migration| target.is_none_or(|t| m.version() <= t);
    let row = |m: &Migration| (m.version(), m.checksum().to_string(), true);
    let mut digests = vec![digest_of(migrations.iter().filter(upto).map(row))];
    for baseline in migrations.baselines().iter().filter(upto) {
        let after = migrations
            .iter()
            .filter(upto)
            .filter(|m| m.version() > baseline.version());
        digests.push(digest_of(
            std::iter::once(row(baseline)).chain(after.map(row)),
        ));
    }
    digests
}

/// One row of the history table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    /// The version.
    pub version: i64,
    /// The name recorded.
    pub name: String,
    /// The checksum recorded, as hex.
    pub checksum: Option<String>,
    /// `migration`, `baseline` or `stamp`.
    pub kind: String,
    /// `false` for a no-transaction migration that failed or is running.
    pub success: bool,
    /// Order of application.
    pub installed_rank: i32,
    /// When it was applied, as the server prints it.
    pub applied_at: String,
    /// How long it took.
    pub execution_ms: i32,
    /// Who applied it.
    pub applied_by: String,
}

impl HistoryRow {
    fn from_row(row: &tokio_postgres::SimpleQueryRow) -> Self {
        let text = |i| column(row, i).unwrap_or_default().to_owned();
        HistoryRow {
            version: text(0).parse().unwrap_or_default(),
            name: text(1),
            checksum: column(row, 2).map(str::to_owned),
            kind: text(3),
            success: column(row, 4) == Some("t"),
            installed_rank: text(5).parse().unwrap_or_default(),
            applied_at: text(6),
            execution_ms: text(7).parse().unwrap_or_default(),
            applied_by: text(8),
        }
    }
}

/// What the start-up probe found.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    pub table_exists: bool,
    pub digest: Option<String>,
    pub server_version_num: i32,
    pub role: String,
    pub search_path: String,
    pub user: String,
}

impl HistoryTable {
    pub(crate) async fn probe(&self, client: &Client) -> Result<Probe> {
        let answer = client
            .simple_query(&self.probe_sql())
            .await
            .map_err(Error::postgres("read the history table"))?;
        let rows = rows(answer);
        let row = rows
            .first()
            .ok_or_else(|| Error::Connect("the start-up probe returned no row".into()))?;
        let text = |i| column(row, i).unwrap_or_default().to_owned();
        Ok(Probe {
            table_exists: column(row, 0) == Some("t"),
            digest: column(row, 1).map(str::to_owned),
            server_version_num: text(2).parse().unwrap_or_default(),
            role: text(3),
            search_path: text(4),
            user: text(5),
        })
    }
}
