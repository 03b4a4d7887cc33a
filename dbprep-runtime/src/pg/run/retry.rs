//! Migrating a live database: a migration that waits for a lock must not
//! stall the application.
//!
//! An `ALTER TABLE users …` queued behind one long transaction holds its
//! `ACCESS EXCLUSIVE` request, and every query on `users` queues behind
//! *it*. So each transactional migration runs under a `lock_timeout`
//! (the run's, or its file's `-- dbprep:lock-timeout`); when it gives up
//! (`lock_not_available`, 55P03) its transaction is already rolled back
//! and the queue behind it drains. The run then waits, with a growing,
//! jittered backoff, and tries it and the rest of the batch again, up to a
//! number of retries, logging each retry with the sessions that likely
//! blocked it. What was applied before stays applied.
//!
//! No-transaction migrations get no `lock_timeout` from the run: `CREATE
//! INDEX CONCURRENTLY` waits for every older transaction through lock
//! waits, and a timeout there leaves an INVALID index and a dirty
//! migration. A file that wants one says so with the directive (it then
//! fails, dirty, rather than wait; no retry).

use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::batch::{Done, Session};
use super::lock::Jitter;
use super::migrator::{KnownBefore, Migrator};
use crate::pg::error::{Error, Result};
use crate::pg::sql::{column, rows};
use crate::pg::store::query_bool;

/// The first pause before a retry; each next one doubles, up to
/// [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(500);
const LONGEST_PAUSE: Duration = Duration::from_secs(15);

/// A session that holds table locks in a transaction older than the wait:
/// what likely blocked a migration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Blocker {
    /// Its backend's process id.
    pub pid: i32,
    /// Its `application_name`.
    pub application_name: String,
    /// `active`, `idle in transaction`, …
    pub state: String,
    /// How long its transaction has been open.
    #[serde(
        rename = "transaction_age_ms",
        serialize_with = "crate::pg::report::millis"
    )]
    pub transaction_age: Duration,
    /// Its current (or last) statement, shortened.
    pub query: String,
}

impl std::fmt::Display for Blocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} ({}, {}, transaction open {:?}): {}",
            self.pid,
            if self.application_name.is_empty() {
                "no application_name"
            } else {
                &self.application_name
            },
            self.state,
            self.transaction_age,
            self.query
        )
    }
}

/// One retry of a migration that could not take its locks in time.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LockRetry {
    /// The migration that gave up waiting.
    pub version: i64,
    /// Its file.
    pub file: String,
    /// Which retry this was (1 for the first).
    pub retry: u32,
    /// The pause before it.
    #[serde(rename = "pause_ms", serialize_with = "crate::pg::report::millis")]
    pub pause: Duration,
    /// The sessions that likely blocked it.
    pub blockers: Vec<Blocker>,
}

impl Migrator<'_> {
    /// [`apply`](Self::apply), tried again after a migration's
    /// `lock_timeout` ran out, at most `lock_retries` times; the first try
    /// with the history as known before the lock. The migrations applied by
    /// every try, and the retries.
    pub(super) async fn apply_with_retries(
        &self,
        session: &Session<'_>,
        retries: &mut Vec<LockRetry>,
        mut known_before: Option<KnownBefore>,
    ) -> Result<Vec<Done>> {
        let mut done: Vec<Done> = Vec::new();
        let mut pause = FIRST_PAUSE;
        let mut jitter = Jitter::new();
        loop {
            let failure = match self
                .apply(session, retries.is_empty(), known_before.take())
                .await
            {
                Ok(mut more) => {
                    done.append(&mut more);
                    return Ok(done);
                }
                Err(Error::Migration(failure))
                    if failure.code == Some(SqlState::LOCK_NOT_AVAILABLE)
                        && !failure.repeatable =>
                {
                    failure
                }
                Err(error) => return Err(error),
            };
            // A no-transaction migration that timed out is dirty, as after
            // any failure: no retry.
            if self
                .migrations
                .get(failure.version)
                .is_some_and(|m| m.no_transaction())
            {
                return Err(Error::Migration(failure));
            }
            let retry = retries
                .iter()
                .filter(|r| r.version == failure.version)
                .count() as u32
                + 1;
            // What committed before the failure stays applied.
            done.extend(failure.applied.iter().map(|&version| Done {
                version,
                elapsed: Duration::ZERO,
            }));
            let blockers = blockers(session.client, self.lock_timeout)
                .await
                .unwrap_or_default();
            if retry > self.lock_retries {
                return Err(Error::LockNotAvailable {
                    version: failure.version,
                    file: failure.file.clone(),
                    tries: retry,
                    blockers,
                    applied: done.iter().map(|d| d.version).collect(),
                });
            }
            let wait = jitter.spread(pause);
            tracing::warn!(
                "migration {} ({}) could not take its locks in time; retry {retry} of {} in {wait:?}; likely blocked by: {}",
                failure.version,
                failure.file,
                self.lock_retries,
                list(&blockers)
            );
            retries.push(LockRetry {
                version: failure.version,
                file: failure.file.clone(),
                retry,
                pause: wait,
                blockers,
            });
            tokio::time::sleep(wait).await;
            pause = (pause * 2).min(LONGEST_PAUSE);
        }
    }
}

/// The blockers as a message lists them.
pub(crate) fn list(blockers: &[Blocker]) -> String {
    if blockers.is_empty() {
        return "no session found (the blocker has finished)".to_owned();
    }
    blockers
        .iter()
        .map(Blocker::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The other sessions of this database that hold table locks in a
/// transaction open for longer than `older_than`: the ones a DDL statement
/// would queue behind (or, before a batch, will). Their queries read as
/// `<insufficient privilege>` for a role without `pg_read_all_stats`.
///
/// It runs before every batch and usually finds nobody. So it first asks
/// only whether any other session of the server has a transaction that
/// old, through the per-backend functions that return one value each: a
/// new session parses those much faster than the records of 30 and 16
/// columns that `pg_stat_get_activity` and `pg_lock_status` return. Only
/// when one has are those two asked, as functions rather than through the
/// views (which join the role and database catalogs for columns not needed
/// here), and the query is tidied here rather than by a regular expression
/// on the server.
pub(crate) async fn blockers(client: &Client, older_than: Duration) -> Result<Vec<Blocker>> {
    let age = format!(
        "pg_catalog.make_interval(secs => {})",
        older_than.as_secs_f64()
    );
    let any_old = format!(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_stat_get_backend_idset() AS b \
         WHERE pg_catalog.pg_stat_get_backend_xact_start(b) < pg_catalog.clock_timestamp() - {age} \
         AND pg_catalog.pg_stat_get_backend_pid(b) <> pg_catalog.pg_backend_pid())"
    );
    if !query_bool(client, &any_old, "look for long transactions").await? {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT a.pid, a.application_name, a.state, \
         (pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() - a.xact_start) * 1000)::pg_catalog.int8, a.query \
         FROM pg_catalog.pg_stat_get_activity(NULL) AS a \
         WHERE a.datid = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()) \
         AND a.pid <> pg_catalog.pg_backend_pid() \
         AND a.xact_start < pg_catalog.clock_timestamp() - {age} \
         AND a.pid IN (SELECT l.pid FROM pg_catalog.pg_lock_status() AS l WHERE l.granted AND l.locktype = 'relation') \
         ORDER BY a.xact_start"
    );
    let answer = client
        .simple_query(&sql)
        .await
        .map_err(Error::postgres("look for the sessions that hold locks"))?;
    Ok(rows(answer)
        .iter()
        .map(|row| {
            let text = |i| column(row, i).unwrap_or_default().to_owned();
            Blocker {
                pid: text(0).parse().unwrap_or(0),
                application_name: text(1),
                state: text(2),
                transaction_age: Duration::from_millis(text(3).parse().unwrap_or(0)),
                query: one_line(&text(4), 200),
            }
        })
        .collect())
}

/// `text` on one line (each run of white space one space, no final `;`),
/// cut after `chars` characters.
fn one_line(text: &str, chars: usize) -> String {
    // The blockers are listed with `; ` between them and after them.
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .trim_end_matches(|c: char| c == ';' || c.is_whitespace())
        .chars()
        .take(chars)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn a_query_is_shown_on_one_line_and_cut() {
        assert_eq!(
            one_line("  SELECT *\n\tFROM   t\n WHERE x", 200),
            "SELECT * FROM t WHERE x"
        );
        assert_eq!(
            one_line("BEGIN; SELECT 1; COMMIT; ", 200),
            "BEGIN; SELECT 1; COMMIT"
        );
        assert_eq!(one_line("SELECT ünïcode", 8), "SELECT ü");
    }
}
