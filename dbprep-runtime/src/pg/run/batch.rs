//! Applying pending migrations.
//!
//! Transactional migrations go out as **one simple-query message each, all
//! written before any reply is read** (tokio-postgres pipelines requests
//! whose futures are polled together): one round trip for the set, and a
//! syntax error in one message rejects that message alone. Each message is
//!
//! ```text
//! BEGIN;
//! SET application_name = …; SET SESSION AUTHORIZATION …; SET ROLE …;
//! SET LOCAL synchronous_commit = off; …
//! EXECUTE dbprep_record_<run>(<rank>, <version>, <name>, <checksum>, <kind>, <previous version>);
//! <migration SQL>
//! ;
//! COMMIT;
//! RESET ALL;
//! SET dbprep.applied = '<version>';
//! ```
//!
//! **The history row goes in before the migration's SQL**, in its
//! transaction: nothing of dbprep's then runs after the migration, so
//! whatever its `SET ROLE`, `SET search_path` or `SET statement_timeout`
//! did cannot redirect or stop dbprep's row, with no statement to put the
//! session back in between (that statement was a third of dbprep's cost
//! per migration). The last message of a batch also starts storing the
//! schema snapshot: after its SQL it puts dbprep's settings back, writes
//! its own duration and asks what of the schema to read (which sections
//! have objects, or what changed since the stored snapshot); a second
//! message, in the same transaction, reads it and commits.
//!
//! `RESET ALL` ends each message (and the one before the first) rather
//! than starting the next: the server reads a whole message before running
//! any of it, and its `BEGIN` takes the session's defaults, so a
//! migration's `SET standard_conforming_strings = off` or `SET
//! default_transaction_read_only = on` would otherwise change how the next
//! message's literals are read, or make its transaction read-only.
//!
//! The history insert is a statement prepared once per batch (under the
//! search path it runs with, else every `EXECUTE` plans it again):
//! parsing and planning an `INSERT` per migration cost more than the
//! insert itself.
//!
//! **Durations.** A row written before its migration cannot hold how long
//! the migration took. Its `applied_at` is `now()`, the start of its
//! transaction; the server starts the next message once it is over, so
//! the time to the next row's `applied_at` is the migration's. The last
//! message writes its own (from `now()` to the end of its SQL) and, in the
//! same transaction, one `UPDATE` writes the others'; it then deallocates
//! the history insert, so a batch that succeeded needs no message to close
//! it. After a failure, the closing message writes what committed from
//! the times between the replies. A run killed in the middle leaves 0 for
//! the migrations it committed.
//!
//! After an error the session may be idle again (a message rejected at
//! parse time never ran its `BEGIN`; a failed `COMMIT` ends the
//! transaction), so the next message would run without its predecessor.
//! **The guard**: each message ends, once committed, by setting
//! `dbprep.applied` to its version (after its `RESET ALL`, so it lasts
//! into the next message), and the next one's history insert puts `NULL`
//! in the `NOT NULL` `run_id` unless the setting names its predecessor: it
//! *raises* before the migration's SQL runs. A message that failed never
//! reaches its last statement, whichever way it failed. (A foreign key
//! from `previous_version` to the predecessor's row did the same for a
//! third of the insert's cost, 25–33 µs a migration. A migration cannot end
//! dbprep's transaction itself: transaction control is refused at compile
//! time, and a procedure's `COMMIT` is refused by the server inside a
//! transaction block.)
//!
//! Every message but the last commits asynchronously; the last one's WAL
//! flush makes all before it durable.
//!
//! **Through a pooler in transaction mode** ([`LockMode::Transaction`])
//! nothing may outlive a transaction, and each may run on another server
//! connection: every setting is `SET LOCAL`, nothing is prepared (the
//! history insert is written out in each message), each message starts by
//! renewing the run's lease (whose row it then keeps locked until it
//! commits), and the guard is in SQL, not in a session setting: `run_id`
//! is `NULL` unless the predecessor's row exists and the lease is still
//! the run's. The messages go one at a time: PgBouncer 1.18 keeps running
//! the pipelined messages of a client that died, and hands their replies
//! to the next client that connects.
//!
//! The history digest is not touched per migration: dbprep's own writes
//! to the history leave it alone (the migration's SQL does not), the first
//! message marks it "in progress" and the run writes it at its end (see
//! [`HistoryTable::finish_run_sql`]).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{stream, StreamExt, TryStreamExt};
use tokio_postgres::error::{ErrorPosition, SqlState};
use tokio_postgres::{Client, SimpleQueryMessage};

use super::session::SessionFacts;
use crate::model::lexer::{line_column, split};
use crate::model::migration::Migration;
use crate::pg::drift::changed::Refresh;
use crate::pg::error::{Error, MigrationError, Result};
use crate::pg::run::lock::{LockMode, MigrationLock};
use crate::pg::sql::{ident, literal, set_search_path_sql};
use crate::pg::store::digest::{digest_deferred_sql, HistoryDigest};
use crate::pg::store::history::{guarded, NewRow};
use crate::pg::store::HistoryTable;

/// How a run found the history table under its lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HistoryFound {
    /// Missing: the run made it, and until the run writes to it, it has no
    /// row to read.
    Made,
    /// With the columns dbprep makes, of their types: its digest can stand
    /// for its rows.
    AsMade,
    /// Changed by hand (or not looked at): read it.
    Altered,
}

/// The session setting that holds the version of the last migration the
/// batch committed on the session: the guard of the next (see the module
/// docs).
const APPLIED: &str = "dbprep.applied";

/// How many migration messages may be written ahead of their replies: enough
/// to keep the server busy, few enough that 10,000 pending migrations are
/// not all held in memory twice.
const WINDOW: usize = 64;

/// What every message of a run shares.
pub(crate) struct Session<'a> {
    pub client: &'a Client,
    history: &'a HistoryTable,
    /// The lock the run holds; in [`LockMode::Transaction`] every message
    /// renews its lease and sets nothing beyond its own transaction.
    pub lock: MigrationLock,
    /// The connection as it was before the run: its role, search path and
    /// `application_name` are put back after each migration and at the end.
    pub facts: SessionFacts,
    /// Whether the run stores the schema snapshot with the objects'
    /// definitions, or which objects exist alone.
    schema_snapshot: bool,
    /// Whether the run takes the schema snapshot whole without asking what
    /// changed: none is stored (its table was just made) until the run
    /// stores one.
    snapshot_whole: AtomicBool,
    /// How the run found the history table under its lock.
    history_found: HistoryFound,
    /// What the run read of the digest under its lock, until it is used.
    digest_read: std::sync::Mutex<Option<Option<(HistoryDigest, i32)>>>,
    /// Called after each migration with (done, total) of the run.
    progress: Option<&'a Progress>,
    /// Migrations of the run done so far, and in all (atomics: the run's
    /// future must stay `Send`).
    done: AtomicUsize,
    total: AtomicUsize,
    /// How long a transactional migration may wait for a lock (zero: as
    /// long as it takes), unless its file says otherwise.
    lock_timeout: Duration,
}

/// A callback told how many of a run's migrations are done, and of how
/// many: `(done, total)`.
pub type Progress = dyn Fn(usize, usize) + Send + Sync;

impl<'a> Session<'a> {
    /// The session of a run that holds `lock` on `client`, whose
    /// connection was as `facts` say.
    pub(crate) fn new(
        client: &'a Client,
        history: &'a HistoryTable,
        lock: MigrationLock,
        facts: SessionFacts,
        schema_snapshot: bool,
        progress: Option<&'a Progress>,
    ) -> Self {
        Session {
            client,
            history,
            lock,
            facts,
            schema_snapshot,
            snapshot_whole: AtomicBool::new(false),
            history_found: HistoryFound::Altered,
            digest_read: std::sync::Mutex::new(None),
            progress,
            done: AtomicUsize::new(0),
            total: AtomicUsize::new(0),
            lock_timeout: Duration::ZERO,
        }
    }

    /// The session of a run that takes the schema snapshot whole: none is
    /// stored yet.
    pub(crate) fn taking_snapshot_whole(self, whole: bool) -> Self {
        self.snapshot_whole.store(whole, Ordering::Relaxed);
        self
    }

    /// The session of a run that found the history table so.
    pub(crate) fn having_found_history(mut self, found: HistoryFound) -> Self {
        self.history_found = found;
        self
    }

    /// The session of a run that read the digest and the newest
    /// `installed_rank` under its lock, before it wrote anything.
    pub(crate) fn having_read_digest(mut self, read: Option<Option<(HistoryDigest, i32)>>) -> Self {
        self.digest_read = std::sync::Mutex::new(read);
        self
    }

    /// What the run read of the digest and the newest `installed_rank`
    /// under its lock, before it wrote anything (`Some(None)`: no digest
    /// row), once: a later try reads them again.
    pub(crate) fn take_digest_read(&self) -> Option<Option<(HistoryDigest, i32)>> {
        self.digest_read.lock().ok()?.take()
    }

    /// How the run found the history table under its lock.
    pub(crate) fn history_found(&self) -> HistoryFound {
        self.history_found
    }

    /// The session with transactional migrations waiting at most
    /// `lock_timeout` for a lock (zero: as long as it takes).
    pub(crate) fn with_lock_timeout(mut self, lock_timeout: Duration) -> Self {
        self.lock_timeout = lock_timeout;
        self
    }

    /// How long transactional `m` may wait for a lock: its file's
    /// `-- dbprep:lock-timeout`, else the run's (zero: as long as it takes).
    fn lock_timeout_of(&self, m: &Migration) -> Duration {
        crate::model::directive::parse(m.sql())
            .ok()
            .and_then(|d| d.lock_timeout)
            .unwrap_or(self.lock_timeout)
    }

    /// Whether `m` may wait for other sessions with no timeout of the run's
    /// to give up and name them: a no-transaction migration, or one whose
    /// lock timeout is zero.
    pub(crate) fn waits_unbounded(&self, m: &Migration) -> bool {
        m.no_transaction() || self.lock_timeout_of(m).is_zero()
    }

    /// The `SET LOCAL lock_timeout` of `m`'s transaction: its file's
    /// `-- dbprep:lock-timeout`, else the run's; nothing when that is zero
    /// (the server's own setting applies).
    fn lock_timeout_sql(&self, m: &Migration) -> String {
        let timeout = self.lock_timeout_of(m);
        if timeout.is_zero() {
            String::new()
        } else {
            format!("SET LOCAL lock_timeout = {};\n", timeout.as_millis())
        }
    }

    /// How many migrations the run applies in all.
    pub(crate) fn set_total(&self, total: usize) {
        self.total.store(total, Ordering::Relaxed);
    }

    /// The history table of the run.
    pub(super) fn history(&self) -> &HistoryTable {
        self.history
    }

    /// The run's id.
    pub(crate) fn run_id(&self) -> &str {
        self.lock.run_id()
    }

    /// Whether the connection may go through a pooler in transaction mode:
    /// no session state may be relied on from one transaction to the next.
    pub(super) fn pooled(&self) -> bool {
        self.lock.mode() == LockMode::Transaction
    }

    /// How many migration messages go out ahead of their replies. Through
    /// a pooler in transaction mode, one: PgBouncer 1.18 mishandles a
    /// client that dies with pipelined messages in flight (it keeps the
    /// server connection running them and hands its later replies to the
    /// next client that connects), where a client with one message in
    /// flight has its server connection closed and its migration stopped.
    fn window(&self) -> usize {
        if self.pooled() {
            1
        } else {
            WINDOW
        }
    }

    /// One more migration is done.
    pub(crate) fn advance(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(progress) = self.progress {
            progress(done, self.total.load(Ordering::Relaxed));
        }
    }
}

/// A migration applied by this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Done {
    pub version: i64,
    pub elapsed: Duration,
}

impl Session<'_> {
    /// The statements that put back the session user, role and (with
    /// `search_path`) search path the connection had, and the run's
    /// application name, after a `RESET ALL`. `RESET ALL` leaves the
    /// session user and role alone (a migration's `SET ROLE` must be
    /// undone), and sets the search path the session started with, which is
    /// more often than not the caller's already.
    ///
    /// `SET` statements, not `SELECT set_config(…)`: a `SET` is parsed into
    /// its setting, where a `set_config` call is planned, executed and its
    /// result sent back. Six settings cost 21 µs as statements, 33 µs as one
    /// `SELECT`, and every message has them.
    ///
    /// With `local`, for the transaction alone.
    pub(super) fn restore_statements(&self, search_path: bool, local: bool) -> String {
        let mut sql = format!(
            // The session authorization before the role: setting it resets
            // the role.
            "SET {scope}application_name = {};\nSET {scope}SESSION AUTHORIZATION {};\nSET {scope}ROLE {};\n",
            literal(self.lock.label()),
            literal(&self.facts.session_user),
            literal(&self.facts.role),
            scope = scope(local),
        );
        if search_path {
            sql.push_str(&set_search_path_sql(&self.facts.search_path, local));
            sql.push_str(";\n");
        }
        sql
    }

    /// `RESET ALL` and the statements that put the run's session back.
    /// Through a pooler in transaction mode there is no session to put
    /// back: `RESET ALL` alone, so that nothing a migration set stays on
    /// the server connection for its next client.
    pub(crate) fn restore_session(&self) -> String {
        if self.pooled() {
            return "RESET ALL;\n".to_owned();
        }
        format!("RESET ALL;\n{}", self.restore_statements(true, false))
    }

    /// dbprep's own statements `body`, run as the run's session: in
    /// session mode after putting the session back with dbprep's own
    /// settings; through a pooler in transaction mode, in a transaction of
    /// their own that sets them locally and renews the lease.
    fn own_statements(&self, body: &str) -> String {
        if self.pooled() {
            format!(
                "{tag}RESET ALL;\nBEGIN;\n{restore}{own}{renew}{body}COMMIT;",
                tag = self.lock.tag(),
                restore = self.restore_statements(false, true),
                own = self.own_settings(true),
                renew = self.lock.renew_sql(),
            )
        } else {
            format!(
                "{restore}{own}{body}",
                restore = self.restore_session(),
                own = self.own_settings(false),
            )
        }
    }

    /// Settings for one migration's transaction. The history insert leaves
    /// the digest to the end of the run.
    fn transaction_settings(&self, asynchronous_commit: bool) -> String {
        let mut sql = digest_deferred_sql(true);
        if asynchronous_commit {
            sql.push_str("SET LOCAL synchronous_commit = off;\n");
        }
        sql.push_str(&self.connection_check(true));
        sql
    }

    /// PostgreSQL 14+: the server checks every second that the client is
    /// still there, and aborts a migration when it is gone.
    fn connection_check(&self, local: bool) -> String {
        if self.facts.server_version_num < 140000 {
            return String::new();
        }
        format!(
            "SET {}client_connection_check_interval = 1000;\n",
            scope(local)
        )
    }

    /// dbprep's own settings for its statements after a migration: its
    /// `SET` must not redirect or block them.
    pub(super) fn own_settings(&self, local: bool) -> String {
        format!(
            "SET {scope}search_path = pg_catalog;\nSET {scope}SESSION AUTHORIZATION {user};\n\
             SET {scope}ROLE {role};\nSET {scope}statement_timeout = 0;\nSET {scope}lock_timeout = 0;\n",
            scope = scope(local),
            user = literal(&self.facts.session_user),
            role = literal(&self.facts.role),
        )
    }

    /// The history row of a no-transaction migration, written before it
    /// runs: `success = false` until it ends. Its `run_id` is `NULL`, which
    /// the table refuses, when the run no longer holds the lock.
    fn insert_dirty_row(&self, m: &Migration, rank: i32) -> String {
        let run_id = self.guarded_run_id();
        self.history.insert_sql(&NewRow {
            success: false,
            ..NewRow::of(m, rank, &self.facts.user, run_id)
        })
    }

    /// The name of the batch's prepared history insert: one per run, so that
    /// a statement left on a pooled connection by a run that died never
    /// collides with the next.
    fn record_statement(&self) -> String {
        ident(&format!(
            "dbprep_record_{}",
            self.run_id().replace('-', "_")
        ))
    }

    /// Put the session as each migration starts (the first migration's
    /// message is then read with the server's defaults), saying which
    /// search path `RESET ALL` gives it, and prepare the history insert of
    /// a batch's migrations under the search path it runs with. Every name
    /// in it, operators too, is qualified, so the path changes nothing but
    /// whether the plan is reused. `applied_at` is the start of the
    /// migration's transaction; `execution_ms` is written once the
    /// migration is over (see the module docs). The guard: `run_id` is
    /// `NULL`, which the table refuses, unless [`APPLIED`] names the
    /// predecessor, or is empty for the first (set here, not left to
    /// `RESET ALL`: a role's or a database's default could fill it).
    fn prepare_record_sql(&self) -> String {
        let insert = self.history.insert_sql(&NewRow {
            installed_rank: "$1".into(),
            version: "$2".into(),
            name: "$3".into(),
            checksum: "$4".into(),
            kind: "$5".into(),
            applied_at: "pg_catalog.now()".into(),
            execution_ms: "0".into(),
            applied_by: literal(&self.facts.user),
            success: true,
            previous_version: "$6".into(),
            run_id: guarded(
                &format!(
                    "COALESCE(pg_catalog.current_setting('{APPLIED}', true), '') \
                     OPERATOR(pg_catalog.=) COALESCE(CAST($6 AS pg_catalog.text), '')"
                ),
                &literal(self.run_id()),
            ),
        });
        format!(
            "RESET ALL;\nSELECT pg_catalog.current_setting('search_path');\n\
             SET {APPLIED} = '';\n{restore}PREPARE {name} (pg_catalog.int4, pg_catalog.int8, pg_catalog.text, pg_catalog.bytea, pg_catalog.text, pg_catalog.int8) \
             AS {insert}",
            restore = self.restore_statements(true, false),
            name = self.record_statement(),
        )
    }

    /// The closing message of a batch that failed: the statement
    /// deallocated, and the durations of `timed_by_replies` (what committed
    /// before the failure) recorded. It commits synchronously, which makes
    /// every migration committed asynchronously before it durable.
    fn close_failed_batch_sql(&self, timed_by_replies: &[Done]) -> String {
        let mut sql = if self.pooled() {
            String::new()
        } else {
            format!("DEALLOCATE {};\n", self.record_statement())
        };
        sql.push_str(&self.restore_session());
        sql.push_str("BEGIN;\n");
        if self.pooled() {
            sql.push_str(&self.restore_statements(false, true));
        }
        // As dbprep's own statements after a migration, and as the
        // migrations' transactions: the digest left to the end of the run.
        sql.push_str(&self.own_settings(true));
        sql.push_str(&self.transaction_settings(false));
        if !timed_by_replies.is_empty() {
            let durations: Vec<(i64, u128)> = timed_by_replies
                .iter()
                .map(|d| (d.version, millis(d.elapsed)))
                .collect();
            sql.push_str(&self.history.durations_sql(&durations));
        }
        // Writes a commit record even when nothing was applied.
        sql.push_str("SELECT pg_catalog.txid_current();\nCOMMIT;");
        sql
    }

    /// The history insert for `m`: the `EXECUTE` of the prepared one; or,
    /// through a pooler in transaction mode (no prepared statement, no
    /// session setting survives there), the insert itself, whose guard is
    /// the history and the lease: `run_id` is `NULL`, which the table
    /// refuses, unless the predecessor is recorded and the lease is still
    /// this run's.
    fn record_history(&self, m: &Migration, rank: i32, previous: Option<i64>) -> String {
        let previous_sql = previous.map_or("NULL".to_owned(), |v| v.to_string());
        let row = NewRow {
            applied_at: "pg_catalog.now()".into(),
            previous_version: previous_sql,
            ..NewRow::of(m, rank, &self.facts.user, String::new())
        };
        if !self.pooled() {
            // The prepared insert's parameters, in its order.
            return format!(
                "EXECUTE {}({}, {}, {}, {}, {}, {});\n",
                self.record_statement(),
                row.installed_rank,
                row.version,
                row.name,
                row.checksum,
                row.kind,
                row.previous_version,
            );
        }
        let condition = format!(
            "{} AND {}",
            self.history.recorded_sql(previous),
            self.lock.held_condition()
        );
        self.history.insert_sql(&NewRow {
            run_id: guarded(&condition, &literal(self.run_id())),
            ..row
        })
    }

    /// The `UPDATE` that writes the duration of `m`, the migration of the
    /// transaction, at its end.
    fn record_duration(&self, m: &Migration) -> String {
        self.history.duration_so_far_sql(m.version())
    }

    /// The message for one transactional migration, and the length of its
    /// prefix in characters (to map error positions back to the file).
    fn message(
        &self,
        m: &Migration,
        rank: i32,
        previous: Option<i64>,
        asynchronous_commit: bool,
        restore_search_path: bool,
    ) -> (String, usize) {
        let mut message = String::with_capacity(m.sql().len() + 1024);
        message.push_str(&self.lock.tag());
        message.push_str("BEGIN;\n");
        message.push_str(&self.restore_statements(restore_search_path, self.pooled()));
        message.push_str(&self.transaction_settings(asynchronous_commit));
        message.push_str(&self.lock_timeout_sql(m));
        message.push_str(&self.lock.renew_sql());
        if previous.is_none() {
            // As the run's role, in the first migration's transaction.
            message.push_str(&self.history.digest_in_progress_sql());
        }
        message.push_str(&self.record_history(m, rank, previous));
        message.push_str(&digest_deferred_sql(false));
        let prefix_chars = message.chars().count();
        message.push_str(m.sql());
        // A newline ends a trailing `--` comment; the `;` a last statement
        // written without one.
        message.push_str("\n;\n");
        // The last migration of the batch (the one that commits
        // synchronously, which makes every migration before it durable)
        // also writes its duration, then asks what of the snapshot to
        // read: which sections, to take it whole, or what may have changed
        // since the stored one (`run_last_message` reads it and commits).
        if !asynchronous_commit {
            message.push_str(&self.own_settings(true));
            message.push_str(&digest_deferred_sql(true));
            message.push_str(&self.record_duration(m));
            message.push_str(&self.snapshot_plan_sql());
            return (message, prefix_chars);
        }
        message.push_str(&self.end_of_message(m.version()));
        (message, prefix_chars)
    }

    /// The statements whose last answers what of the schema snapshot to
    /// read, for [`Refresh::parse`]: the sections that have objects when
    /// it is taken whole, else what may have changed since the stored one.
    fn snapshot_plan_sql(&self) -> String {
        if self.snapshot_whole.load(Ordering::Relaxed) {
            self.history.whole_plan_sql()
        } else {
            self.history.refresh_plan_sql(self.schema_snapshot)
        }
    }

    /// The end of the message of migration `version`: commit, and put the
    /// session back as it was.
    fn end_of_message(&self, version: i64) -> String {
        let mut end = "COMMIT;\nRESET ALL;".to_owned();
        if !self.pooled() {
            end.push_str(&format!("\nSET {APPLIED} = '{version}';"));
        }
        end
    }

    /// Send the last migration's message, which ends asking what of the
    /// schema snapshot to read again, then read it and commit, with what
    /// closes the batch: `durations` (the statement that writes the other
    /// migrations' durations) in the transaction, the history insert
    /// deallocated after it. An error of the first message comes with
    /// `prefix_chars` (its place in the file can be found), one of the
    /// second without.
    async fn run_last_message(
        &self,
        sql: &str,
        prefix_chars: usize,
        version: i64,
        durations: &str,
    ) -> Result<(), (tokio_postgres::Error, Option<usize>)> {
        let answer = self
            .run_message_answer(sql)
            .await
            .map_err(|e| (e, Some(prefix_chars)))?;
        let refresh = Refresh::parse(answer.as_deref());
        let mut rest = durations.to_owned();
        rest.push_str(&self.history.refresh_sql(&refresh, self.schema_snapshot));
        rest.push_str(&self.end_of_message(version));
        if !self.pooled() {
            rest.push_str(&format!("\nDEALLOCATE {};", self.record_statement()));
        }
        self.run_message(&rest).await.map_err(|e| (e, None))
    }

    /// Store the schema snapshot in a transaction of its own (after a
    /// no-transaction migration, a repeatable one, or a stamp).
    pub(crate) async fn store_snapshot(&self) -> Result<()> {
        let stored = async {
            let plan = self.snapshot_plan_sql();
            let answer = self.run_message_answer(&format!("BEGIN;\n{plan}")).await?;
            let refresh = Refresh::parse(answer.as_deref());
            let refresh = self.history.refresh_sql(&refresh, self.schema_snapshot);
            self.client
                .batch_execute(&format!("{refresh}COMMIT;"))
                .await
        }
        .await;
        if let Err(error) = stored {
            let _ = self.client.batch_execute("ROLLBACK").await;
            return Err(Error::postgres("store the schema snapshot")(error));
        }
        self.snapshot_whole.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// Apply `pending` (all transactional), pipelined: one round trip for
    /// the set, with at most [`WINDOW`] messages written ahead of the
    /// replies so that memory stays bounded however many are pending.
    /// `first_rank` is the `installed_rank` of the first.
    ///
    /// On failure, rolls back, makes what was applied durable, and returns
    /// the first error with its place in the file.
    pub(crate) async fn apply_pipelined(
        &self,
        pending: &[&Migration],
        first_rank: i32,
    ) -> Result<Vec<Done>, Error> {
        // Through a pooler in transaction mode nothing is prepared, and each
        // transaction sets the search path.
        let (outcome, done) = if self.pooled() {
            self.apply_prepared(pending, first_rank, true).await
        } else if pending.len() <= self.window() {
            // A batch that fits in the window goes out behind the statement
            // that prepares its history insert, without waiting for its
            // answer: each message puts the caller's search path back (about
            // 5 µs each), which costs less than a round trip.
            let prepare = async {
                self.client
                    .simple_query(&self.prepare_record_sql())
                    .await
                    .map_err(Error::postgres("prepare the history insert"))
            };
            let (prepared, applied) =
                futures_util::future::join(prepare, self.apply_prepared(pending, first_rank, true))
                    .await;
            // Without the insert, every message failed before its SQL ran.
            prepared?;
            applied
        } else {
            // A `set_config` less per migration when the search path the
            // session goes back to is the caller's (~5 µs of ~95).
            let answer = self
                .client
                .simple_query(&self.prepare_record_sql())
                .await
                .map_err(Error::postgres("prepare the history insert"))?;
            let default_path = answer.iter().find_map(|message| match message {
                SimpleQueryMessage::Row(row) => row.get(0),
                _ => None,
            });
            let restore_search_path = default_path != Some(self.facts.search_path.as_str());
            self.apply_prepared(pending, first_rank, restore_search_path)
                .await
        };
        // The last message of a batch that succeeded closed it. A closed
        // connection took the statement with it, and left nothing to
        // record.
        if outcome.is_err() && !self.client.is_closed() {
            // What committed before the failure took the time between its
            // reply and the one before.
            let close = self.close_failed_batch_sql(&done);
            if let Err(error) = self.client.batch_execute(&close).await {
                // The migrations are applied: their durations stay 0.
                tracing::warn!("could not record the durations of the batch: {error}");
                let _ = self.client.simple_query("ROLLBACK").await;
            }
        }
        outcome.map(|()| done)
    }

    /// [`apply_pipelined`](Self::apply_pipelined) once the history insert is
    /// prepared: the outcome, and the migrations applied (all of them, or
    /// those before the one that failed) with their durations.
    async fn apply_prepared(
        &self,
        pending: &[&Migration],
        first_rank: i32,
        restore_search_path: bool,
    ) -> (Result<(), Error>, Vec<Done>) {
        let last = pending.len() - 1;
        // Indices, not references, go through the stream: a closure over
        // borrowed items would make the run's future lose `Send`.
        let mut replies = stream::iter(0..pending.len())
            .map(|i| {
                let previous = i.checked_sub(1).map(|p| pending[p].version());
                let (sql, prefix_chars) = self.message(
                    pending[i],
                    first_rank + i as i32,
                    previous,
                    i < last,
                    restore_search_path,
                );
                let (version, asks) = (pending[i].version(), i == last);
                let durations = if asks {
                    let versions: Vec<i64> = pending.iter().map(|m| m.version()).collect();
                    self.history.batch_durations_sql(&versions)
                } else {
                    String::new()
                };
                async move {
                    if asks {
                        self.run_last_message(&sql, prefix_chars, version, &durations)
                            .await
                    } else {
                        let sent = self.run_message(&sql).await;
                        sent.map_err(|e| (e, Some(prefix_chars)))
                    }
                }
            })
            .buffered(self.window())
            .enumerate();
        let mut failure = None;
        let mut done = Vec::with_capacity(pending.len());
        // The server runs the messages one after the other, so a reply
        // comes when its migration is over: the time since the previous
        // reply is the migration's.
        let mut previous_reply = Instant::now();
        while let Some((i, reply)) = replies.next().await {
            if let Err(error) = reply {
                failure = Some((i, error));
                break;
            }
            done.push(Done {
                version: pending[i].version(),
                elapsed: previous_reply.elapsed(),
            });
            previous_reply = Instant::now();
            self.advance();
        }
        // Messages still in flight after a failure fail on their guards;
        // dropping the stream discards their replies.
        drop(replies);
        let Some((failed, (error, prefix_chars))) = failure else {
            // The last message stored a snapshot.
            self.snapshot_whole.store(false, Ordering::Relaxed);
            return (Ok(()), done);
        };
        // The session is in a failed transaction (or idle): end it. What
        // committed asynchronously is flushed with the batch's closing
        // message, before the error is reported.
        let _ = self.client.simple_query("ROLLBACK").await;
        let m = pending[failed];
        let position = error_position(&error)
            .and_then(|p| position_in_sql(m.sql(), p.checked_sub(prefix_chars? + 1)?));
        let applied = pending[..failed].iter().map(|m| m.version()).collect();
        let not_applied = pending[failed + 1..].iter().map(|m| m.version()).collect();
        (
            Err(self.explain_guard(migration_error(m, error, position, applied, not_applied))),
            done,
        )
    }

    /// Send one message and read its answer to the end, keeping none of
    /// it: rows a migration returns (a `SELECT` in a data migration) are
    /// dropped as they arrive instead of piling up in memory.
    pub(super) async fn run_message(&self, sql: &str) -> Result<(), tokio_postgres::Error> {
        let answer = self.client.simple_query_raw(sql).await?;
        futures_util::pin_mut!(answer);
        while answer.try_next().await?.is_some() {}
        Ok(())
    }

    /// [`run_message`](Self::run_message), keeping the first column of the
    /// last row answered: that of its last statement, when that statement
    /// answers one.
    async fn run_message_answer(&self, sql: &str) -> Result<Option<String>, tokio_postgres::Error> {
        let answer = self.client.simple_query_raw(sql).await?;
        futures_util::pin_mut!(answer);
        let mut last = None;
        while let Some(message) = answer.try_next().await? {
            if let SimpleQueryMessage::Row(row) = message {
                last = row.get(0).map(str::to_owned);
            }
        }
        Ok(last)
    }

    /// Apply one `-- dbprep:no-transaction` migration: its history row is
    /// written with `success = false` first and set `true` at the end, so
    /// a failure or a kill leaves it dirty; each statement is a message of
    /// its own, outside any transaction.
    pub(crate) async fn apply_without_transaction(
        &self,
        m: &Migration,
        rank: i32,
    ) -> Result<Done, Error> {
        let started = Instant::now();
        self.run_own(
            &self.insert_dirty_row(m, rank),
            format!("record the start of migration {}", m.version()),
        )
        .await?;
        let sql = m.sql();
        if let Err((error, position)) = self.run_outside_transaction(sql, m.version()).await? {
            return Err(self.explain_guard(migration_error(
                m,
                error,
                position,
                Vec::new(),
                Vec::new(),
            )));
        }
        let elapsed = started.elapsed();
        let finish = self.history.finished_sql(m.version(), millis(elapsed));
        self.run_own(
            &finish,
            format!("record the end of migration {}", m.version()),
        )
        .await?;
        self.advance();
        Ok(Done {
            version: m.version(),
            elapsed,
        })
    }

    /// `run_id` as the lease guard writes it: `NULL` (refused by dbprep's
    /// tables) once the run no longer holds the lock.
    pub(super) fn guarded_run_id(&self) -> String {
        guarded(&self.lock.held_condition(), &literal(self.run_id()))
    }

    /// Run a file's `sql` (a down, a repeatable migration) in one
    /// transaction as the run's session (its role and search path), after
    /// dbprep's own statements `own` (its history write, so that nothing
    /// of dbprep's runs after the file's own `SET`s). How long it took;
    /// else the server's error and its line and column in `sql`, the
    /// transaction rolled back.
    pub(super) async fn run_file_in_transaction(
        &self,
        own: &str,
        sql: &str,
    ) -> Result<Duration, (tokio_postgres::Error, Option<(usize, usize)>)> {
        let mut message = self.lock.tag();
        message.push_str("BEGIN;\n");
        message.push_str(&self.restore_statements(true, self.pooled()));
        message.push_str(&self.lock.renew_sql());
        message.push_str(own);
        let prefix_chars = message.chars().count();
        message.push_str(sql);
        message.push_str("\n;\nCOMMIT;\nRESET ALL;");
        let started = Instant::now();
        if let Err(error) = self.run_message(&message).await {
            let _ = self.client.simple_query("ROLLBACK").await;
            let position = error_position(&error)
                .and_then(|p| position_in_sql(sql, p.checked_sub(prefix_chars + 1)?));
            return Err((error, position));
        }
        Ok(started.elapsed())
    }

    /// Run `sql` (a migration's, or a down's, of `version`) statement by
    /// statement outside a transaction, as the run's session, then reset
    /// the session. `Err` for dbprep's own statements; `Ok(Err)` with the
    /// server's error and its line and column in `sql` when a statement of
    /// `sql` fails.
    pub(super) async fn run_outside_transaction(
        &self,
        sql: &str,
        version: i64,
    ) -> Result<Result<(), (tokio_postgres::Error, Option<(usize, usize)>)>> {
        // Through a pooler in transaction mode each statement may run on
        // another server connection: no session setting would reach it.
        // Its tag tells a peer that the run is alive while it runs.
        let tag = self.lock.tag();
        if !self.pooled() {
            let session = self.restore_session() + &self.connection_check(false);
            self.client
                .simple_query(&session)
                .await
                .map_err(Error::postgres("prepare the session"))?;
        }
        for (i, statement) in split(sql).statements.iter().enumerate() {
            if i > 0 && self.pooled() {
                self.client
                    .simple_query(&self.lock.renew_sql())
                    .await
                    .map_err(Error::postgres("renew the migration lock"))?;
            }
            let text = format!("{tag}{}", statement.text(sql));
            if let Err(error) = self.run_message(&text).await {
                let start = sql[..statement.start].chars().count();
                let position = error_position(&error)
                    .and_then(|p| p.checked_sub(1 + tag.chars().count()))
                    .map_or(start, |p| start + p);
                return Ok(Err((error, position_in_sql(sql, position))));
            }
        }
        // In a message of its own: the server reads a whole message, and
        // starts its implicit transaction, with the session as the
        // migration left it (`standard_conforming_strings`,
        // `default_transaction_read_only`, …).
        self.client
            .simple_query("RESET ALL")
            .await
            .map_err(Error::postgres(format!(
                "reset the session after migration {version}"
            )))?;
        Ok(Ok(()))
    }

    /// A failure of the history insert's guard (its `run_id` left `NULL`),
    /// said in words: it means the migration never ran.
    fn explain_guard(&self, error: Error) -> Error {
        let Error::Migration(mut failure) = error else {
            return error;
        };
        let guard = failure.code == Some(SqlState::NOT_NULL_VIOLATION)
            && failure
                .source
                .as_ref()
                .and_then(|e| e.as_db_error())
                .is_some_and(|db| {
                    db.column() == Some("run_id") && db.table() == Some(&self.history.table)
                });
        if guard {
            failure.position = None;
            failure.message = "dbprep refused to record it: the migration before it in this batch was not recorded, or this run no longer holds the migration lock (its lease ran out and another migrator took it over, or the lock row was removed)".to_owned();
            failure.detail = None;
            failure.hint = Some("nothing of this migration ran; run again to apply it".to_owned());
        }
        Error::Migration(failure)
    }

    /// Run dbprep's own statements `body` as [`own_statements`] writes
    /// them; after a failure inside their transaction, roll it back, so
    /// that the run can still release its lock.
    ///
    /// [`own_statements`]: Self::own_statements
    pub(super) async fn run_own(&self, body: &str, doing: String) -> Result<()> {
        match self.client.simple_query(&self.own_statements(body)).await {
            Ok(_) => Ok(()),
            Err(error) => {
                if self.pooled() {
                    let _ = self.client.simple_query("ROLLBACK").await;
                }
                Err(Error::postgres(doing)(error))
            }
        }
    }
}

/// The scope of a `SET`: the transaction, or the session.
fn scope(local: bool) -> &'static str {
    if local {
        "LOCAL "
    } else {
        ""
    }
}

/// A duration as `execution_ms` holds it: milliseconds, rounded (most
/// migrations take one or two).
fn millis(duration: Duration) -> u128 {
    ((duration.as_micros() + 500) / 1000).min(i32::MAX as u128)
}

pub(super) fn error_position(error: &tokio_postgres::Error) -> Option<usize> {
    match error.as_db_error()?.position()? {
        ErrorPosition::Original(p) => Some(*p as usize),
        ErrorPosition::Internal { .. } => None,
    }
}

/// Line and column of the `chars`-th character (0-based) of `sql`, or
/// `None` when it lies beyond the migration's text (in dbprep's own part).
pub(super) fn position_in_sql(sql: &str, chars: usize) -> Option<(usize, usize)> {
    let offset = sql.char_indices().nth(chars).map(|(i, _)| i)?;
    Some(line_column(sql, offset))
}

pub(super) fn migration_error(
    m: &Migration,
    error: tokio_postgres::Error,
    position: Option<(usize, usize)>,
    applied: Vec<i64>,
    not_applied: Vec<i64>,
) -> Error {
    let db = error.as_db_error();
    Error::Migration(Box::new(MigrationError {
        version: m.version(),
        repeatable: m.is_repeatable(),
        file: m.file().to_owned(),
        position,
        message: db.map_or_else(|| error.to_string(), |d| d.message().to_owned()),
        detail: db.and_then(|d| d.detail()).map(str::to_owned),
        hint: db.and_then(|d| d.hint()).map(str::to_owned),
        code: error.code().cloned(),
        applied,
        not_applied,
        outside_transaction: m.no_transaction(),
        source: Some(error),
    }))
}
