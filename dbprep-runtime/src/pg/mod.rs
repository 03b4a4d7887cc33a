//! The engine (feature `postgres`), grouped by concern; the arrows go one
//! way, from a run down to the tables:
//!
//! - [`connect`]: the settings (`DATABASE_URL`, libpq's variables), TLS,
//!   connecting and creating the database;
//! - `run`: one run of the [`Migrator`]: its locked session, the lock, the
//!   plan, the pipelined batch, and the admin operations (stamp, repair);
//! - `drift`: [`Migrator::verify`], the schema snapshot and INVALID
//!   indexes;
//! - [`populate`]: loading fixtures;
//! - [`store`]: dbprep's own tables, which every part above reads and
//!   writes through it;
//! - [`error`], [`report`]: what the calls return; [`sql`]: quoting.

pub mod connect;
pub(crate) mod drift;
pub mod error;
pub mod populate;
pub mod report;
pub(crate) mod run;
pub mod sql;
pub mod store;

pub use connect::config;
#[cfg(feature = "tls")]
pub use connect::tls;
pub use drift::snapshot;
pub use drift::verify::{Finding, VerifyReport};
pub use error::{Drift, Error, MigrationError, Result};
pub use report::LockHolder;
pub use run::lock;
pub use run::migrator::Migrator;
pub use run::plan::Policy;
pub use store::history;
