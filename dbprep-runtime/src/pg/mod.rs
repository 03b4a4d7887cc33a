//! The engine (feature `postgres`): apply, stamp, status and repair
//! through a deadpool-postgres pool.

mod batch;
pub mod config;
pub mod connect;
pub mod error;
pub mod history;
mod indexes;
pub mod lock;
mod migrator;
mod plan;
pub mod populate;
pub mod report;
pub mod snapshot;
pub mod sql;
#[cfg(feature = "tls")]
pub mod tls;
mod verify;

pub use error::{Drift, Error, LockHolder, MigrationError, Result};
pub use migrator::Migrator;
pub use plan::Policy;
pub use verify::{Finding, VerifyReport};
