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
//! [`Migrator::run`] brings one database up to date; [`Migrator::run_each`]
//! brings many tenants (a schema or a database each) up to date a few at a
//! time, see [`Tenants`] and [`Rollout`].
//!
//! # Features
//!
//! - default-features off: the pure model only (reading, checking and
//!   checksumming migrations and fixtures; [`reconcile`]), `std` alone.
//! - `postgres` (default): the engine, on tokio-postgres and deadpool-postgres.
//! - `testing`: throwaway PostgreSQL clusters and a fresh database per test.
#![warn(missing_docs)]
#![warn(unnameable_types)]

mod model;
#[cfg(feature = "postgres")]
pub mod pg;

pub use model::check::{ProblemKind, SqlProblem};
pub use model::checksum::{Checksum, ParseChecksumError};
pub use model::fixture::{
    Fixture, FixtureContent, FixtureError, FixtureTable, Fixtures, Mode as FixtureMode,
};
pub use model::history::{reconcile, HistoryRow, RowKind, VersionEntry, VersionState};
pub use model::lint::{LintFinding, Rule};
pub use model::migration::{DirMismatch, Migration, Migrations};
pub use model::name::NameError;
pub use model::source::{SourceError, SourceErrors};
pub use model::sum::write_sum_file;
#[cfg(feature = "postgres")]
pub use pg::connect::{connect, ensure_database};
#[cfg(feature = "postgres")]
pub use pg::drift::verify::{Finding, VerifyReport};
#[cfg(feature = "postgres")]
pub use pg::error::{Drift, Error, FixtureFailure, MigrationError};
#[cfg(feature = "sqlite")]
pub use pg::import::{ImportOptions, ImportReport, ImportedTable};
#[cfg(feature = "postgres")]
pub use pg::overview::{FixtureState, Overview, Populated};
#[cfg(feature = "postgres")]
pub use pg::populate::{Conflict, Outcome, PopulateReport};
#[cfg(feature = "postgres")]
pub use pg::report::{
    Applied, AppliedRepeatable, InvalidIndex, LockHolder, LockWait, RepairOptions, RepairReport,
    RepeatableState, RepeatableStatus, Report, State, Status, StatusEntry,
};
#[cfg(feature = "postgres")]
pub use pg::run::adopt::{Adopt, AdoptCheck, AdoptReport, AdoptedVersion, Tool, UnknownTool};
#[cfg(feature = "postgres")]
pub use pg::run::lock::LockMode;
#[cfg(feature = "postgres")]
pub use pg::run::migrator::Migrator;
#[cfg(feature = "postgres")]
pub use pg::run::plan::Policy;
#[cfg(feature = "postgres")]
pub use pg::run::retry::{Blocker, LockRetry};
#[cfg(feature = "postgres")]
pub use pg::run::reversible::{NotReversible, ReversibleReport};
#[cfg(feature = "postgres")]
pub use pg::run::revert::{RevertReport, Reverted};
#[cfg(feature = "postgres")]
pub use pg::run::squash::Baseline;
#[cfg(feature = "postgres")]
pub use pg::store::repeatables::RepeatableRow;
#[cfg(feature = "postgres")]
pub use pg::store::HistoryTable;
#[cfg(feature = "postgres")]
pub use pg::tenants::{
    EachReport, OnFailure, Rollout, TenantOutcome, TenantResult, TenantSummary, Tenants,
};

/// What the macros and their expansions use (the very code the runtime
/// runs, so that compile time and run time agree), and what the property
/// tests exercise; not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::model::check::check_sql;
    pub use crate::model::fixture::{read_fixtures, FixtureSource};
    pub use crate::model::folder::read_migrations;
    pub use crate::model::fuzz;
    pub use crate::model::lexer::{split, MetaCommand, Script, Statement, Unterminated};
    pub use crate::model::lint::lint;
    pub use crate::model::migration::EmbeddedColumns;
    pub use crate::model::source::MigrationSource;
    pub use crate::model::sum::SUM_FILE;
}

#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "testing")]
pub mod testing;
