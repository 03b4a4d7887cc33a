//! Throwaway PostgreSQL clusters and a fresh database per test (feature
//! `testing`).
//!
//! `TestDatabase::new()` gives each test its own database on one cluster
//! per test binary, started from the system's PostgreSQL binaries on first
//! use (as the `postgres` user when the tests run as root) and removed when
//! the process ends. With `DATABASE_URL` set, the databases are made on
//! that server instead. [`migrated`] gives a database with the migrations
//! and fixtures applied, cloned from a template built once per distinct
//! set. [`Bouncer`] puts a throwaway PgBouncer in front of the cluster.

mod baselines;
mod bouncer;
mod cluster;
mod database;
mod harness;
mod spares;
mod template;

pub use baselines::{assert_baseline_equivalent, baseline_differences};
pub use bouncer::{Bouncer, PoolMode};
pub use cluster::{Cluster, ClusterError};
pub use database::{pool, TestDatabase, TestServer, TestingError};
pub use harness::{run_migrated, TestOutcome};
pub use spares::{set_spares, SPARES_VARIABLE};
pub use template::{migrated, template_name};

/// PostgreSQL's program `name` (`psql`, `pg_dump`, …): on `PATH`, else in
/// the newest `/usr/lib/postgresql/<major>/bin`; `None` when it is not
/// installed.
pub fn program(name: &str) -> Option<std::path::PathBuf> {
    crate::pg::tools::find(name)
}
