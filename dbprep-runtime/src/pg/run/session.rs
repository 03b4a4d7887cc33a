//! The life of a run's session under the lock: what it knows of the
//! connection (read once the run has work to do), taking its turn (the
//! lock, or a peer's finished work), the tables it needs, and the end of
//! the run (the session put back, the digest written, the lock released).
//! A run's future dropped half-way cancels the server's query.

use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio_postgres::error::SqlState;
use tokio_postgres::{CancelToken, Client, NoTls};

use super::batch::{HistoryFound, Session};
use super::lock::{LockMode, MigrationLock};
use super::migrator::Migrator;
use crate::model::history::HistoryRow;
use crate::pg::error::{is_sqlstate, Error, Result};
use crate::pg::report::LockWait;
use crate::pg::sql::{column, ident, literal, rows};
use crate::pg::store::digest::{HistoryDigest, Prefix};
use crate::pg::store::snapshot::SnapshotTable;
use crate::pg::store::Tables;

/// The session facts a run needs, read once it has work to do.
const SESSION_FACTS: &str =
    "pg_catalog.current_setting('server_version_num'), pg_catalog.current_setting('role'), \
     pg_catalog.current_setting('search_path'), current_user, pg_catalog.current_setting('application_name'), session_user, \
     pg_catalog.now() = pg_catalog.statement_timestamp(), pg_catalog.version(), \
     pg_catalog.current_setting('yb_ddl_transaction_block_enabled', true)";

/// What a run that has work to do needs to know about its session, read
/// in one statement after the start-up found the history behind.
#[derive(Debug, Clone)]
pub(crate) struct SessionFacts {
    pub server_version_num: i32,
    pub role: String,
    pub search_path: String,
    pub user: String,
    pub application_name: String,
    pub session_user: String,
    /// Whether the session was outside a transaction block: a statement
    /// sent alone starts its own transaction then, at its own timestamp
    /// (inside a block begun earlier, `now()` is older).
    pub outside_transaction: bool,
    /// `version()`: which server, PostgreSQL or one that speaks its
    /// protocol.
    pub version: String,
    /// YugabyteDB's transactional DDL setting (absent elsewhere).
    pub yb_transactional_ddl: Option<String>,
}

/// Why a run refuses a server that speaks PostgreSQL's protocol but does
/// not roll a migration's DDL back with its transaction: a migration and
/// its history row would no longer commit together, and a failed one
/// would be left half-applied. `None`: the server keeps that guarantee.
pub(crate) fn unsafe_server(version: &str, yb_transactional_ddl: Option<&str>) -> Option<String> {
    if version.contains("CockroachDB") {
        return Some(
            "CockroachDB does not run DDL inside a migration's transaction (from v25.1 \
             `autocommit_before_ddl` commits before each DDL statement) and has no session \
             advisory locks: a migration and its history row could not commit together"
                .into(),
        );
    }
    if version.contains("-YB-") && yb_transactional_ddl != Some("on") {
        return Some(
            "YugabyteDB commits each DDL statement on its own unless transactional DDL is on: \
             set the yb-tserver flag `ysql_yb_ddl_transaction_block_enabled` to true"
                .into(),
        );
    }
    None
}

/// The refusal of a run on a connection inside a transaction block.
pub(crate) fn inside_transaction_block() -> Error {
    Error::config(
        "the connection is inside a transaction block: each migration commits on its own, \
         which would commit that transaction too; run on a connection outside one \
         (nothing was written)",
    )
}

/// Read the session facts, in one statement.
pub(crate) async fn session_facts(client: &Client) -> Result<SessionFacts> {
    let answer = client
        .simple_query(&format!("SELECT {SESSION_FACTS}"))
        .await
        .map_err(|e| {
            // A block that a failed statement (the start-up's, on a first
            // start) aborted: say why nothing can go on.
            if is_sqlstate(&e, &[SqlState::IN_FAILED_SQL_TRANSACTION]) {
                inside_transaction_block()
            } else {
                Error::postgres("read the session settings")(e)
            }
        })?;
    let rows = rows(answer);
    let row = rows
        .first()
        .ok_or_else(|| Error::Unexpected("the server returned no session settings".into()))?;
    let text = |i| column(row, i).unwrap_or_default().to_owned();
    Ok(SessionFacts {
        server_version_num: text(0).parse().unwrap_or_default(),
        role: text(1),
        search_path: text(2),
        user: text(3),
        application_name: text(4),
        session_user: text(5),
        outside_transaction: text(6) == "t",
        version: text(7),
        yb_transactional_ddl: column(row, 8).map(str::to_owned),
    })
}

/// Cancels the server's current query when a run's future is dropped
/// before it finished (a timeout, a shutdown): the migration then rolls
/// back instead of running on unattended.
pub(super) struct CancelOnDrop(pub(super) Option<CancelToken>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(token) = self.0.take() else { return };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = token.cancel_query(NoTls).await;
            });
        }
    }
}

impl CancelOnDrop {
    pub(super) fn disarm(mut self) {
        self.0 = None;
    }
}

/// How a run's wait for the lock ended.
pub(super) enum Turn<'c> {
    /// The lock is the run's, with its session.
    Ours(Box<Session<'c>>, LockWait),
    /// Another migrator applied what the run came to apply.
    DoneByPeer(LockWait),
}

/// What a run found, and made, of dbprep's tables under the lock.
#[derive(Debug, Clone, Copy)]
struct Found {
    /// The history table.
    history: HistoryFound,
    /// Whether the run made the snapshot table (no snapshot stored yet).
    made_snapshot_table: bool,
    /// Whether the run made or remade any of the tables (what was read of
    /// them before is then out of date).
    made_any: bool,
}

/// Both of `first` and `second`, their statements sent in that order:
/// pipelined in one round trip when `pipelined`, else `second` sent once
/// `first` has its answer. Through a pooler in transaction mode nothing is
/// pipelined: PgBouncer keeps running the pipelined messages of a client
/// that died, and hands their answers to the next client.
async fn in_order<A, B>(
    pipelined: bool,
    first: impl Future<Output = Result<A>>,
    second: impl Future<Output = Result<B>>,
) -> Result<(A, B)> {
    if pipelined {
        futures_util::future::try_join(first, second).await
    } else {
        let a = first.await?;
        Ok((a, second.await?))
    }
}

/// A name for one run, unique enough among the runs of a database: its
/// start in nanoseconds and the process id.
pub(crate) fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{:x}-{:x}", nanos, std::process::id())
}

impl Migrator<'_> {
    /// Read the session facts (refusing a connection inside a transaction
    /// block), take the lock (naming this run in `application_name`, so
    /// that a waiting peer can say who holds it) and make sure the history
    /// table exists.
    pub(super) async fn locked_session<'c>(
        &'c self,
        client: &'c Client,
    ) -> Result<(Session<'c>, LockWait)> {
        match self.take_turn(client, &[], true, false).await? {
            Turn::Ours(session, lock) => Ok((*session, lock)),
            Turn::DoneByPeer(_) => {
                unreachable!("a wait with no digest to look for ends with the lock")
            }
        }
    }

    /// [`locked_session`](Self::locked_session), unless the history
    /// reaches one of the digests `done` while the run waits for the lock.
    /// A run that is `adopting` the database (stamp, repair) may find the
    /// history missing beside dbprep's other tables, and makes it. A run
    /// that found no digest before the lock says so (`digest_missing`):
    /// it looks for the tables more cheaply.
    pub(super) async fn take_turn<'c>(
        &'c self,
        client: &'c Client,
        done: &[HistoryDigest],
        adopting: bool,
        digest_missing: bool,
    ) -> Result<Turn<'c>> {
        let facts = session_facts(client).await?;
        if !facts.outside_transaction {
            return Err(inside_transaction_block());
        }
        if let Some(reason) = unsafe_server(&facts.version, facts.yb_transactional_ddl.as_deref()) {
            return Err(Error::config(format!(
                "dbprep cannot migrate this server safely: {reason} (nothing was written)"
            )));
        }
        let run_id = run_id();
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let application_name = format!("dbprep migrator {run_id} since {since}");
        // Through a pooler in transaction mode a session setting would stay
        // on a server connection that serves others next: the lease names
        // the run instead.
        let name = async {
            if self.lock_mode == LockMode::Session {
                client
                    .simple_query(&format!(
                        "SELECT pg_catalog.set_config('application_name', {}, false)",
                        literal(&application_name)
                    ))
                    .await
                    .map_err(Error::postgres("name the session"))?;
            }
            Ok(())
        };
        let lock = MigrationLock::new(&self.history, self.lock_mode, &run_id, &application_name);
        // With a session lock, the look at dbprep's tables goes with the
        // first try (a lease is taken in more steps): the server runs them
        // in order, so when that try takes the lock, the look was under
        // it; else it is taken again once the lock is.
        // So does the read of the digest and the newest rank, when there
        // was a digest before the lock: a run that knew the history from
        // it plans from that answer, and every run learns from it that the
        // digest row is there.
        let look_early = self.lock_mode == LockMode::Session;
        let look = async {
            if !look_early {
                return None;
            }
            let digest = async {
                if digest_missing {
                    None
                } else {
                    Some(self.history.digest_and_last_rank(client).await)
                }
            };
            let (tables, digest) = futures_util::future::join(
                self.history.look_at_tables(client, digest_missing),
                digest,
            )
            .await;
            Some((tables, digest))
        };
        // Named and trying the lock in one round trip: a peer that finds
        // the lock taken finds it named.
        let (named_and_locked, looked) = futures_util::future::join(
            futures_util::future::try_join(
                name,
                lock.acquire_unless_done(client, self.lock_wait, done),
            ),
            look,
        )
        .await;
        let ((), wait) = named_and_locked?;
        if wait.done_by_peer {
            if self.lock_mode == LockMode::Session {
                client
                    .simple_query(&format!(
                        "SELECT pg_catalog.set_config('application_name', {}, false)",
                        literal(&facts.application_name)
                    ))
                    .await
                    .map_err(Error::postgres("name the session"))?;
            }
            return Ok(Turn::DoneByPeer(wait));
        }
        let (looked, digest_read) = match looked.filter(|_| wait.tries == 1) {
            Some((tables, digest)) => (Some(tables), digest.and_then(Result::ok)),
            None => (None, None),
        };
        let found = match self
            .ensure_tables(client, adopting, digest_missing, looked, digest_read)
            .await
        {
            Ok(found) => found,
            Err(error) => {
                let _ = lock.release(client).await;
                return Err(error);
            }
        };
        let session = Session::new(
            client,
            &self.history,
            lock,
            facts,
            self.schema_snapshot,
            self.progress.as_deref(),
        )
        .with_lock_timeout(self.lock_timeout)
        // A snapshot table just made holds no snapshot to refresh.
        .taking_snapshot_whole(found.made_snapshot_table)
        .having_found_history(found.history)
        .having_read_digest(digest_read.filter(|_| !found.made_any));
        Ok(Turn::Ours(Box::new(session), wait))
    }

    /// Under the lock: create the history table and its digest if missing
    /// (in one transaction), or the digest alone for a history that has
    /// none (made before it, or dropped by hand), and the snapshot table.
    /// What it found and made; `looked`: what a look under the lock found,
    /// when one was taken, and `digest_read` the digest and newest rank
    /// read with it.
    async fn ensure_tables(
        &self,
        client: &Client,
        adopting: bool,
        digest_missing: bool,
        looked: Option<Result<Tables>>,
        digest_read: Option<Option<(HistoryDigest, i32)>>,
    ) -> Result<Found> {
        let history = &self.history;
        let tables = match looked {
            Some(tables) => tables?,
            None => history.look_at_tables(client, digest_missing).await?,
        };
        let mut sql = if !tables.history {
            // Its digest without the history (the digest is this history's
            // alone; the snapshot table may serve another history of the
            // schema): it was dropped by hand, and running every migration
            // again on the schema would be a guess.
            if !adopting && tables.digest {
                return Err(Error::DamagedHistory {
                    table: history.qualified(),
                    detail: format!(
                        "it is missing while its digest {} remains, so it was dropped by hand. If the schema is at a known version, record it with `stamp <version>` (Migrator::stamp); else restore the table from a backup, then run again",
                        history.digest_table()
                    ),
                });
            }
            // A history elsewhere is most likely this database's, found
            // without its schema: a new one here would apply every
            // migration again.
            if !self.history_schema_chosen && !tables.histories_elsewhere.is_empty() {
                return Err(Error::config(format!(
                    "this database has the history table {table} in schema {elsewhere}, not in {schema}, where a run looks when no schema is given: run with its schema (--history-schema, DBPREP_HISTORY_SCHEMA, Migrator::history_schema); to start another history in {schema}, name that schema the same way. Nothing was written",
                    table = ident(&history.table),
                    elsewhere = tables.histories_elsewhere,
                    schema = ident(&history.schema),
                )));
            }
            tracing::info!("creating the history table {}", history.qualified());
            history.create_sql(!tables.schema)
                + &history.create_digest_sql(HistoryDigest::default(), !tables.digest)
        } else if !(tables.digest
            && tables.digest_trigger_current
            && match digest_read {
                Some(read) => read.is_some(),
                None => history.digest_row_exists(client).await?,
            })
        {
            history.create_digest_sql(HistoryDigest::of_rows(&history.read(client).await?), false)
        } else {
            String::new()
        };
        let found = Found {
            history: match (tables.history, tables.history_as_made) {
                (false, _) => HistoryFound::Made,
                (true, true) => HistoryFound::AsMade,
                (true, false) => HistoryFound::Altered,
            },
            made_snapshot_table: tables.snapshot != SnapshotTable::Current,
            made_any: !sql.is_empty() || tables.snapshot != SnapshotTable::Current,
        };
        if !found.made_snapshot_table && sql.is_empty() {
            return Ok(found);
        }
        sql.push_str(&history.create_snapshot_sql(tables.snapshot == SnapshotTable::OldLayout));
        // No need to wait for the disk: what the run commits next is
        // flushed with it (the WAL is written in order), and a run that
        // commits nothing loses nothing if these tables are made again.
        // The digest function's body is dbprep's own, tested: not checking
        // it when it is created (as pg_dump does) spares a new session
        // compiling it. (Creating it still loads PL/pgSQL's library, for
        // its validator.)
        // `IF NOT EXISTS` and `IF EXISTS` say "skipping" in a notice, which
        // tokio-postgres logs: nothing an application should see at every
        // start-up.
        client
            .batch_execute(&format!(
                "BEGIN;\nSET LOCAL synchronous_commit = off;\nSET LOCAL check_function_bodies = off;\n\
                 SET LOCAL client_min_messages = warning;\n{sql}\nCOMMIT;"
            ))
            .await
            .map_err(Error::postgres(format!(
                "create the history table {}",
                history.qualified()
            )))?;
        Ok(found)
    }

    /// Under the lock, after a run: put the session back as it was, read
    /// the history as the run leaves it, write its digest (the batch left it
    /// "in progress"), release the lock and give the session back its
    /// `application_name`. A run that knew the history from its digest
    /// (`prefix`) reads only its own rows and, under a session lock on
    /// PostgreSQL 14+, does it all in one round trip.
    pub(super) async fn finish(
        &self,
        session: &Session<'_>,
        prefix: Option<Prefix>,
    ) -> Result<Ended> {
        let client = session.client;
        // A batch leaves the session reset, a failure or a no-transaction
        // migration as the last migration's `SET ROLE`, `search_path` or
        // timeouts made it: either way, put back the run's session (as
        // before each migration) before dbprep's own statements. Under a
        // session lock what follows goes in the same round trip: the server
        // runs it in order, the session put back first.
        let restore = async {
            client
                .batch_execute(&session.restore_session())
                .await
                .map_err(Error::postgres("restore the session after the migrations"))
        };
        let mut release = session.lock.release_sql();
        if session.lock.mode() == LockMode::Session {
            release.push_str(&format!(
                "\nSELECT pg_catalog.set_config('application_name', {}, false);",
                literal(&session.facts.application_name)
            ));
        }
        let pipelined = session.lock.mode() == LockMode::Session;
        if let Some(prefix) =
            prefix.filter(|_| pipelined && session.facts.server_version_num >= 140_000)
        {
            return self
                .finish_after_prefix(session, prefix, restore, &release)
                .await;
        }
        let read = in_order(
            pipelined,
            restore,
            self.history_at_end(session, prefix, pipelined),
        );
        let (ended, seen) = match read.await.map(|((), read)| read) {
            Ok(read) => read,
            Err(error) => {
                let _ = session.lock.release(client).await;
                return Err(error);
            }
        };
        // No digest row (deleted by hand during the run): the next run
        // makes it from the rows.
        let mut end = match seen {
            Some(seen) => self.history.finish_run_sql(ended.digest, seen),
            None => String::new(),
        };
        end.push_str(&release);
        if let Err(error) = client.batch_execute(&end).await {
            // The digest stays "in progress" (the next run writes it); the
            // lock must not outlive the run.
            let _ = client.batch_execute("ROLLBACK").await;
            let _ = session.lock.release(client).await;
            return Err(Error::postgres("write the history digest")(error));
        }
        Ok(ended)
    }

    /// [`finish`](Self::finish) of a run under a session lock that knew
    /// the history before it as `prefix`, in one round trip: `restore`,
    /// the digest and the rows the run wrote read, the digest written by
    /// the server from those rows (unless someone else changed the history
    /// meanwhile), and `release`.
    /// When the digest read says someone else did, the history is read
    /// whole and its digest written, guarded by what was read: the lock is
    /// released by then, and a run that took it since has changed the
    /// digest, which leaves the write undone.
    async fn finish_after_prefix(
        &self,
        session: &Session<'_>,
        prefix: Prefix,
        restore: impl Future<Output = Result<()>>,
        release: &str,
    ) -> Result<Ended> {
        let client = session.client;
        let end = self
            .history
            .finish_run_after_prefix_sql(&prefix, session.run_id())
            + release;
        let written = async {
            client
                .batch_execute(&end)
                .await
                .map_err(Error::postgres("write the history digest"))
        };
        let finished = futures_util::future::try_join4(
            restore,
            self.history.digest(client),
            self.history
                .read_run(client, session.run_id(), prefix.version),
            written,
        )
        .await;
        let (seen, rows) = match finished {
            Ok(((), seen, rows, ())) => (seen, rows),
            Err(error) => {
                // The digest stays "in progress" (the next run writes it);
                // the lock must not outlive the run.
                let _ = client.batch_execute("ROLLBACK").await;
                let _ = session.lock.release(client).await;
                return Err(error);
            }
        };
        if seen.map(HistoryDigest::unmarked) == Some(prefix.digest) {
            tracing::debug!("nobody else changed the history: reading this run's rows alone");
            return Ok(Ended::after(prefix, rows));
        }
        let ended = Ended::of(self.history.read(client).await?);
        // No digest row (deleted by hand during the run): the next run
        // makes it from the rows.
        if let Some(seen) = seen {
            client
                .batch_execute(&self.history.finish_run_sql(ended.digest, seen))
                .await
                .map_err(Error::postgres("write the history digest"))?;
        }
        Ok(ended)
    }

    /// The history as the run leaves it, and the digest seen before it
    /// was read. From the `prefix` known before the lock and the rows this
    /// run wrote (whose inserts left the digest alone), when the digest,
    /// "in progress" or not, is still the prefix's: the trigger adds every
    /// other change to it, so nobody else changed the history. Else read
    /// whole. The digest and the rows are asked for at once: the digest
    /// rarely says that the rows read are not enough (unless `pipelined`
    /// is false, one is read after the other).
    async fn history_at_end(
        &self,
        session: &Session<'_>,
        prefix: Option<Prefix>,
        pipelined: bool,
    ) -> Result<(Ended, Option<HistoryDigest>)> {
        let client = session.client;
        let Some(prefix) = prefix else {
            let (seen, rows) = in_order(
                pipelined,
                self.history.digest(client),
                self.history.read(client),
            )
            .await?;
            return Ok((Ended::of(rows), seen));
        };
        // The run applied what follows the prefix.
        let (seen, rows) = in_order(
            pipelined,
            self.history.digest(client),
            self.history
                .read_run(client, session.run_id(), prefix.version),
        )
        .await?;
        if seen.map(HistoryDigest::unmarked) == Some(prefix.digest) {
            tracing::debug!("nobody else changed the history: reading this run's rows alone");
            return Ok((Ended::after(prefix, rows), seen));
        }
        Ok((Ended::of(self.history.read(client).await?), seen))
    }
}

/// The history as a run leaves it.
pub(super) struct Ended {
    /// Its rows: every one, or, when the run knew the history from its
    /// digest, the ones the run wrote.
    pub rows: Vec<HistoryRow>,
    /// The newest version applied successfully.
    pub version: Option<i64>,
    /// The digest of the whole history.
    pub digest: HistoryDigest,
}

impl Ended {
    /// The history read whole: `rows`.
    fn of(rows: Vec<HistoryRow>) -> Ended {
        Ended {
            digest: HistoryDigest::of_rows(&rows),
            version: newest_applied(&rows),
            rows,
        }
    }

    /// The history known as `prefix` before the run, and the `rows` the
    /// run wrote after it.
    fn after(prefix: Prefix, rows: Vec<HistoryRow>) -> Ended {
        Ended {
            digest: prefix.digest.and_rows(&rows),
            version: newest_applied(&rows).max(prefix.version),
            rows,
        }
    }
}

/// The newest version of `rows` applied successfully.
fn newest_applied(rows: &[HistoryRow]) -> Option<i64> {
    rows.iter().filter(|r| r.success).map(|r| r.version).max()
}

#[cfg(test)]
mod tests {
    use super::unsafe_server;

    #[test]
    fn servers_without_transactional_ddl_are_refused() {
        assert!(unsafe_server("PostgreSQL 15.8 (Debian 15.8-0+deb12u1) on x86_64", None).is_none());
        let cockroach = "CockroachDB CCL v25.1.2 (x86_64-pc-linux-gnu, built 2025/03/10)";
        assert!(unsafe_server(cockroach, None)
            .unwrap()
            .contains("autocommit_before_ddl"));
        let yugabyte = "PostgreSQL 15.2-YB-2.25.1.0-b0 on x86_64-pc-linux-gnu";
        assert!(unsafe_server(yugabyte, None)
            .unwrap()
            .contains("ysql_yb_ddl_transaction_block_enabled"));
        assert!(unsafe_server(yugabyte, Some("off")).is_some());
        assert!(unsafe_server(yugabyte, Some("on")).is_none());
    }
}
