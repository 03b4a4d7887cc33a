//! One run of the [`Migrator`](crate::Migrator): the options and the
//! run itself, the lock that keeps migrators of one database apart, the
//! plan (what to apply, what drift to refuse), and the pipelined batch.

pub(crate) mod admin;
pub(crate) mod adopt;
pub(crate) mod batch;
pub mod lock;
pub(crate) mod migrator;
pub(crate) mod plan;
pub(crate) mod repeatable;
pub(crate) mod retry;
pub(crate) mod reversible;
pub(crate) mod revert;
pub(crate) mod scratch;
pub(crate) mod script;
pub(crate) mod session;
pub(crate) mod squash;
