//! What a run knows of its session: read once it has work to do.

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::pg::error::{is_sqlstate, Error, Result};
use crate::pg::sql::{column, rows};

/// The session facts a run needs, read once it has work to do.
const SESSION_FACTS: &str =
    "pg_catalog.current_setting('server_version_num'), pg_catalog.current_setting('role'), \
     pg_catalog.current_setting('search_path'), current_user, pg_catalog.current_setting('application_name'), session_user, \
     pg_catalog.now() = pg_catalog.statement_timestamp()";

/// What a run that has work to do needs to know about its session, read
/// in one statement after the start-up found the history behind.
#[derive(Debug, Clone)]
pub(crate) struct SessionFacts {
    pub server_version_num: i32,
    pub role: String,
    pub search_path: String,
    pub user: String,
    pub application_name: String,
    pub session_user: String,
    /// Whether the session was outside a transaction block: a statement
    /// sent alone starts its own transaction then, at its own timestamp
    /// (inside a block begun earlier, `now()` is older).
    pub outside_transaction: bool,
}

/// The refusal of a run on a connection inside a transaction block.
pub(crate) fn inside_transaction_block() -> Error {
    Error::Config(
        "the connection is inside a transaction block: each migration commits on its own, \
         which would commit that transaction too; run on a connection outside one \
         (nothing was written)"
            .into(),
    )
}

/// Read the session facts, in one statement.
pub(crate) async fn session_facts(client: &Client) -> Result<SessionFacts> {
    let answer = client
        .simple_query(&format!("SELECT {SESSION_FACTS}"))
        .await
        .map_err(|e| {
            // A block that a failed statement (the start-up's, on a first
            // start) aborted: say why nothing can go on.
            if is_sqlstate(&e, &[SqlState::IN_FAILED_SQL_TRANSACTION]) {
                inside_transaction_block()
            } else {
                Error::postgres("read the session settings")(e)
            }
        })?;
    let rows = rows(answer);
    let row = rows
        .first()
        .ok_or_else(|| Error::Connect("the server returned no session settings".into()))?;
    let text = |i| column(row, i).unwrap_or_default().to_owned();
    Ok(SessionFacts {
        server_version_num: text(0).parse().unwrap_or_default(),
        role: text(1),
        search_path: text(2),
        user: text(3),
        application_name: text(4),
        session_user: text(5),
        outside_transaction: text(6) == "t",
    })
}
