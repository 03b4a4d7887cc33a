//! The fixture history, `dbprep_fixture_history`: one row per populated
//! fixture with the checksum of what was loaded, so that populating the same
//! content again writes nothing and `verify` sees a fixture whose file
//! changed since.

use tokio_postgres::Client;

use super::{relation_exists, HistoryTable};
use crate::model::checksum::Checksum;
use crate::pg::error::{Error, Result};
use crate::pg::sql::{column, rows};

/// A row of the fixture history.
#[derive(Debug, Clone)]
pub(crate) struct PopulatedFixture {
    pub name: String,
    /// The checksum of what was loaded, as hex.
    pub checksum: String,
    /// How many rows were loaded.
    pub rows: i64,
    /// When, as the server prints it.
    pub applied_at: String,
}

impl HistoryTable {
    /// The fixture history table if missing, and with `create_schema` its
    /// schema (see [`HistoryTable::create_sql`]).
    pub(crate) fn create_fixture_table_sql(&self, create_schema: bool) -> String {
        format!(
            "{}CREATE TABLE IF NOT EXISTS {} (
    name       text PRIMARY KEY,
    checksum   bytea NOT NULL,
    rows       bigint NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
);",
            self.create_schema_sql(create_schema),
            self.fixture_table()
        )
    }

    /// The checksum (hex) recorded for fixture `name`, if it was populated.
    pub(crate) async fn fixture_checksum(
        &self,
        client: &Client,
        name: &str,
    ) -> Result<Option<String>> {
        Ok(client
            .query_opt(
                &format!(
                    "SELECT pg_catalog.encode(checksum, 'hex') FROM {} WHERE name = $1",
                    self.fixture_table()
                ),
                &[&name],
            )
            .await
            .map_err(Error::postgres("read the fixture history"))?
            .map(|row| row.get::<_, String>(0)))
    }

    /// Record that fixture `name` was populated with `checksum`, `rows`
    /// rows written.
    pub(crate) async fn record_fixture(
        &self,
        client: &Client,
        name: &str,
        checksum: Checksum,
        rows: u64,
    ) -> Result<()> {
        client
            .execute(
                &format!(
                    "INSERT INTO {} (name, checksum, rows) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET checksum = EXCLUDED.checksum, rows = EXCLUDED.rows, applied_at = pg_catalog.clock_timestamp()",
                    self.fixture_table()
                ),
                &[&name, &checksum.as_bytes().as_slice(), &(rows as i64)],
            )
            .await
            .map_err(Error::postgres("record the fixture"))?;
        Ok(())
    }

    /// Every populated fixture, by name; none when the table does not
    /// exist. Read-only.
    pub(crate) async fn populated_fixtures(
        &self,
        client: &Client,
    ) -> Result<Vec<PopulatedFixture>> {
        if !relation_exists(client, &self.fixture_table()).await? {
            return Ok(Vec::new());
        }
        let answer = client
            .simple_query(&format!(
                "SELECT name, pg_catalog.encode(checksum, 'hex'), rows, applied_at FROM {} ORDER BY name",
                self.fixture_table()
            ))
            .await
            .map_err(Error::postgres("read the fixture history"))?;
        Ok(rows(answer)
            .iter()
            .filter_map(|row| {
                Some(PopulatedFixture {
                    name: column(row, 0)?.to_owned(),
                    checksum: column(row, 1)?.to_owned(),
                    rows: column(row, 2)?.parse().ok()?,
                    applied_at: column(row, 3)?.to_owned(),
                })
            })
            .collect())
    }
}
