//! The engine (feature `postgres`), grouped by concern; the arrows go one
//! way, from a run down to the tables. Its public types are exported at
//! the crate root; this module shows [`connect`] (settings, TLS,
//! connecting) and keeps the rest inside:
//!
//! - `run`: one run of the [`crate::Migrator`]: its locked
//!   session, the lock, the plan, the pipelined batch, and the admin
//!   operations (stamp, repair);
//! - `drift`: `verify`, the schema snapshot and INVALID indexes;
//! - `populate`: loading fixtures;
//! - `import`: moving a SQLite database in (feature `sqlite`);
//! - `tenants`: one migration set over many schemas or databases;
//! - `overview`: one read of everything about a database, and its HTML
//!   page;
//! - `store`: dbprep's own tables, which every part above reads and
//!   writes through it;
//! - `error`, `report`: what the calls return; `sql`: quoting.

pub mod connect;
pub(crate) mod drift;
pub(crate) mod error;
#[cfg(feature = "sqlite")]
pub(crate) mod import;
pub(crate) mod overview;
pub(crate) mod populate;
pub(crate) mod report;
pub(crate) mod run;
pub(crate) mod sql;
pub(crate) mod store;
pub(crate) mod tenants;
pub(crate) mod tools;
