//! Drift: how the database differs from the binary. `verify` reads the
//! history, the stored schema snapshot and the catalog; nothing here
//! writes.

pub(crate) mod changed;
pub(crate) mod indexes;
pub mod snapshot;
pub(crate) mod verify;
