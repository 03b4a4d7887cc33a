//! dbprep prepares a PostgreSQL database at application start-up: it
//! creates the database if it is missing, applies the migrations the binary
//! embeds, stamps the version it reached, loads fixtures, and says when the
//! database has drifted from what the binary expects.
//!
//! Migrations are files in the repository. `dbprep_macros::embed_migrations!`
//! reads, checks and checksums them at compile time, so a release binary
//! carries its schema and refuses, at build time, SQL that would break a
//! migration's atomicity.
//!
//! ```ignore
//! use dbprep_runtime::Migrations;
//!
//! static MIGRATIONS: Migrations = dbprep_macros::embed_migrations!("migrations");
//! ```
//!
//! # Features
//!
//! - default-features off: the pure model ([`model`]) only, `std` alone.
//! - `postgres` (default): the engine, on tokio-postgres and deadpool-postgres.
//! - `testing`: throwaway PostgreSQL clusters and a fresh database per test.
#![warn(missing_docs)]

pub mod model;
#[cfg(feature = "postgres")]
pub mod pg;

pub use model::checksum::Checksum;
pub use model::fixture::{Fixture, FixtureError, Fixtures};
pub use model::history::{HistoryRow, RowKind};
pub use model::migration::{Migration, Migrations};
pub use model::source::{SourceError, SourceErrors};
#[cfg(feature = "postgres")]
pub use pg::connect::{connect, ensure_database};
#[cfg(feature = "postgres")]
pub use pg::drift::verify::{Finding, VerifyReport};
#[cfg(feature = "postgres")]
pub use pg::error::{Drift, Error, FixtureFailure, MigrationError};
#[cfg(feature = "postgres")]
pub use pg::populate::{Conflict, Outcome, PopulateReport};
#[cfg(feature = "postgres")]
pub use pg::report::{
    Applied, InvalidIndex, LockHolder, LockWait, RepairOptions, RepairReport, Report, State,
    Status, StatusEntry,
};
#[cfg(feature = "postgres")]
pub use pg::run::lock::LockMode;
#[cfg(feature = "postgres")]
pub use pg::run::migrator::Migrator;
#[cfg(feature = "postgres")]
pub use pg::run::plan::Policy;
#[cfg(feature = "postgres")]
pub use pg::store::HistoryTable;

/// What the macros' expansions name; not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::model::migration::EmbeddedColumns;
}

#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "testing")]
pub mod testing;
