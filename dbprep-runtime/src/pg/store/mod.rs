//! dbprep's own tables: the history and its digest, the schema snapshot,
//! the fixture history and the lock's lease.

pub mod history;
