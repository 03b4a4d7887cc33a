//! INVALID indexes: what a failed or interrupted `CREATE INDEX
//! CONCURRENTLY` (or `REINDEX … CONCURRENTLY`) leaves behind.
//!
//! Such an index is maintained on every write but never used by a query,
//! and a rerun's `CREATE INDEX CONCURRENTLY IF NOT EXISTS` finds the name
//! taken and silently skips the build: the migration then records success
//! over an index that does not work. dbprep names them wherever it reports
//! a dirty database, and `repair` can drop them.

use tokio_postgres::Client;

use crate::pg::error::{Error, Result};
pub use crate::pg::report::InvalidIndex;
use crate::pg::sql::{column, rows};

/// Every INVALID index of the database, by schema and name.
const INVALID_INDEXES: &str = "SELECT n.nspname, c.relname, t.relname \
     FROM pg_catalog.pg_index i \
     JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid \
     JOIN pg_catalog.pg_class t ON t.oid = i.indrelid \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE NOT i.indisvalid AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
     ORDER BY n.nspname COLLATE \"C\", c.relname COLLATE \"C\"";

/// The database's INVALID indexes. Read-only: works on a hot standby.
pub(crate) async fn invalid(client: &Client) -> Result<Vec<InvalidIndex>> {
    let answer = client
        .simple_query(INVALID_INDEXES)
        .await
        .map_err(Error::postgres("look for invalid indexes"))?;
    Ok(rows(answer)
        .iter()
        .map(|row| {
            let text = |i| column(row, i).unwrap_or_default().to_owned();
            InvalidIndex {
                schema: text(0),
                name: text(1),
                table: text(2),
            }
        })
        .collect())
}
