//! Connecting: waiting for a server that is still starting, and creating
//! the database if it is missing.

pub mod config;
mod files;
mod passfile;
mod service;
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
    try_connect(config, tls, patience).await.map_err(|e| {
        if transient(&e) {
            Error::connect(
                format!(
                    "{} (gave up after waiting {:.1?} for the server)",
                    connect_failure(&e),
                    started.elapsed()
                ),
                Some(e),
            )
        } else {
            Error::connect(connect_failure(&e), Some(e))
        }
    })
}

/// Wait at most `patience` for the server of `config` to accept
/// connections (see [`connect`]); a database that does not exist yet
/// counts as a server that is up (`oneshot` creates it).
///
/// # Errors
///
/// As [`connect`].
pub async fn wait_for_server<T>(config: &Config, tls: T, patience: Duration) -> Result<()>
where
    T: MakeTlsConnect<Socket> + Clone,
    T::Stream: Send + 'static,
{
    match connect_with(config, tls.clone(), patience).await {
        Ok(_) => Ok(()),
        Err(error) => {
            // Asked again for its SQLSTATE: the server is up and answered.
            match config.connect(tls).await {
                Err(e) if is_sqlstate(&e, &[SqlState::INVALID_CATALOG_NAME]) => Ok(()),
                _ => Err(error),
            }
        }
    }
}

/// Connect, retrying what waiting can fix with a bounded backoff for at
/// most `patience`: the last driver error otherwise.
async fn try_connect<T>(
    config: &Config,
    tls: T,
    patience: Duration,
) -> std::result::Result<Client, tokio_postgres::Error>
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
            Err(e) if !transient(&e) || started.elapsed() + delay > patience => return Err(e),
            Err(e) => {
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

/// Whether waiting can fix a failed connection: the server could not be
/// reached (refused, reset, timed out: it may be starting), or it said it
/// is starting, stopping or full. A refused password, a missing one, an
/// unknown database or role and a bad setting cannot be waited out.
fn transient(error: &tokio_postgres::Error) -> bool {
    if let Some(code) = error.code() {
        return TRANSIENT.contains(code);
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    error.to_string().starts_with("timeout")
}

/// A failed connection as a person needs it: the server's message and
/// SQLSTATE, or the driver's reason with its cause; a missing password
/// says where one may come from. Never the password itself.
pub(crate) fn connect_failure(error: &tokio_postgres::Error) -> String {
    let text = describe(error);
    if text.contains("password missing") {
        return "the server asks for a password and none was given: put it in the URL (DATABASE_URL or --url), in the service file's entry (password=), in PGPASSWORD, in a file given with --password-file, or in the password file (PGPASSFILE, else ~/.pgpass, mode 0600)".to_owned();
    }
    if error.code() == Some(&SqlState::INVALID_CATALOG_NAME) {
        return format!(
            "{text}; create it first: `create-database`, or `oneshot`, which creates it and migrates (in code, `ensure_database`)"
        );
    }
    text
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
        .ok_or_else(|| Error::connect("no database name in the configuration".into(), None))?;
    let mut admin = config.clone();
    admin.dbname("postgres");
    // One attempt: waiting for a server is asked for (`connect`'s
    // patience, the CLI's --wait), never imposed.
    let client = connect_with(&admin, tls, Duration::ZERO).await?;
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

/// A TLS connector a pool can use (what deadpool-postgres asks of one):
/// `NoTls`, or the `tls` feature's rustls connector. Every connector that
/// meets the bounds is one.
pub trait PoolTls:
    MakeTlsConnect<
        Socket,
        Stream: Sync + Send,
        TlsConnect: Sync + Send + tokio_postgres::tls::TlsConnect<Socket, Future: Send>,
    > + Clone
    + Sync
    + Send
    + 'static
{
}

impl<T> PoolTls for T
where
    T: MakeTlsConnect<Socket> + Clone + Sync + Send + 'static,
    T::Stream: Sync + Send,
    T::TlsConnect: Sync + Send,
    <T::TlsConnect as tokio_postgres::tls::TlsConnect<Socket>>::Future: Send,
{
}

/// [`pool`] through a TLS connector.
pub fn pool_with<T: PoolTls>(config: Config, tls: T, max_size: usize) -> Pool {
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
        deadpool_postgres::PoolError::Backend(e) => Error::connect(connect_failure(&e), Some(e)),
        other => Error::connect(other.to_string(), None),
    }
}
