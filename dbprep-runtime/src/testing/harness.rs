//! What `#[dbprep_macros::test]` expands to: a runtime, a migrated
//! database, the test, and the database kept when the test fails.

use std::future::Future;

use deadpool_postgres::Pool;

use super::template::migrated;
use crate::model::fixture::Fixtures;
use crate::model::migration::Migrations;

/// What a test returns, as far as keeping its database goes: `()`, or a
/// `Result` whose `Err` fails the test.
pub trait TestOutcome {
    /// Whether the test failed.
    fn failed(&self) -> bool;
}

impl TestOutcome for () {
    fn failed(&self) -> bool {
        false
    }
}

impl<T, E> TestOutcome for Result<T, E> {
    fn failed(&self) -> bool {
        self.is_err()
    }
}

/// Run `test` on a runtime of its own with the pool of a new database that
/// has `migrations` applied and every fixture of `fixtures` loaded, in
/// order ([`migrated`]). The database is dropped when the test passes and
/// kept, with a `psql` command to open it, when it panics or returns an
/// `Err`.
///
/// # Panics
///
/// When no database can be had: no server, or a migration or fixture that
/// fails (the message says which).
pub fn run_migrated<F, Fut>(migrations: &Migrations, fixtures: &Fixtures, test: F) -> Fut::Output
where
    F: FnOnce(Pool) -> Fut,
    Fut: Future,
    Fut::Output: TestOutcome,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot start a runtime for the test: {e}"));
    runtime.block_on(async {
        let chosen: Vec<_> = fixtures.iter().collect();
        let db = migrated(migrations, &chosen)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let outcome = test(db.pool().clone()).await;
        if outcome.failed() {
            db.keep();
        }
        outcome
    })
}
