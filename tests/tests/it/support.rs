//! Helpers shared by the integration tests.

use dbprep_runtime::testing::TestDatabase;

/// A fresh database; panics with the reason when no server can be had.
pub async fn database() -> TestDatabase {
    TestDatabase::new().await.unwrap_or_else(|e| panic!("{e}"))
}

/// The single value of a one-row, one-column query, as text.
pub async fn scalar(client: &tokio_postgres::Client, sql: &str) -> Option<String> {
    let messages = client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    messages.into_iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_owned)),
        _ => None,
    })?
}
