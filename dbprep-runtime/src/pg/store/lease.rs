//! The lock's lease, `<history>_lock`: in
//! [`LockMode::Transaction`](crate::LockMode::Transaction), one row naming
//! the run that holds the migration lock and when its lease runs out. The
//! run renews it in every transaction it commits; a peer takes over a
//! lease that ran out only when no statement tagged with the holder's run
//! is active on the server.

use super::HistoryTable;
use crate::pg::sql::literal;

/// How long a lease lasts without being renewed.
const LEASE: &str = "15 seconds";

/// How long a try waits for the lease row when the holder's transaction
/// has it locked: not long, since that means the lease is alive.
const ROW_WAIT: &str = "100ms";

/// The comment that marks a statement as run `run_id`'s: what the takeover
/// and the holder lookup look for in `pg_stat_activity`.
pub(crate) fn tag(run_id: &str) -> String {
    format!("/* dbprep run {run_id} */\n")
}

/// A condition on `pg_stat_activity a` and the lease row `l`: a statement
/// of the lease's run is active (its tag, as [`tag`] writes it).
const HOLDER_ACTIVE: &str = "EXISTS (SELECT FROM pg_catalog.pg_stat_activity a \
     WHERE a.state = 'active' AND a.pid <> pg_catalog.pg_backend_pid() \
     AND pg_catalog.strpos(a.query, '/* dbprep run ' || l.run_id || ' */') > 0)";

impl HistoryTable {
    /// The lease table if missing, and with `create_schema` its schema
    /// (see [`HistoryTable::create_sql`]), in a transaction of their own.
    pub(crate) fn create_lease_sql(&self, create_schema: bool) -> String {
        format!(
            "BEGIN;\nSET LOCAL client_min_messages = warning;\n{schema}\
             CREATE TABLE IF NOT EXISTS {l} (
    only_row         boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    run_id           text NOT NULL,
    application_name text NOT NULL,
    backend_pid      integer NOT NULL,
    since            timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL
);\nCOMMIT;",
            schema = self.create_schema_sql(create_schema),
            l = self.lease_table(),
        )
    }

    /// Take the lease for `run_id` (calling itself `label`) when nobody
    /// holds it, or its holder's lease ran out and no statement of its run
    /// is active: one short transaction that answers `t` when the lease is
    /// now the run's. It fails with `lock_not_available` when the holder's
    /// transaction has the row locked.
    pub(crate) fn take_lease_sql(&self, run_id: &str, label: &str) -> String {
        format!(
            "BEGIN;\nSET LOCAL lock_timeout = '{ROW_WAIT}';\n\
             SET LOCAL client_min_messages = warning;\n\
             INSERT INTO {l} AS l (only_row, run_id, application_name, backend_pid, since, expires_at) \
             VALUES (true, {run}, {label}, pg_catalog.pg_backend_pid(), pg_catalog.clock_timestamp(), \
             pg_catalog.clock_timestamp() + interval '{LEASE}') \
             ON CONFLICT (only_row) DO UPDATE SET run_id = EXCLUDED.run_id, \
             application_name = EXCLUDED.application_name, backend_pid = EXCLUDED.backend_pid, \
             since = EXCLUDED.since, expires_at = EXCLUDED.expires_at \
             WHERE l.expires_at < pg_catalog.clock_timestamp() AND NOT {HOLDER_ACTIVE} \
             RETURNING true;\nCOMMIT;",
            l = self.lease_table(),
            run = literal(run_id),
            label = literal(label),
        )
    }

    /// Inside a transaction: renew `run_id`'s lease, keeping its row locked
    /// until the transaction ends.
    pub(crate) fn renew_lease_sql(&self, run_id: &str) -> String {
        format!(
            "UPDATE {} SET expires_at = pg_catalog.clock_timestamp() + interval '{LEASE}' WHERE run_id = {};\n",
            self.lease_table(),
            literal(run_id)
        )
    }

    /// A condition that holds while the lease is `run_id`'s.
    pub(crate) fn lease_held_sql(&self, run_id: &str) -> String {
        format!(
            "EXISTS (SELECT FROM {} WHERE run_id = {})",
            self.lease_table(),
            literal(run_id)
        )
    }

    /// Give `run_id`'s lease up.
    pub(crate) fn release_lease_sql(&self, run_id: &str) -> String {
        format!(
            "DELETE FROM {} WHERE run_id = {};",
            self.lease_table(),
            literal(run_id)
        )
    }

    /// The holder of a lease that has not run out, or whose run still has
    /// a statement active: backend pid, application name, since when.
    pub(crate) fn lease_holder_sql(&self) -> String {
        format!(
            "SELECT l.backend_pid, l.application_name, l.since::text FROM {} AS l \
             WHERE l.expires_at >= pg_catalog.clock_timestamp() OR {HOLDER_ACTIVE}",
            self.lease_table()
        )
    }
}
