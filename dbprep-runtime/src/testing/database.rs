//! A fresh database per test.

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};

use deadpool_postgres::Pool;
use tokio_postgres::NoTls;

use super::cluster::Cluster;

/// Why a test database could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TestingError {
    /// The throwaway cluster did not start.
    #[error("cannot start a throwaway PostgreSQL: {0}")]
    Cluster(String),
    /// `DATABASE_URL` does not parse (the URL itself is not shown: it may
    /// hold a password).
    #[error("DATABASE_URL is not a valid PostgreSQL URL: {0}")]
    BadUrl(String),
    /// The migrations or fixtures of a template failed (it is not kept).
    #[error("cannot build the test template {template}: {what}: {reason}")]
    Template {
        /// The template database.
        template: String,
        /// What failed: `migrate`, or `load fixture <name>`.
        what: String,
        /// dbprep's error.
        reason: String,
    },
    /// A baseline could not be compared with its migrations.
    #[error(
        "cannot compare the baseline of version {version} with its migrations: {what}: {reason}"
    )]
    Baseline {
        /// The baseline's version.
        version: i64,
        /// What failed: finding it, replaying the migrations, applying it.
        what: String,
        /// dbprep's error.
        reason: String,
    },
    /// The server refused a connection or a statement.
    #[error("{what}: {}", crate::pg::error::describe(source))]
    Postgres {
        /// What was being done.
        what: String,
        /// The server's or the driver's error.
        source: tokio_postgres::Error,
    },
}

/// The server the tests of this process use: `DATABASE_URL` when set, else
/// a throwaway cluster started on first use.
#[derive(Debug, Clone)]
pub enum TestServer {
    /// The shared throwaway cluster.
    Cluster(&'static Cluster),
    /// The server of `DATABASE_URL`; its database is used to create others.
    External(Box<tokio_postgres::Config>),
}

impl TestServer {
    /// Choose the server as described above.
    ///
    /// # Errors
    ///
    /// A bad `DATABASE_URL`, or a cluster that does not start.
    pub fn get() -> Result<TestServer, TestingError> {
        match std::env::var("DATABASE_URL") {
            Ok(url) if !url.is_empty() => tokio_postgres::Config::from_str(&url)
                .map(|config| TestServer::External(Box::new(config)))
                .map_err(|e| TestingError::BadUrl(e.to_string())),
            _ => Cluster::shared()
                .map(TestServer::Cluster)
                .map_err(TestingError::Cluster),
        }
    }

    /// A configuration for `database` on this server.
    pub fn config(&self, database: &str) -> tokio_postgres::Config {
        match self {
            TestServer::Cluster(cluster) => cluster.config(database),
            TestServer::External(config) => {
                let mut config = (**config).clone();
                config.dbname(database);
                config
            }
        }
    }

    /// The configuration of the database used to create and drop others.
    pub fn admin_config(&self) -> tokio_postgres::Config {
        match self {
            TestServer::Cluster(cluster) => cluster.config("postgres"),
            TestServer::External(config) => (**config).clone(),
        }
    }
}

/// A database created for one test, with a pool on it.
///
/// On a throwaway cluster the database goes with the cluster; on a
/// `DATABASE_URL` server it is dropped when this value is, unless the test
/// is failing (dropped while panicking): then it is kept, and its name and
/// a `psql` command to open it are printed.
///
/// # Example
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let db = dbprep_runtime::testing::TestDatabase::new().await?;
/// let client = db.pool().get().await?;
/// client.simple_query("CREATE TABLE t (id int)").await?;
/// # Ok(()) }
/// ```
pub struct TestDatabase {
    name: String,
    server: TestServer,
    pool: Pool,
    /// Kept by [`keep`](Self::keep): not dropped.
    kept: bool,
}

impl std::fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDatabase")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Connect with `config` and drive the connection on the current runtime.
pub(crate) async fn connect(
    config: &tokio_postgres::Config,
    what: &str,
) -> Result<tokio_postgres::Client, TestingError> {
    let (client, connection) =
        config
            .connect(NoTls)
            .await
            .map_err(|source| TestingError::Postgres {
                what: what.to_owned(),
                source,
            })?;
    tokio::spawn(connection);
    Ok(client)
}

impl TestDatabase {
    /// Create a fresh, empty database.
    ///
    /// # Errors
    ///
    /// [`TestingError`] when no server can be had or the database cannot be
    /// created.
    pub async fn new() -> Result<TestDatabase, TestingError> {
        let server = TestServer::get()?;
        let admin = connect(&server.admin_config(), "connect to the test server").await?;
        Self::create(server, &admin, "").await
    }

    /// A copy of the database `template` (see [`super::migrated`]).
    pub(crate) async fn from_template(
        server: TestServer,
        admin: &tokio_postgres::Client,
        template: &str,
    ) -> Result<TestDatabase, TestingError> {
        // PostgreSQL 15's default strategy (WAL_LOG) copies the template
        // block by block through the WAL; FILE_COPY copies its files but
        // forces a checkpoint before and after, which writes every dirty
        // page of the server: with tests writing in parallel, that made a
        // clone several times slower (see BENCHMARKS.md).
        Self::create(server, admin, &format!(" TEMPLATE \"{template}\"")).await
    }

    /// `CREATE DATABASE` of a new name, with `options`.
    async fn create(
        server: TestServer,
        admin: &tokio_postgres::Client,
        options: &str,
    ) -> Result<TestDatabase, TestingError> {
        let name = Self::new_name();
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\"{options}"))
            .await
            .map_err(|source| TestingError::Postgres {
                what: format!("create database {name}"),
                source,
            })?;
        Ok(Self::existing(server, name))
    }

    /// A name no other test database of this process has:
    /// `dbprep_test_<pid>_<n>`.
    pub(crate) fn new_name() -> String {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        format!(
            "dbprep_test_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// The test database `name`, made already (a claimed spare).
    pub(crate) fn existing(server: TestServer, name: String) -> TestDatabase {
        let pool = pool(server.config(&name), 4);
        TestDatabase {
            name,
            server,
            pool,
            kept: false,
        }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A pool of up to four connections to the database.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The database's connection configuration.
    pub fn config(&self) -> tokio_postgres::Config {
        self.server.config(&self.name)
    }

    /// The server it lives on.
    pub fn server(&self) -> &TestServer {
        &self.server
    }

    /// A new connection outside the pool (for a second session in a test).
    ///
    /// # Errors
    ///
    /// The connection's error.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, TestingError> {
        connect(&self.config(), &format!("connect to {}", self.name)).await
    }
}

/// A `psql` command that opens the database of `config` (no password).
fn psql_command(config: &tokio_postgres::Config) -> String {
    let mut parts = Vec::new();
    if let Some(tokio_postgres::config::Host::Tcp(host)) = config.get_hosts().first() {
        parts.push(format!("host={host}"));
    }
    if let Some(port) = config.get_ports().first() {
        parts.push(format!("port={port}"));
    }
    if let Some(user) = config.get_user() {
        parts.push(format!("user={user}"));
    }
    if let Some(name) = config.get_dbname() {
        parts.push(format!("dbname={name}"));
    }
    format!("psql \"{}\"", parts.join(" "))
}

impl TestDatabase {
    /// Keep the database (a failed test's) instead of dropping it, and say
    /// how to open it.
    pub fn keep(mut self) {
        self.kept = true;
        self.say_kept();
    }

    fn say_kept(&self) {
        let gone = match self.server {
            TestServer::Cluster(_) => {
                " (on the throwaway cluster, removed when the tests end: set DATABASE_URL to keep it)"
            }
            TestServer::External(_) => "",
        };
        eprintln!(
            "the test failed: its database {} is kept{gone}; open it with {}",
            self.name,
            psql_command(&self.config())
        );
    }
}

impl Drop for TestDatabase {
    /// Drop the database, unless the test failed: then keep it and say
    /// how to open it.
    fn drop(&mut self) {
        self.pool.close();
        if self.kept {
            return;
        }
        if std::thread::panicking() {
            self.say_kept();
            return;
        }
        let TestServer::External(admin) = &self.server else {
            return;
        };
        // Drop runs outside async code: use a runtime of its own on a thread
        // of its own, so that this works inside a test's runtime too.
        let admin = (**admin).clone();
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let client = connect(&admin, "drop a test database").await.ok()?;
                client.batch_execute(&sql).await.ok()
            })
        })
        .join();
    }
}

pub use crate::pg::connect::pool;
