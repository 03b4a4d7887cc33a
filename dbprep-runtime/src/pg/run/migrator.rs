//! [`Migrator`]: the one call an application makes at start-up.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use deadpool_postgres::{Object, Pool};
use tokio_postgres::{CancelToken, Client, NoTls};

use crate::model::fixture::Fixtures;
use crate::model::history::RowKind;
use crate::model::history::{reconcile, VersionState};
use crate::model::migration::{Migration, Migrations};
use crate::pg::drift::indexes;
use crate::pg::drift::verify::{self, VerifyReport};
use crate::pg::error::{describe, Drift, Error, Result};
use crate::pg::report::{
    Applied, LockWait, RepairOptions, RepairReport, Report, Status, StatusEntry,
};
use crate::pg::run::batch::{Done, Progress, Session};
use crate::pg::run::lock::{LockMode, MigrationLock};
use crate::pg::run::plan::{self, Plan, Policies, Policy};
use crate::pg::run::session::{inside_transaction_block, session_facts};
use crate::pg::sql::literal;
use crate::pg::store::digest::{up_to_date_digests, HistoryDigest};
use crate::pg::store::history::{HistoryRow, NewRow};
use crate::pg::store::HistoryTable;

/// Applies embedded migrations to a database.
///
/// # Example
///
/// ```no_run
/// use dbprep_runtime::{Migrations, Migrator};
///
/// # async fn start(pool: deadpool_postgres::Pool, migrations: &'static Migrations) -> Result<(), dbprep_runtime::Error> {
/// let report = Migrator::new(migrations).run(&pool).await?;
/// println!("{report}");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Migrator<'m> {
    migrations: &'m Migrations,
    history: HistoryTable,
    target: Option<i64>,
    lock_wait: Duration,
    lock_mode: LockMode,
    policies: Policies,
    schema_policy: Policy,
    check_schema: bool,
    schema_snapshot: bool,
    fixtures: Option<&'m Fixtures>,
    fixture_policy: Policy,
    progress: Option<std::sync::Arc<Progress>>,
}

impl std::fmt::Debug for Migrator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Migrator")
            .field("migrations", &self.migrations.len())
            .field("history", &self.history)
            .field("target", &self.target)
            .field("lock_wait", &self.lock_wait)
            .finish_non_exhaustive()
    }
}

/// Cancels the server's current query when a run's future is dropped
/// before it finished (a timeout, a shutdown): the migration then rolls
/// back instead of running on unattended.
struct CancelOnDrop(Option<CancelToken>);

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
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl<'m> Migrator<'m> {
    /// A migrator for `migrations`, with the defaults: history in
    /// `public.dbprep_schema_history`, up to the newest version, wait up to
    /// 60 s for the lock, refuse every kind of drift.
    pub fn new(migrations: &'m Migrations) -> Self {
        Migrator {
            migrations,
            history: HistoryTable::default(),
            target: None,
            lock_wait: Duration::from_secs(60),
            lock_mode: LockMode::Session,
            policies: Policies::default(),
            schema_policy: Policy::Error,
            check_schema: false,
            schema_snapshot: true,
            fixtures: None,
            fixture_policy: Policy::Error,
            progress: None,
        }
    }

    /// The schema of the history table (created if missing).
    pub fn history_schema(mut self, schema: impl Into<String>) -> Self {
        self.history.schema = schema.into();
        self
    }

    /// The name of the history table.
    pub fn history_table(mut self, table: impl Into<String>) -> Self {
        self.history.table = table.into();
        self
    }

    /// Stop at `version` instead of the newest one. It must be an embedded
    /// version: an unknown one is an error before anything runs.
    pub fn target(mut self, version: i64) -> Self {
        self.target = Some(version);
        self
    }

    /// How long to wait for another migrator's lock before giving up.
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// How migrators keep out of each other's way: a session advisory lock
    /// (the default), or, for connections through a pooler in transaction
    /// mode (PgBouncer's `pool_mode = transaction`), a lease that every
    /// transaction of the run renews, with nothing set beyond a
    /// transaction. Every migrator of one database must use the same mode.
    ///
    /// ```
    /// # use dbprep_runtime::{LockMode, Migrations, Migrator};
    /// # static MIGRATIONS: Migrations = Migrations::empty();
    /// let migrator = Migrator::new(&MIGRATIONS).lock_mode(LockMode::Transaction);
    /// ```
    pub fn lock_mode(mut self, mode: LockMode) -> Self {
        self.lock_mode = mode;
        self
    }

    /// What to do with a pending version older than the newest applied one
    /// (Flyway's `outOfOrder`): refuse (default), or apply it.
    pub fn out_of_order(mut self, policy: Policy) -> Self {
        self.policies.out_of_order = policy;
        self
    }

    /// What to do when an applied migration's file was edited.
    pub fn on_edited(mut self, policy: Policy) -> Self {
        self.policies.edited = policy;
        self
    }

    /// What to do when the database has versions the binary does not know.
    ///
    /// By default a version *newer* than every embedded one (an older
    /// binary during a rolling deployment, or after a rollback) is a
    /// warning: the binary starts and writes nothing, as with Flyway's
    /// `ignoreFutureMigrations`. An unknown version *between* embedded ones
    /// (a deleted or renamed file) is an error. This sets both:
    /// `on_unknown(Policy::Error)` refuses to start behind the database.
    pub fn on_unknown(mut self, policy: Policy) -> Self {
        self.policies.unknown = policy;
        self.policies.future = policy;
        self
    }

    /// What `verify` (and `run`, with [`check_schema_on_run`]) does when
    /// the schema differs from the snapshot stored by the last run.
    ///
    /// [`check_schema_on_run`]: Self::check_schema_on_run
    pub fn on_schema_drift(mut self, policy: Policy) -> Self {
        self.schema_policy = policy;
        self
    }

    /// Compare the schema with the stored snapshot before a run applies
    /// anything (off by default: it costs a catalog scan at every start).
    pub fn check_schema_on_run(mut self, check: bool) -> Self {
        self.check_schema = check;
        self
    }

    /// Whether a run that changes the schema stores a full snapshot of it
    /// (the default), so that `verify` can say what was changed by hand
    /// since, or only its fingerprint: `verify` then still reports that the
    /// schema changed, not what. The snapshot is most of the time of a run
    /// that applies one migration to a large schema (about 60 ms of 100 at
    /// 200 tables, see BENCHMARKS.md).
    ///
    /// ```
    /// # use dbprep_runtime::{Migrations, Migrator};
    /// # static MIGRATIONS: Migrations = Migrations::empty();
    /// let migrator = Migrator::new(&MIGRATIONS).schema_snapshot(false);
    /// ```
    pub fn schema_snapshot(mut self, itemize: bool) -> Self {
        self.schema_snapshot = itemize;
        self
    }

    /// The fixtures the binary embeds, so that `verify` reports those
    /// whose content changed since they were populated.
    pub fn fixtures(mut self, fixtures: &'m Fixtures) -> Self {
        self.fixtures = Some(fixtures);
        self
    }

    /// What `verify` does with a populated fixture whose file changed since.
    pub fn on_fixture_changed(mut self, policy: Policy) -> Self {
        self.fixture_policy = policy;
        self
    }

    /// Call `progress(done, total)` after each migration a run applies (a
    /// progress bar, a log line).
    pub fn on_progress(mut self, progress: impl Fn(usize, usize) + Send + Sync + 'static) -> Self {
        self.progress = Some(std::sync::Arc::new(progress));
        self
    }

    /// The history table this migrator uses.
    pub fn history(&self) -> &HistoryTable {
        &self.history
    }

    fn check_target(&self) -> Result<()> {
        match self.target {
            Some(t)
                if self.migrations.get(t).is_none()
                    && !self.migrations.baselines().iter().any(|b| b.version() == t) =>
            {
                Err(Error::UnknownTarget(t))
            }
            _ => Ok(()),
        }
    }

    /// Bring the database up to the target.
    ///
    /// The whole run happens on one connection taken out of the pool and
    /// closed afterwards, so no lock or failed transaction ever returns to
    /// the pool. When nothing is pending the run is one round trip, with no
    /// lock and no write.
    ///
    /// # Errors
    ///
    /// A failed migration (with file, line and column), a dirty database,
    /// drift the policies refuse, a lock wait that ran out, or a connection
    /// error.
    pub async fn run(&self, pool: &Pool) -> Result<Report> {
        self.check_target()?;
        let client = take(pool).await?;
        self.run_on(&client).await
    }

    /// [`run`](Self::run) on a connection the caller owns. Afterwards the
    /// session has the role, search path and `application_name` it had
    /// before, and every other setting at its default (each migration starts
    /// from `RESET ALL`). The connection should be used for nothing else
    /// afterwards if the run fails. A connection inside a transaction block
    /// is refused when something is pending (each migration commits on its
    /// own, which would commit that transaction too).
    pub async fn run_on(&self, client: &Client) -> Result<Report> {
        self.check_target()?;
        let started = Instant::now();
        if self.check_schema {
            let report = self.verify_on(client).await?;
            let schema: Vec<Drift> = report
                .findings
                .into_iter()
                .filter(|f| matches!(f.drift, Drift::Schema { .. }))
                .map(|f| f.drift)
                .collect();
            match self.schema_policy {
                Policy::Error if !schema.is_empty() => return Err(Error::Drift(schema)),
                Policy::Warn => schema.iter().for_each(|d| tracing::warn!("{d}")),
                _ => {}
            }
        }
        let digest = self.history.digest(client).await?;
        tracing::debug!("read the history digest ({:?})", started.elapsed());
        let expected = up_to_date_digests(self.migrations, self.target);
        if digest.is_some_and(|d| expected.contains(&d)) {
            let version = self.target.or(self.migrations.head());
            tracing::info!(
                "database up to date at version {} ({:?})",
                show(version),
                started.elapsed()
            );
            return Ok(Report {
                applied: Vec::new(),
                version,
                elapsed: started.elapsed(),
                lock: None,
            });
        }
        if let Some(digest) = digest {
            if let Some(version) = self.needs_nothing(client, digest).await? {
                tracing::info!(
                    "database at version {}, nothing to apply ({:?})",
                    show(version),
                    started.elapsed()
                );
                return Ok(Report {
                    applied: Vec::new(),
                    version,
                    elapsed: started.elapsed(),
                    lock: None,
                });
            }
        }
        if digest.is_none() && self.migrations.is_empty() {
            return Ok(Report {
                applied: Vec::new(),
                version: None,
                elapsed: started.elapsed(),
                lock: None,
            });
        }
        let guard = CancelOnDrop(Some(client.cancel_token()));
        let step = Instant::now();
        let locked = async {
            let (session, lock) = match self.take_turn(client, &expected).await? {
                Turn::Ours(session, lock) => (session, lock),
                Turn::DoneByPeer(lock) => return Ok(Err(lock)),
            };
            tracing::info!(
                "took the migration lock and checked the history tables ({:?})",
                step.elapsed()
            );
            let result = self.apply(&session).await;
            // The batch ended its transaction (or rolled it back), so the
            // session can finish the run even after a failure; closing the
            // connection would release the lock too, but only once the
            // server notices.
            let finished = self.finish(&session).await;
            Ok::<_, Error>(Ok((result, finished, lock)))
        }
        .await;
        // Over, failed or not: only a future dropped mid-way cancels; an
        // error returned early must not cancel the caller's next query on
        // this connection.
        guard.disarm();
        let (result, finished, lock) = match locked? {
            Ok(locked) => locked,
            Err(lock) => {
                return Ok(Report {
                    applied: Vec::new(),
                    version: self.target.or(self.migrations.head()),
                    elapsed: started.elapsed(),
                    lock: Some(lock),
                })
            }
        };
        let done = result?;
        let rows = finished?;
        let applied = done
            .iter()
            .filter_map(|d| {
                let m = self.find(d.version)?;
                let row = rows.iter().find(|r| r.version == d.version);
                let duration = row.map_or(d.elapsed, |r| {
                    Duration::from_millis(r.execution_ms.max(0) as u64)
                });
                Some(Applied {
                    version: m.version(),
                    name: m.name().to_owned(),
                    file: m.file().to_owned(),
                    duration,
                })
            })
            .collect();
        let version = rows.iter().filter(|r| r.success).map(|r| r.version).max();
        let report = Report {
            applied,
            version,
            elapsed: started.elapsed(),
            lock: Some(lock),
        };
        tracing::info!(
            "applied {} migration(s), database at version {} ({:?})",
            report.applied.len(),
            show(version),
            report.elapsed
        );
        Ok(report)
    }

    /// Whether a history whose digest is not one this binary leaves needs
    /// nothing from it all the same, read without the lock: a newer binary
    /// applied versions this one does not embed (a rolling deployment, a
    /// rollback), which the policies may accept. Only when the digest is a
    /// faithful summary of the rows (not a run's "in progress", not stale),
    /// nothing is pending and no row is unfinished; anything else is left
    /// to the run under the lock, which reads the history again. `Some`
    /// with the version the database is at.
    async fn needs_nothing(
        &self,
        client: &Client,
        digest: HistoryDigest,
    ) -> Result<Option<Option<i64>>> {
        let rows = self.history.read(client).await?;
        if HistoryDigest::of_rows(&rows) != digest || rows.iter().any(|r| !r.success) {
            return Ok(None);
        }
        match Plan::new(self.migrations, &rows, self.target, self.policies) {
            Ok(plan) if plan.pending.is_empty() => Ok(Some(rows.iter().map(|r| r.version).max())),
            _ => Ok(None),
        }
    }

    /// Under the lock, after a run: put the session back as it was, read
    /// the history as the run leaves it, write its digest (the batch left it
    /// "in progress"), release the lock and give the session back its
    /// `application_name`, in three round trips.
    async fn finish(&self, session: &Session<'_>) -> Result<Vec<HistoryRow>> {
        let client = session.client;
        // A batch leaves the session reset, a failure or a no-transaction
        // migration as the last migration's `SET ROLE`, `search_path` or
        // timeouts made it: either way, put back the run's session (as
        // before each migration) before dbprep's own statements.
        let read = async {
            client
                .batch_execute(&session.restore_session())
                .await
                .map_err(Error::postgres("restore the session after the migrations"))?;
            self.history.read(client).await
        };
        let rows = match read.await {
            Ok(rows) => rows,
            Err(error) => {
                let _ = session.lock.release(client).await;
                return Err(error);
            }
        };
        let mut end = self
            .history
            .finish_run_sql(&rows, &session.lock.release_sql());
        if session.lock.mode() == LockMode::Session {
            end.push_str(&format!(
                "\nSELECT pg_catalog.set_config('application_name', {}, false);",
                literal(&session.caller_application_name)
            ));
        }
        if let Err(error) = client.batch_execute(&end).await {
            // The digest stays "in progress" (the next run writes it); the
            // lock must not outlive the run.
            let _ = client.batch_execute("ROLLBACK").await;
            let _ = session.lock.release(client).await;
            return Err(Error::postgres("write the history digest")(error));
        }
        Ok(rows)
    }

    fn find(&self, version: i64) -> Option<&'m Migration> {
        self.migrations.get(version).or_else(|| {
            self.migrations
                .baselines()
                .iter()
                .find(|b| b.version() == version)
        })
    }

    /// Read the session facts (refusing a connection inside a transaction
    /// block), take the lock (naming this run in `application_name`, so
    /// that a waiting peer can say who holds it) and make sure the history
    /// table exists.
    async fn locked_session<'c>(&'c self, client: &'c Client) -> Result<(Session<'c>, LockWait)> {
        match self.take_turn(client, &[]).await? {
            Turn::Ours(session, lock) => Ok((*session, lock)),
            Turn::DoneByPeer(_) => {
                unreachable!("a wait with no digest to look for ends with the lock")
            }
        }
    }

    /// [`locked_session`](Self::locked_session), unless the history
    /// reaches one of the digests `done` while the run waits for the lock.
    async fn take_turn<'c>(
        &'c self,
        client: &'c Client,
        done: &[HistoryDigest],
    ) -> Result<Turn<'c>> {
        let facts = session_facts(client).await?;
        if !facts.outside_transaction {
            return Err(inside_transaction_block());
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
        if self.lock_mode == LockMode::Session {
            client
                .simple_query(&format!(
                    "SELECT pg_catalog.set_config('application_name', {}, false)",
                    literal(&application_name)
                ))
                .await
                .map_err(Error::postgres("name the session"))?;
        }
        let lock = MigrationLock::new(&self.history, self.lock_mode, &run_id, &application_name);
        let wait = lock
            .acquire_unless_done(client, self.lock_wait, done)
            .await?;
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
        if let Err(error) = self.ensure_tables(client).await {
            let _ = lock.release(client).await;
            return Err(error);
        }
        let session = Session {
            client,
            history: &self.history,
            lock,
            run_id,
            application_name,
            caller_application_name: facts.application_name.clone(),
            applied_by: facts.user.clone(),
            session_user: facts.session_user.clone(),
            role: facts.role.clone(),
            search_path: facts.search_path.clone(),
            server_version_num: facts.server_version_num,
            schema_snapshot: self.schema_snapshot,
            progress: self.progress.as_deref(),
            done: Default::default(),
            total: Default::default(),
        };
        Ok(Turn::Ours(Box::new(session), wait))
    }

    /// Under the lock: create the history table and its digest if missing
    /// (in one transaction), or the digest alone for a history that has
    /// none (made before it, or dropped by hand).
    async fn ensure_tables(&self, client: &Client) -> Result<()> {
        let history = &self.history;
        let mut sql = if !history.exists(client).await? {
            tracing::info!("creating the history table {}", history.qualified());
            let create_schema = !history.schema_exists(client).await?;
            history.create_sql(create_schema) + &history.create_digest_sql(HistoryDigest::default())
        } else if !history.digest_is_current(client).await? {
            history.create_digest_sql(HistoryDigest::of_rows(&history.read(client).await?))
        } else {
            String::new()
        };
        sql.push_str(&history.create_snapshot_sql());
        // No need to wait for the disk: what the run commits next is
        // flushed with it (the WAL is written in order), and a run that
        // commits nothing loses nothing if these tables are made again.
        // The digest function's body is dbprep's own, tested: not checking
        // it when it is created (as pg_dump does) spares a new session
        // loading PL/pgSQL, which a batch never calls (1.3 against 0.1 ms).
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
            )))
    }

    /// Store the schema snapshot in a transaction of its own (after a
    /// no-transaction migration, or a stamp).
    async fn store_snapshot(&self, session: &Session<'_>) -> Result<()> {
        session
            .client
            .batch_execute(&format!(
                "BEGIN;\n{}COMMIT;",
                self.history
                    .store_snapshot_sql(self.schema_snapshot, &self.history.live_schema())
            ))
            .await
            .map_err(Error::postgres("store the schema snapshot"))
    }

    /// Under the lock: read the history again, plan, apply.
    async fn apply(&self, session: &Session<'_>) -> Result<Vec<Done>> {
        let rows = self.history.read(session.client).await?;
        let plan = match Plan::new(self.migrations, &rows, self.target, self.policies) {
            Ok(plan) => plan,
            // Under the lock nobody else is running it: dirty, and what it
            // left behind is named.
            Err(Error::Dirty { version, file, .. }) => {
                return Err(Error::Dirty {
                    version,
                    file,
                    invalid_indexes: indexes::invalid(session.client).await?,
                })
            }
            Err(error) => return Err(error),
        };
        if plan.pending.is_empty() {
            return Ok(Vec::new());
        }
        tracing::info!("applying {} migration(s)", plan.pending.len());
        session
            .total
            .store(plan.pending.len(), std::sync::atomic::Ordering::Relaxed);
        let mut done = Vec::new();
        let mut rank = rows.iter().map(|r| r.installed_rank).max().unwrap_or(0) + 1;
        // Consecutive transactional migrations share one pipelined round
        // trip; a no-transaction migration runs alone.
        for segment in plan
            .pending
            .chunk_by(|a, b| !a.no_transaction() && !b.no_transaction())
        {
            let step = Instant::now();
            if segment[0].no_transaction() {
                done.push(session.apply_without_transaction(segment[0], rank).await?);
                tracing::info!(
                    "applied migration {} outside a transaction ({:?})",
                    segment[0].version(),
                    step.elapsed()
                );
                if segment.as_ptr_range().end == plan.pending.as_ptr_range().end {
                    self.store_snapshot(session).await?;
                }
            } else {
                done.append(&mut session.apply_pipelined(segment, rank).await?);
                tracing::info!(
                    "applied migrations {}..={} in one pipelined round trip ({:?})",
                    segment[0].version(),
                    segment[segment.len() - 1].version(),
                    step.elapsed()
                );
            }
            rank += segment.len() as i32;
        }
        Ok(done)
    }

    /// The state of every version: applied (when, how long), pending,
    /// unknown, edited, dirty. Read-only, without the lock.
    ///
    /// # Errors
    ///
    /// A connection or query error.
    pub async fn status(&self, pool: &Pool) -> Result<Status> {
        let client = pool.get().await.map_err(pool_error)?;
        let rows = if self.history.exists(&client).await? {
            self.history.read(&client).await?
        } else {
            Vec::new()
        };
        let running = verify::running_holder(&client, &self.history, &rows).await?;
        let entries = reconcile(self.migrations, &rows)
            .iter()
            .map(|entry| StatusEntry {
                version: entry.version,
                name: entry.name().to_owned(),
                file: entry.embedded.map(|m| m.file().to_owned()),
                state: plan::state(entry, running.as_ref()),
            })
            .collect();
        Ok(Status {
            entries,
            invalid_indexes: indexes::invalid(&client).await?,
        })
    }

    /// Record versions up to `target` (default: the newest) as applied
    /// without running them: adopting a database whose schema was made by
    /// other means.
    ///
    /// # Errors
    ///
    /// An unknown target, a dirty database, or a connection error.
    pub async fn stamp(&self, pool: &Pool, target: Option<i64>) -> Result<Report> {
        let migrator = Migrator {
            target: target.or(self.target),
            ..self.clone()
        };
        migrator.check_target()?;
        let started = Instant::now();
        let client = take(pool).await?;
        let (session, lock) = migrator.locked_session(&client).await?;
        let rows = migrator.history.read(&client).await?;
        let plan = Plan::new(
            migrator.migrations,
            &rows,
            migrator.target,
            Policies {
                out_of_order: Policy::Allow,
                ..migrator.policies
            },
        )?;
        let mut sql = String::from("BEGIN;\n");
        let first_rank = rows.iter().map(|r| r.installed_rank).max().unwrap_or(0) + 1;
        for (i, m) in plan.pending.iter().enumerate() {
            let row = NewRow::of(
                m,
                first_rank + i as i32,
                &session.applied_by,
                literal(&session.run_id),
            );
            sql.push_str(&migrator.history.insert_sql(&NewRow {
                kind: format!("'{}'", RowKind::Stamp),
                ..row
            }));
        }
        sql.push_str("COMMIT;");
        client
            .batch_execute(&sql)
            .await
            .map_err(Error::postgres("stamp the history"))?;
        migrator.store_snapshot(&session).await?;
        session.lock.release(&client).await?;
        let applied = plan
            .pending
            .iter()
            .map(|m| Applied {
                version: m.version(),
                name: m.name().to_owned(),
                file: m.file().to_owned(),
                duration: Duration::ZERO,
            })
            .collect();
        let version = rows
            .iter()
            .map(|r| r.version)
            .chain(plan.pending.iter().map(|m| m.version()))
            .max();
        Ok(Report {
            applied,
            version,
            elapsed: started.elapsed(),
            lock: Some(lock),
        })
    }

    /// Remove dirty rows (so those migrations run again) and accept edited
    /// files by recording their new checksums.
    ///
    /// # Errors
    ///
    /// A connection or query error.
    pub async fn repair(&self, pool: &Pool) -> Result<RepairReport> {
        self.repair_with(pool, RepairOptions::default()).await
    }

    /// [`repair`](Self::repair), and with
    /// [`RepairOptions::drop_invalid_indexes`] first drop the INVALID
    /// indexes a failed `CREATE INDEX CONCURRENTLY` left (each with `DROP
    /// INDEX CONCURRENTLY`, under the migration lock), so that the rerun
    /// builds them instead of skipping them.
    ///
    /// # Errors
    ///
    /// A connection or query error; a dropped index stays dropped when a
    /// later step fails.
    pub async fn repair_with(&self, pool: &Pool, options: RepairOptions) -> Result<RepairReport> {
        let client = take(pool).await?;
        if !self.history.exists(&client).await? {
            return Ok(RepairReport::default());
        }
        let (session, _) = self.locked_session(&client).await?;
        let mut report = RepairReport::default();
        let invalid = indexes::invalid(&client).await?;
        if options.drop_invalid_indexes {
            for index in invalid {
                client
                    .simple_query(&index.drop_sql())
                    .await
                    .map_err(Error::postgres(format!("drop the invalid index {index}")))?;
                tracing::info!("dropped the invalid index {index}");
                report.dropped_indexes.push(index);
            }
        } else {
            report.invalid_indexes = invalid;
        }
        let rows = self.history.read(&client).await?;
        let mut sql = String::from("BEGIN;\n");
        for entry in reconcile(self.migrations, &rows) {
            let version = entry.version;
            match (entry.state, entry.embedded) {
                // Under the lock nobody is running it: dirty.
                (VersionState::Unfinished, _) => {
                    sql.push_str(&self.history.delete_sql(version));
                    report.removed_dirty.push(version);
                }
                (VersionState::Edited { .. }, Some(m)) => {
                    sql.push_str(&self.history.set_checksum_sql(version, m.checksum()));
                    report.realigned.push(version);
                }
                _ => {}
            }
        }
        sql.push_str("COMMIT;");
        client
            .batch_execute(&sql)
            .await
            .map_err(Error::postgres("repair the history"))?;
        session.lock.release(&client).await?;
        Ok(report)
    }

    /// Compare the database with the embedded migrations and report every
    /// difference: edited, unknown, out-of-order pending and dirty
    /// migrations, and schema changes made outside migrations since the
    /// last run (with what changed). Read-only: it works with a role that
    /// may only SELECT, and on a hot standby.
    ///
    /// # Errors
    ///
    /// A connection or query error; drift is reported, not returned as an
    /// error (see [`VerifyReport::is_clean`]).
    pub async fn verify(&self, pool: &Pool) -> Result<VerifyReport> {
        let client = pool.get().await.map_err(pool_error)?;
        self.verify_on(&client).await
    }

    /// [`verify`](Self::verify) on a connection the caller owns.
    pub async fn verify_on(&self, client: &Client) -> Result<VerifyReport> {
        let observed = verify::read(client, &self.history).await?;
        let mut report =
            verify::report(self.migrations, observed, self.policies, self.schema_policy);
        if let Some(fixtures) = self.fixtures {
            report.findings.extend(
                verify::fixtures(client, &self.history, fixtures, self.fixture_policy).await?,
            );
        }
        Ok(report)
    }

    /// Load a fixture in one transaction, recorded in
    /// `dbprep_fixture_history` beside the migration history (see
    /// [`populate`](crate::pg::populate::populate)).
    ///
    /// # Errors
    ///
    /// As [`populate`](crate::pg::populate::populate).
    pub async fn populate(
        &self,
        pool: &Pool,
        fixture: &crate::model::fixture::Fixture,
        conflict: Option<crate::pg::populate::Conflict>,
    ) -> Result<crate::pg::populate::PopulateReport> {
        crate::pg::populate::populate(
            pool,
            &self.history,
            fixture,
            conflict,
            self.lock_mode,
            self.lock_wait,
        )
        .await
    }

    /// The history rows, in version order (empty when the table is missing).
    ///
    /// # Errors
    ///
    /// A connection or query error.
    pub async fn history_rows(&self, pool: &Pool) -> Result<Vec<HistoryRow>> {
        let client = pool.get().await.map_err(pool_error)?;
        if !self.history.exists(&client).await? {
            return Ok(Vec::new());
        }
        self.history.read(&client).await
    }
}

/// Take a connection out of the pool for good: it is closed when dropped,
/// so a session lock or a failed transaction can never return to the pool.
async fn take(pool: &Pool) -> Result<deadpool_postgres::ClientWrapper> {
    let object = pool.get().await.map_err(pool_error)?;
    Ok(Object::take(object))
}

/// How a run's wait for the lock ended.
enum Turn<'c> {
    /// The lock is the run's, with its session.
    Ours(Box<Session<'c>>, LockWait),
    /// Another migrator applied what the run came to apply.
    DoneByPeer(LockWait),
}

fn pool_error(error: deadpool_postgres::PoolError) -> Error {
    match error {
        deadpool_postgres::PoolError::Backend(e) => Error::Connect(describe(&e)),
        other => Error::Connect(other.to_string()),
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

fn show(version: Option<i64>) -> String {
    version.map_or("none".into(), |v| v.to_string())
}
