//! The migration lock: a session-level advisory lock on the run's own
//! connection, keyed from the history table's name.
//!
//! **A waiter never waits inside a statement.** It polls
//! `pg_try_advisory_lock`, each try a statement of its own that ends at
//! once, and sleeps on the client between tries. A statement that blocks
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
//! run past the configured wait.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_postgres::Client;

use super::error::{Error, LockHolder, Result};
use super::sql::{column, rows};

/// The first sleep between two tries.
const FIRST_SLEEP: Duration = Duration::from_millis(5);

/// The longest sleep between two tries: a waiter notices a released lock
/// this late at worst.
const LONGEST_SLEEP: Duration = Duration::from_millis(250);

/// How a lock was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LockWait {
    /// How many times `pg_try_advisory_lock` was sent (1: the lock was free).
    pub tries: u32,
    /// How long the run waited for it.
    pub waited: Duration,
}

/// Take the lock, waiting at most `wait`.
pub(crate) async fn acquire(client: &Client, key: i64, wait: Duration) -> Result<LockWait> {
    let started = Instant::now();
    let mut sleep = FIRST_SLEEP;
    let mut tries = 0;
    let mut holder = None;
    let mut jitter = Jitter::new();
    loop {
        tries += 1;
        if try_lock(client, key).await? {
            let taken = LockWait {
                tries,
                waited: started.elapsed(),
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
            holder = self::holder(client, key).await?;
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
            let now = self::holder(client, key).await.ok().flatten();
            return Err(Error::LockTimeout {
                waited: started.elapsed(),
                holder: now.or(holder),
            });
        }
        tokio::time::sleep(jitter.spread(sleep).min(left)).await;
        sleep = (sleep * 2).min(LONGEST_SLEEP);
    }
}

/// One try: whether the lock was free (and is now this session's).
async fn try_lock(client: &Client, key: i64) -> Result<bool> {
    let answer = client
        .simple_query(&format!("SELECT pg_catalog.pg_try_advisory_lock({key})"))
        .await
        .map_err(Error::postgres("try the migration lock"))?;
    Ok(rows(answer).first().and_then(|r| column(r, 0)) == Some("t"))
}

/// Release the lock.
pub(crate) async fn release(client: &Client, key: i64) -> Result<()> {
    client
        .simple_query(&release_sql(key))
        .await
        .map_err(Error::postgres("release the migration lock"))?;
    Ok(())
}

/// The statement that releases the lock.
pub(crate) fn release_sql(key: i64) -> String {
    format!("SELECT pg_catalog.pg_advisory_unlock({key});")
}

/// The session holding the lock, from `pg_locks` and `pg_stat_activity`.
pub(crate) async fn holder(client: &Client, key: i64) -> Result<Option<LockHolder>> {
    // A bigint key is stored as classid (high 32 bits), objid (low 32 bits)
    // and objsubid 1.
    let (high, low) = ((key as u64 >> 32) as u32, key as u64 as u32);
    let sql = format!(
        "SELECT a.pid, a.application_name, a.query_start FROM pg_catalog.pg_locks l \
         JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.classid = {high} AND l.objid = {low} AND l.objsubid = 1 \
         AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())"
    );
    let answer = client
        .simple_query(&sql)
        .await
        .map_err(Error::postgres("find the lock holder"))?;
    Ok(rows(answer).first().map(|row| LockHolder {
        pid: column(row, 0)
            .and_then(|p| p.parse().ok())
            .unwrap_or_default(),
        application_name: column(row, 1).unwrap_or_default().to_owned(),
        query_start: column(row, 2).map(str::to_owned),
    }))
}

/// A small pseudo-random spread of the sleeps (xorshift, seeded from the
/// clock and the process id): replicas released together must not retry
/// in step, and no more than that is needed of it.
struct Jitter(u64);

impl Jitter {
    fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        Jitter(u64::from(nanos) << 20 ^ u64::from(std::process::id()) | 1)
    }

    /// `sleep` scaled by a factor between 0.5 and 1.5.
    fn spread(&mut self, sleep: Duration) -> Duration {
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
}
