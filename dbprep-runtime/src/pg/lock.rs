//! The migration lock: a session-level advisory lock on the run's own
//! connection, keyed from the history table's name.
//!
//! First `pg_try_advisory_lock`; when another session holds it, log the
//! holder, then wait with the blocking `pg_advisory_lock` under
//! `lock_timeout`, so the server itself gives up (SQLSTATE 55P03) when the
//! configured wait is over. A client-side timeout would leave the request
//! queued: the server would still grant the lock later.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::error::{Error, LockHolder, Result};
use super::sql::{column, literal, rows};

/// Take the lock, waiting at most `wait`.
pub(crate) async fn acquire(client: &Client, key: i64, wait: Duration) -> Result<()> {
    let answer = client
        .simple_query(&format!("SELECT pg_catalog.pg_try_advisory_lock({key})"))
        .await
        .map_err(Error::postgres("try the migration lock"))?;
    if rows(answer).first().and_then(|r| column(r, 0)) == Some("t") {
        return Ok(());
    }
    let holder = holder(client, key).await?;
    match &holder {
        Some(h) => tracing::info!("waiting up to {wait:?} for the migration lock, held by {h}"),
        None => tracing::info!("waiting up to {wait:?} for the migration lock"),
    }
    let started = Instant::now();
    // lock_timeout 0 means "wait forever": keep at least one millisecond.
    let ms = wait.as_millis().clamp(1, i32::MAX as u128);
    let sql = format!(
        "SELECT pg_catalog.set_config('lock_timeout', {}, false); SELECT pg_catalog.pg_advisory_lock({key}); SELECT pg_catalog.set_config('lock_timeout', '0', false)",
        literal(&format!("{ms}ms"))
    );
    match client.simple_query(&sql).await {
        Ok(_) => {
            tracing::info!("took the migration lock after {:?}", started.elapsed());
            Ok(())
        }
        Err(e) if e.code().is_some_and(|c| c.code() == "55P03") => {
            // The failed statement ran in its own implicit transaction; the
            // session is usable, but lock_timeout is still set: reset it.
            let _ = client
                .simple_query("SELECT pg_catalog.set_config('lock_timeout', '0', false)")
                .await;
            let holder = match holder {
                Some(h) => Some(h),
                None => self::holder(client, key).await.ok().flatten(),
            };
            Err(Error::LockTimeout {
                waited: started.elapsed(),
                holder,
            })
        }
        Err(e) => Err(Error::postgres("wait for the migration lock")(e)),
    }
}

/// Release the lock.
pub(crate) async fn release(client: &Client, key: i64) -> Result<()> {
    client
        .simple_query(&format!("SELECT pg_catalog.pg_advisory_unlock({key})"))
        .await
        .map_err(Error::postgres("release the migration lock"))?;
    Ok(())
}

/// The session holding the lock, from `pg_locks` and `pg_stat_activity`.
async fn holder(client: &Client, key: i64) -> Result<Option<LockHolder>> {
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
