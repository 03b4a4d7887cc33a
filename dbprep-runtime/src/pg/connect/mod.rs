//! Connecting: waiting for a server that is still starting, and creating
//! the database if it is missing.

pub mod config;
#[cfg(feature = "tls")]
pub mod tls;

use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, NoTls, Socket};

use tokio_postgres::error::SqlState;

use crate::pg::error::{describe, is_sqlstate, Error, Result};
use crate::pg::sql::ident;

/// SQLSTATEs that mean "try again shortly": the server is starting up,
/// shutting down, or out of connection slots.
const TRANSIENT: &[SqlState] = &[
    SqlState::CANNOT_CONNECT_NOW,
    SqlState::TOO_MANY_CONNECTIONS,
    SqlState::ADMIN_SHUTDOWN,
];

/// SQLSTATEs of a `CREATE DATABASE` that lost a race with another: the
/// database exists (two creations at once can also collide in the
/// catalog's unique index).
pub(crate) const DATABASE_EXISTS: &[SqlState] =
    &[SqlState::DUPLICATE_DATABASE, SqlState::UNIQUE_VIOLATION];

/// Connect with `config`, retrying with a bounded backoff while the server
/// is unreachable or still starting, for at most `patience`. Authentication
/// errors and a missing database are not retried.
///
/// The connection is driven on the current tokio runtime.
///
/// # Errors
///
/// [`Error::Connect`] with the last reason once `patience` is spent (the
/// message never holds the password).
pub async fn connect(config: &Config, patience: Duration) -> Result<Client> {
    connect_with(config, NoTls, patience).await
}

/// [`connect`] through a TLS connector (e.g. from
/// [`Tls::connector`](crate::pg::connect::tls::Tls::connector), feature `tls`).
///
/// # Errors
///
/// As [`connect`].
pub async fn connect_with<T>(config: &Config, tls: T, patience: Duration) -> Result<Client>
where
    T: MakeTlsConnect<Socket> + Clone,
    T::Stream: Send + 'static,
{
    let started = Instant::now();
    let mut delay = Duration::from_millis(50);
    loop {
        match config.connect(tls.clone()).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                return Ok(client);
            }
            Err(e) => {
                let transient = match e.code() {
                    Some(code) => TRANSIENT.contains(code),
                    // No SQLSTATE: the server could not be reached at all.
                    None => e.as_db_error().is_none(),
                };
                if !transient || started.elapsed() + delay > patience {
                    return Err(Error::Connect(format!(
                        "{e} (after {:?})",
                        started.elapsed()
                    )));
                }
                tracing::info!(
                    "database not reachable yet ({}); retrying in {delay:?}",
                    describe(&e)
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Create the database `config` names if it does not exist, connecting to
/// the `postgres` maintenance database of the same server with the same
/// credentials. Returns whether it was created. A concurrent creator
/// (SQLSTATE 42P04, or 23505 from the catalog's unique index) counts as
/// success.
///
/// # Errors
///
/// A connection error, or a refusal (e.g. the role may not create
/// databases: the message says so).
pub async fn ensure_database(config: &Config) -> Result<bool> {
    ensure_database_with(config, NoTls).await
}

/// [`ensure_database`] through a TLS connector.
///
/// # Errors
///
/// As [`ensure_database`].
pub async fn ensure_database_with<T>(config: &Config, tls: T) -> Result<bool>
where
    T: MakeTlsConnect<Socket> + Clone,
    T::Stream: Send + 'static,
{
    let name = config
        .get_dbname()
        .map(str::to_owned)
        .or_else(|| config.get_user().map(str::to_owned))
        .ok_or_else(|| Error::Connect("no database name in the configuration".into()))?;
    let mut admin = config.clone();
    admin.dbname("postgres");
    let client = connect_with(&admin, tls, Duration::from_secs(30)).await?;
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .map_err(Error::postgres("look for the database"))?
        .is_some();
    if exists {
        return Ok(false);
    }
    match client
        .batch_execute(&format!("CREATE DATABASE {}", ident(&name)))
        .await
    {
        Ok(()) => {
            tracing::info!("created database {name}");
            Ok(true)
        }
        Err(e) if is_sqlstate(&e, DATABASE_EXISTS) => Ok(false),
        Err(e) => Err(Error::postgres(format!("create database {name}"))(e)),
    }
}

/// A deadpool-postgres pool on `config` with at most `max_size`
/// connections (no TLS), recycled with the fast method.
pub fn pool(config: Config, max_size: usize) -> Pool {
    pool_with(config, NoTls, max_size)
}

/// [`pool`] through a TLS connector.
pub fn pool_with<T>(config: Config, tls: T, max_size: usize) -> Pool
where
    T: MakeTlsConnect<Socket> + Clone + Sync + Send + 'static,
    T::Stream: Sync + Send,
    T::TlsConnect: Sync + Send,
    <T::TlsConnect as tokio_postgres::tls::TlsConnect<Socket>>::Future: Send,
{
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .build()
        .expect("a pool without a runtime-specific timeout always builds")
}

/// A pool's failure to hand out a connection, as dbprep says it: the
/// server's refusal with its message and SQLSTATE, or the pool's reason.
pub(crate) fn pool_error(error: deadpool_postgres::PoolError) -> Error {
    match error {
        deadpool_postgres::PoolError::Backend(e) => Error::Connect(describe(&e)),
        other => Error::Connect(other.to_string()),
    }
}
