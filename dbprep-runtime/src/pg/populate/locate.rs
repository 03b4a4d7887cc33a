//! Finding the row, and the column, behind a statement the server refused.

use tokio_postgres::Client;

use super::encode::{json_rows, push_object};
use super::{insert_sql, Columns, Conflict, Refuse};
use crate::model::fixture::FixtureTable;
use crate::pg::error::Error;
use crate::pg::sql::ident;

/// Find the row (and, for a conversion error, the column) behind a failed
/// statement, by trying its rows one at a time under a savepoint.
#[allow(clippy::too_many_arguments)]
pub(super) async fn locate(
    client: &Client,
    columns: &Columns,
    table: &FixtureTable<'_>,
    indices: &[usize],
    keys: &[String],
    conflict: Conflict,
    error: tokio_postgres::Error,
    refuse: &Refuse<'_>,
) -> Error {
    let sql = insert_sql(columns, keys, conflict);
    let message = |e: &tokio_postgres::Error| crate::pg::error::describe(e);
    for &i in indices {
        let row = &table.rows[i];
        let json = json_rows(&table.rows, &[i]);
        let _ = client.batch_execute("SAVEPOINT dbprep_row").await;
        let result = client.execute(&sql, &[&json]).await;
        let _ = client
            .batch_execute("ROLLBACK TO SAVEPOINT dbprep_row")
            .await;
        let Err(row_error) = result else { continue };
        // A value that does not convert: try each one alone.
        for (column, value) in row {
            let mut one = String::from("[");
            push_object(&mut one, std::iter::once((column.as_ref(), *value)));
            one.push(']');
            let probe = format!(
                "SELECT {} FROM pg_catalog.json_populate_recordset(NULL::{}, $1::text::json)",
                ident(column),
                columns.quoted
            );
            let _ = client.batch_execute("SAVEPOINT dbprep_value").await;
            let converted = client.execute(&probe, &[&one]).await;
            let _ = client
                .batch_execute("ROLLBACK TO SAVEPOINT dbprep_value")
                .await;
            if let Err(e) = converted {
                return refuse.at(table, Some(i), Some(column), Some(*value), message(&e));
            }
        }
        // A constraint: the server may name the column.
        let column = row_error
            .as_db_error()
            .and_then(|d| d.column())
            .map(str::to_owned);
        let value = column
            .as_ref()
            .and_then(|c| row.iter().find(|(k, _)| k == c).map(|(_, v)| *v));
        return refuse.at(
            table,
            Some(i),
            column.as_deref(),
            value,
            message(&row_error),
        );
    }
    // Every row passes alone: the rows conflict with each other.
    refuse.at(table, None, None, None, message(&error))
}
