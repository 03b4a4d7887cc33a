//! The migration lock: only one migrator of a history at a time.
//!
//! Two ways to hold it, chosen by [`LockMode`]:
//!
//! - **Session** (the default): a session-level advisory lock on the run's
//!   own connection, keyed from the history table's name. The server
//!   releases it when that connection ends, whatever happened to the
//!   client.
//! - **Transaction**, for a connection through a pooler in transaction
//!   mode (PgBouncer's `pool_mode = transaction`), where consecutive
//!   transactions may run on different server connections: a session lock
//!   would stay on whichever server connection took it, and the unlock
//!   would go to another. The lock is a *lease*, one row in
//!   `<history>_lock` naming the run and when its lease ends. The run
//!   renews it in every transaction it commits (each migration's message
//!   starts by renewing it, and so keeps the row locked until it commits),
//!   and its history inserts fail unless the row still names it: a run
//!   that lost its lease cannot record anything. A peer takes over an
//!   expired lease only when no statement tagged with the holder's run is
//!   active on the server: a long `CREATE INDEX CONCURRENTLY` runs outside
//!   any transaction and cannot renew, but is plainly alive. (The batch in
//!   this mode is described in `run/batch.rs`.)
//!
//! **A waiter never waits inside a statement.** It polls, each try a
//! statement (or a short transaction) of its own that ends at once, and
//! sleeps on the client between tries. A statement that blocks
//! (`pg_advisory_lock`, even under `lock_timeout`) holds a snapshot for as
//! long as it waits, and `CREATE INDEX CONCURRENTLY` in the holder waits
//! for every snapshot older than its own to go away: the holder waits for
//! the waiter, the waiter for the holder's lock, and the server breaks the
//! cycle by killing one of them — sometimes the index build, which leaves
//! an INVALID index and a dirty migration behind. Idle between tries, a
//! waiter holds no snapshot and no transaction.
//!
//! The sleeps grow from a few milliseconds to a bounded ceiling, with
//! jitter so that replicas started together do not try in step, and never
//! run past the configured wait. A run that waits also looks, between
//! tries, whether the holder has done its work for it (the history's digest
//! is one the run would leave): then it ends without ever taking the lock,
//! and replicas that arrive together do not each hold it in turn only to
//! find nothing to do.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::pg::error::{is_sqlstate, Error, Result};
use crate::pg::report::LockHolder;
pub use crate::pg::report::LockWait;
use crate::pg::sql::{column, rows};
use crate::pg::store::digest::HistoryDigest;
use crate::pg::store::{lease, relation_exists, HistoryTable};

/// The first sleep between two tries.
const FIRST_SLEEP: Duration = Duration::from_millis(5);

/// The longest sleep between two tries: a waiter notices a released lock
/// this late at worst.
const LONGEST_SLEEP: Duration = Duration::from_millis(100);

/// How migrators of one database keep out of each other's way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LockMode {
    /// A session-level advisory lock on the run's connection, released by
    /// the server when the connection ends. For a direct connection, or a
    /// pooler in session mode.
    #[default]
    Session,
    /// A lease row renewed by every transaction of the run, and only
    /// transaction-scoped settings. For a pooler in transaction mode
    /// (PgBouncer's `pool_mode = transaction`), where session locks and
    /// session settings do not survive from one transaction to the next.
    /// Every migrator of a database must use the same mode.
    Transaction,
}

impl std::str::FromStr for LockMode {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "session" => Ok(LockMode::Session),
            "transaction" => Ok(LockMode::Transaction),
            other => Err(Error::config(format!(
                "unknown lock mode {other:?}: `session` (a direct connection, or a pooler in session mode) or `transaction` (a pooler in transaction mode)"
            ))),
        }
    }
}

/// The lock of one history, as one run takes it.
#[derive(Debug, Clone)]
pub(crate) struct MigrationLock {
    mode: LockMode,
    /// The advisory-lock key (session mode).
    key: i64,
    /// The history it guards, beside which the lease lives.
    history: HistoryTable,
    /// The run taking the lock.
    run_id: String,
    /// How the run names itself to peers that wait.
    label: String,
}

impl MigrationLock {
    /// The lock of `history`, taken in `mode` by the run `run_id`, which
    /// calls itself `label` (its `application_name`).
    pub(crate) fn new(history: &HistoryTable, mode: LockMode, run_id: &str, label: &str) -> Self {
        MigrationLock {
            mode,
            key: history.lock_key(),
            history: history.clone(),
            run_id: run_id.to_owned(),
            label: label.to_owned(),
        }
    }

    /// The mode.
    pub(crate) fn mode(&self) -> LockMode {
        self.mode
    }

    /// The run taking the lock.
    pub(crate) fn run_id(&self) -> &str {
        &self.run_id
    }

    /// How the run names itself (its `application_name` while it holds
    /// the lock).
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// Take the lock, waiting at most `wait`.
    pub(crate) async fn acquire(&self, client: &Client, wait: Duration) -> Result<LockWait> {
        self.acquire_unless_done(client, wait, &[]).await
    }

    /// Take the lock, waiting at most `wait`, unless the history's digest
    /// becomes one of `done` while the run waits: a peer applied what the
    /// run came to apply ([`LockWait::done_by_peer`], the lock not taken).
    pub(crate) async fn acquire_unless_done(
        &self,
        client: &Client,
        wait: Duration,
        done: &[HistoryDigest],
    ) -> Result<LockWait> {
        if self.mode == LockMode::Transaction {
            self.ensure_lease_table(client).await?;
        }
        let started = Instant::now();
        let mut sleep = FIRST_SLEEP;
        let mut tries = 0;
        let mut holder = None;
        let mut jitter = Jitter::new();
        loop {
            if tries > 0
                && !done.is_empty()
                && self
                    .history
                    .digest(client)
                    .await?
                    .is_some_and(|d| done.contains(&d))
            {
                tracing::info!(
                    "another migrator applied the migrations while this run waited ({:?})",
                    started.elapsed()
                );
                return Ok(LockWait {
                    tries,
                    waited: started.elapsed(),
                    done_by_peer: true,
                });
            }
            tries += 1;
            if self.try_once(client).await? {
                let taken = LockWait {
                    tries,
                    waited: started.elapsed(),
                    done_by_peer: false,
                };
                if tries > 1 {
                    tracing::info!(
                        "took the migration lock after {:?} ({tries} tries)",
                        taken.waited
                    );
                }
                return Ok(taken);
            }
            if tries == 1 {
                holder = self.holder(client).await?;
                match &holder {
                    Some(h) => {
                        tracing::info!("waiting up to {wait:?} for the migration lock, held by {h}")
                    }
                    None => tracing::info!("waiting up to {wait:?} for the migration lock"),
                }
            }
            let left = wait.saturating_sub(started.elapsed());
            if left.is_zero() {
                // Name whoever holds it now (the first holder may be gone and
                // another have taken it), else the one seen first.
                let now = self.holder(client).await.ok().flatten();
                return Err(Error::LockTimeout {
                    waited: started.elapsed(),
                    holder: now.or(holder),
                });
            }
            tokio::time::sleep(jitter.spread(sleep).min(left)).await;
            sleep = (sleep * 2).min(LONGEST_SLEEP);
        }
    }

    /// One try: whether the lock was free (and is now this run's).
    async fn try_once(&self, client: &Client) -> Result<bool> {
        let sql = match self.mode {
            LockMode::Session => format!("SELECT pg_catalog.pg_try_advisory_lock({})", self.key),
            LockMode::Transaction => self.history.take_lease_sql(&self.run_id, &self.label),
        };
        match client.simple_query(&sql).await {
            Ok(answer) => Ok(rows(answer).first().and_then(|r| column(r, 0)) == Some("t")),
            // The holder's migration has the lease row locked: it is alive.
            Err(e) if is_sqlstate(&e, &[SqlState::LOCK_NOT_AVAILABLE]) => {
                client
                    .simple_query("ROLLBACK")
                    .await
                    .map_err(Error::postgres("end a try for the migration lock"))?;
                Ok(false)
            }
            Err(e) => Err(Error::postgres("try the migration lock")(e)),
        }
    }

    /// Create the lease table when it is missing. Peers may create it at
    /// the same moment: the loser's unique violation means it exists.
    async fn ensure_lease_table(&self, client: &Client) -> Result<()> {
        let lease_table = self.history.lease_table();
        if relation_exists(client, &lease_table).await? {
            return Ok(());
        }
        let create_schema = !self.history.schema_exists(client).await?;
        match client
            .simple_query(&self.history.create_lease_sql(create_schema))
            .await
        {
            Ok(_) => Ok(()),
            // Made by a peer in the meantime: a unique violation in the
            // catalog, or "relation" or "type" already exists.
            Err(e)
                if is_sqlstate(
                    &e,
                    &[
                        SqlState::UNIQUE_VIOLATION,
                        SqlState::DUPLICATE_TABLE,
                        SqlState::DUPLICATE_OBJECT,
                    ],
                ) =>
            {
                client
                    .simple_query("ROLLBACK")
                    .await
                    .map_err(Error::postgres("create the lock table"))?;
                Ok(())
            }
            Err(e) => {
                let _ = client.simple_query("ROLLBACK").await;
                Err(Error::postgres(format!(
                    "create the lock table {lease_table}"
                ))(e))
            }
        }
    }

    /// The statement that releases the lock.
    pub(crate) fn release_sql(&self) -> String {
        match self.mode {
            LockMode::Session => format!("SELECT pg_catalog.pg_advisory_unlock({});", self.key),
            LockMode::Transaction => self.history.release_lease_sql(&self.run_id),
        }
    }

    /// Release the lock.
    pub(crate) async fn release(&self, client: &Client) -> Result<()> {
        client
            .simple_query(&self.release_sql())
            .await
            .map_err(Error::postgres("release the migration lock"))?;
        Ok(())
    }

    /// Transaction mode: the statement, inside a transaction, that renews
    /// the lease and keeps its row locked until that transaction ends (a
    /// peer cannot take it over meanwhile). Nothing in session mode.
    pub(crate) fn renew_sql(&self) -> String {
        match self.mode {
            LockMode::Session => String::new(),
            LockMode::Transaction => self.history.renew_lease_sql(&self.run_id),
        }
    }

    /// Transaction mode: a condition that holds while the lease is this
    /// run's, for the history insert's guard. `true` in session mode (the
    /// session lock cannot be lost while the session lives).
    pub(crate) fn held_condition(&self) -> String {
        match self.mode {
            LockMode::Session => "true".to_owned(),
            LockMode::Transaction => self.history.lease_held_sql(&self.run_id),
        }
    }

    /// A comment that marks a statement as this run's, so that a peer
    /// sees in `pg_stat_activity` that a holder whose lease ran out is
    /// still running it (transaction mode; empty in session mode).
    pub(crate) fn tag(&self) -> String {
        match self.mode {
            LockMode::Session => String::new(),
            LockMode::Transaction => lease::tag(&self.run_id),
        }
    }

    /// Who holds the lock.
    pub(crate) async fn holder(&self, client: &Client) -> Result<Option<LockHolder>> {
        match self.mode {
            LockMode::Session => session_holder(client, self.key).await,
            LockMode::Transaction => lease_holder(client, &self.history).await,
        }
    }
}

/// Who runs a migration of `history` now, in either mode: the session
/// holding its advisory lock, else the run holding a live lease.
pub(crate) async fn holder(client: &Client, history: &HistoryTable) -> Result<Option<LockHolder>> {
    if let Some(holder) = session_holder(client, history.lock_key()).await? {
        return Ok(Some(holder));
    }
    lease_holder(client, history).await
}

/// The session holding the advisory lock, from `pg_locks` and
/// `pg_stat_activity`.
async fn session_holder(client: &Client, key: i64) -> Result<Option<LockHolder>> {
    // A bigint key is stored as classid (high 32 bits), objid (low 32 bits)
    // and objsubid 1. Advisory locks belong to a database: the same key in
    // another database is another history's.
    let (high, low) = ((key as u64 >> 32) as u32, key as u64 as u32);
    let sql = format!(
        "SELECT a.pid, a.application_name, a.query_start::text \
         FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.classid = {high} AND l.objid = {low} AND l.objsubid = 1 \
         AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()) \
         LIMIT 1"
    );
    holder_from(client, &sql).await
}

/// The run holding a lease that has not run out (or whose statement is
/// still active), from the lease table if there is one.
async fn lease_holder(client: &Client, history: &HistoryTable) -> Result<Option<LockHolder>> {
    if !relation_exists(client, &history.lease_table()).await? {
        return Ok(None);
    }
    holder_from(client, &history.lease_holder_sql()).await
}

/// The holder a query of (pid, application name, since) answers, if any.
async fn holder_from(client: &Client, sql: &str) -> Result<Option<LockHolder>> {
    let answer = client
        .simple_query(sql)
        .await
        .map_err(Error::postgres("look up the lock holder"))?;
    Ok(rows(answer).first().map(|row| LockHolder {
        pid: column(row, 0).and_then(|p| p.parse().ok()).unwrap_or(0),
        application_name: column(row, 1).unwrap_or_default().to_owned(),
        query_start: column(row, 2).map(str::to_owned),
    }))
}

/// A small pseudo-random spread of the sleeps (xorshift, seeded from the
/// clock and the process id): replicas released together must not retry
/// in step, and no more than that is needed of it.
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        Jitter(u64::from(nanos) << 20 ^ u64::from(std::process::id()) | 1)
    }

    /// `sleep` scaled by a factor between 0.5 and 1.5.
    pub(crate) fn spread(&mut self, sleep: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let permille = 500 + self.0 % 1001;
        sleep * permille as u32 / 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_and_one_and_a_half_of_the_sleep() {
        let mut jitter = Jitter::new();
        let spread: Vec<Duration> = (0..1000)
            .map(|_| jitter.spread(Duration::from_millis(100)))
            .collect();
        assert!(spread.iter().all(|d| *d >= Duration::from_millis(50)));
        assert!(spread.iter().all(|d| *d <= Duration::from_millis(150)));
        // Not one value: the point is that peers differ.
        assert!(spread.iter().any(|d| *d != spread[0]));
    }

    #[test]
    fn lock_modes_parse_and_an_unknown_one_is_named() {
        assert_eq!("session".parse::<LockMode>().unwrap(), LockMode::Session);
        assert_eq!(
            "transaction".parse::<LockMode>().unwrap(),
            LockMode::Transaction
        );
        let error = "pooled".parse::<LockMode>().unwrap_err().to_string();
        assert!(error.contains("\"pooled\""), "{error}");
    }
}
