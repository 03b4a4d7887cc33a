//! Finding the tenants: schemas or databases whose names match a `LIKE`
//! pattern, the first column of a query, or the lines of a file.

use std::path::Path;

use deadpool_postgres::Pool;

use super::Tenants;
use crate::pg::connect::pool_error;
use crate::pg::error::{Error, Result};
use crate::pg::sql::{column, rows};

/// The schemas whose names match `$1`, leaving out the system's.
const SCHEMAS_LIKE: &str = "SELECT nspname::text FROM pg_catalog.pg_namespace \
     WHERE nspname LIKE $1 AND nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' \
     ORDER BY nspname COLLATE \"C\"";

/// The databases whose names match `$1` that accept connections, leaving
/// out templates.
const DATABASES_LIKE: &str = "SELECT datname::text FROM pg_catalog.pg_database \
     WHERE datname LIKE $1 AND datallowconn AND NOT datistemplate \
     ORDER BY datname COLLATE \"C\"";

/// The names `sql` (a query taking `$1`) lists on a connection of `pool`.
async fn names_like(pool: &Pool, sql: &str, pattern: &str, what: &str) -> Result<Vec<String>> {
    let client = pool.get().await.map_err(pool_error)?;
    let found = client
        .query(sql, &[&pattern])
        .await
        .map_err(Error::postgres(format!(
            "list the {what} matching {pattern:?}"
        )))?;
    Ok(found.iter().map(|row| row.get(0)).collect())
}

impl Tenants {
    /// The schemas of the database `pool` connects to whose names match
    /// the `LIKE` pattern (`tenant_%`; `\_` for a literal underscore), in
    /// name order, system schemas left out. See [`Tenants::schemas`].
    ///
    /// # Errors
    ///
    /// A connection or query error.
    pub async fn schemas_like(pool: &Pool, pattern: &str) -> Result<Tenants> {
        let names = names_like(pool, SCHEMAS_LIKE, pattern, "schemas").await?;
        Ok(Tenants::schemas(pool, names))
    }

    /// The schemas named by the first column of each row `query` returns
    /// (`SELECT schema_name FROM app.tenants WHERE active ORDER BY
    /// signed_up`), in its order: the application's own list of tenants.
    ///
    /// # Errors
    ///
    /// A connection or query error, or a row whose first column is NULL.
    pub async fn schemas_from(pool: &Pool, query: &str) -> Result<Tenants> {
        let client = pool.get().await.map_err(pool_error)?;
        let answer = client
            .simple_query(query)
            .await
            .map_err(Error::postgres("list the tenant schemas"))?;
        let mut names = Vec::new();
        for (i, row) in rows(answer).iter().enumerate() {
            match column(row, 0) {
                Some(name) => names.push(name.to_owned()),
                None => {
                    return Err(Error::config(format!(
                        "the tenants' query gave NULL as the schema of row {}",
                        i + 1
                    )))
                }
            }
        }
        Ok(Tenants::schemas(pool, names))
    }

    /// The databases of the server `pool` connects to whose names match the
    /// `LIKE` pattern, in name order (templates and databases that refuse
    /// connections left out). See [`Tenants::databases`] for `connect`.
    ///
    /// # Errors
    ///
    /// A connection or query error.
    pub async fn databases_like(
        pool: &Pool,
        pattern: &str,
        connect: impl Fn(&str) -> Pool + Send + Sync + 'static,
    ) -> Result<Tenants> {
        let names = names_like(pool, DATABASES_LIKE, pattern, "databases").await?;
        Ok(Tenants::databases(names, connect))
    }

    /// The databases listed in a file, one name per line, in its order;
    /// blank lines and lines starting with `#` are skipped, spaces around
    /// a name trimmed.
    ///
    /// # Errors
    ///
    /// The file cannot be read.
    pub fn databases_from_file(
        path: &Path,
        connect: impl Fn(&str) -> Pool + Send + Sync + 'static,
    ) -> Result<Tenants> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config_caused(
                format!("cannot read the list of databases {}: {e}", path.display()),
                e,
            )
        })?;
        let names = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'));
        Ok(Tenants::databases(names, connect))
    }
}
