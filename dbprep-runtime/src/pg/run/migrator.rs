//! [`Migrator`]: the one call an application makes at start-up.

use std::time::{Duration, Instant};

use deadpool_postgres::{Object, Pool};
use tokio_postgres::Client;
use tracing::Instrument;

use super::session::{CancelOnDrop, Turn};
use crate::model::fixture::Fixtures;
use crate::model::history::{reconcile, RowKind};
use crate::model::migration::{Migration, Migrations};
use crate::pg::connect::pool_error;
use crate::pg::drift::indexes::{self, InvalidIndex};
use crate::pg::drift::verify::{self, VerifyReport};
use crate::pg::error::{Drift, Error, Result};
use crate::pg::report::{show, Applied, LockHolder, RepeatableStatus, Report, Status, StatusEntry};
use crate::pg::run::batch::{Done, HistoryFound, Progress, Session};
use crate::pg::run::lock::LockMode;
use crate::pg::run::plan::{self, Plan, Policies, Policy};
use crate::pg::run::retry;
use crate::pg::store::digest::{applied_prefix, up_to_date_digests, HistoryDigest, Prefix};
use crate::pg::store::fixtures::PopulatedFixture;
use crate::pg::store::history::HistoryRow;
use crate::pg::store::HistoryTable;

/// A transaction open for longer than this (or than the lock timeout)
/// before a batch is worth a warning.
const LONG_TRANSACTION: Duration = Duration::from_secs(1);

/// How long a transactional migration waits for a lock by default.
const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(2);
/// How many times a migration that ran out of its lock timeout is retried
/// by default.
const DEFAULT_LOCK_RETRIES: u32 = 5;

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
    pub(crate) migrations: &'m Migrations,
    pub(crate) history: HistoryTable,
    /// Whether the history's schema was chosen, not left to the default.
    pub(crate) history_schema_chosen: bool,
    pub(crate) target: Option<i64>,
    pub(crate) lock_wait: Duration,
    pub(crate) lock_mode: LockMode,
    pub(crate) lock_timeout: Duration,
    pub(crate) lock_retries: u32,
    pub(crate) policies: Policies,
    pub(crate) schema_policy: Policy,
    pub(crate) check_schema: bool,
    pub(crate) schema_snapshot: bool,
    pub(crate) fixtures: Option<&'m Fixtures>,
    pub(crate) fixture_policy: Policy,
    pub(crate) progress: Option<std::sync::Arc<Progress>>,
}

/// The history as a run knew it before taking the lock: under the lock, a
/// digest still the same spares reading it (again).
pub(super) enum KnownBefore {
    /// The rows as read, and the digest that summed them up.
    Rows {
        digest: HistoryDigest,
        rows: Vec<HistoryRow>,
    },
    /// A prefix of the embedded versions, known from the digest alone.
    Prefix(Prefix),
}

impl KnownBefore {
    /// The prefix, when the history was known from its digest alone.
    pub(super) fn prefix(&self) -> Option<Prefix> {
        match self {
            KnownBefore::Prefix(prefix) => Some(*prefix),
            KnownBefore::Rows { .. } => None,
        }
    }
}

/// The history under the lock, as a run plans from it.
enum KnownUnderLock {
    /// Its rows.
    Rows(Vec<HistoryRow>),
    /// A prefix of the embedded versions, and the newest `installed_rank`.
    Prefix { applied: usize, last_rank: i32 },
}

/// What the history read without the lock says.
enum Unlocked {
    /// Nothing to apply: the database is at this version.
    AtVersion(Option<i64>),
    /// Something may be due, to be seen under the lock; the history as
    /// known, when the digest summed it up faithfully.
    Due(Option<KnownBefore>),
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

impl<'m> Migrator<'m> {
    /// A migrator for `migrations`, with the defaults: history in
    /// `public.dbprep_schema_history`, up to the newest version, wait up to
    /// 60 s for the lock, each transactional migration under a 2 s
    /// `lock_timeout` retried up to 5 times, refuse every kind of drift.
    pub fn new(migrations: &'m Migrations) -> Self {
        Migrator {
            migrations,
            history: HistoryTable::default(),
            history_schema_chosen: false,
            target: None,
            lock_wait: Duration::from_secs(60),
            lock_mode: LockMode::Session,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            lock_retries: DEFAULT_LOCK_RETRIES,
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
    ///
    /// Left to its default (`public`), a run refuses to create the history
    /// there while the database has one of that name in another schema:
    /// that one is most likely the database's, and a new history would
    /// apply every migration again. Naming the schema, `public` too,
    /// creates it.
    pub fn history_schema(mut self, schema: impl Into<String>) -> Self {
        self.history.schema = schema.into();
        self.history_schema_chosen = true;
        self
    }

    /// The name of the history table.
    pub fn history_table(mut self, table: impl Into<String>) -> Self {
        self.history.table = table.into();
        self
    }

    /// The schemas the schema snapshot describes and `verify` compares
    /// (default: every schema of the database but the system's), for an
    /// application that owns some schemas of a database shared with others.
    ///
    /// ```
    /// # use dbprep_runtime::{Migrations, Migrator};
    /// # static MIGRATIONS: Migrations = Migrations::empty();
    /// let migrator = Migrator::new(&MIGRATIONS)
    ///     .history_schema("billing")
    ///     .snapshot_schemas(["billing"]);
    /// ```
    pub fn snapshot_schemas<S: Into<String>>(
        mut self,
        schemas: impl IntoIterator<Item = S>,
    ) -> Self {
        self.history.snapshot_schemas = schemas.into_iter().map(Into::into).collect();
        self
    }

    /// How long a transactional migration may wait for a lock on a table
    /// before it gives up, is rolled back (so the application's queries
    /// stop queueing behind it) and is tried again (default 2 s; zero:
    /// wait as long as it takes, the server's own `lock_timeout` applies).
    /// A file's `-- dbprep:lock-timeout 5s` wins over it.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// How many times a migration that ran out of its lock timeout is
    /// tried again, after a growing, jittered pause, before the run fails
    /// naming the sessions that blocked it (default 5).
    pub fn lock_retries(mut self, retries: u32) -> Self {
        self.lock_retries = retries;
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

    /// Whether a run stores the schema snapshot with every object's
    /// definition (the default), so that `verify` can say what was changed
    /// by hand since, or which objects exist alone: `verify` then still
    /// reports that the schema changed, not how. A run reads again only the
    /// objects whose catalog rows were written since the stored snapshot,
    /// so definitions cost little after the first run (see BENCHMARKS.md).
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

    pub(crate) fn check_target(&self) -> Result<()> {
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
    ///
    /// The run is a `tracing` span `dbprep.run` (fields `history`,
    /// `target`, and at its end `outcome`, `applied`, `version`,
    /// `elapsed_ms`), with a span `dbprep.migration` per migration it
    /// applied or that failed (`version`, `name`, `file`, `duration_ms`,
    /// `outcome`), so an application's subscriber (JSON logs,
    /// OpenTelemetry) gets them as fields.
    pub async fn run_on(&self, client: &Client) -> Result<Report> {
        let span = tracing::info_span!(
            "dbprep.run",
            history = %self.history.qualified(),
            target = ?self.target,
            outcome = tracing::field::Empty,
            applied = tracing::field::Empty,
            version = tracing::field::Empty,
            elapsed_ms = tracing::field::Empty,
        );
        let started = Instant::now();
        let result = self.run_untraced(client).instrument(span.clone()).await;
        trace_run(&span, &result, started.elapsed());
        result
    }

    async fn run_untraced(&self, client: &Client) -> Result<Report> {
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
        // A set with repeatable migrations reads their checksums too (one
        // more round trip): a changed view is due with no version pending.
        let versions_current = digest.is_some_and(|d| expected.contains(&d));
        if versions_current && !self.repeatables_due(client).await? {
            let version = self.target.or(self.migrations.head());
            tracing::info!(
                "database up to date at version {} ({:?})",
                show(version),
                started.elapsed()
            );
            return Ok(Report::nothing_applied(version, started.elapsed(), None));
        }
        let mut known_before = None;
        if let Some(digest) = digest.filter(|_| !versions_current) {
            match self.look_without_lock(client, digest).await? {
                Unlocked::AtVersion(version) => {
                    if self.repeatables_due(client).await? {
                        return self.run_locked(client, started, &[], None, false).await;
                    }
                    tracing::info!(
                        "database at version {}, nothing to apply ({:?})",
                        show(version),
                        started.elapsed()
                    );
                    return Ok(Report::nothing_applied(version, started.elapsed(), None));
                }
                Unlocked::Due(known) => known_before = known,
            }
        }
        if digest.is_none() && self.migrations.is_empty() {
            return Ok(Report::nothing_applied(None, started.elapsed(), None));
        }
        // While it waits for the lock, a run stops when a peer leaves the
        // history as this run would; a repeatable migration leaves no trace
        // there, so a run that applies them takes its turn.
        let done: &[HistoryDigest] = if self.runs_repeatables() {
            &[]
        } else {
            &expected
        };
        self.run_locked(client, started, done, known_before, digest.is_none())
            .await
    }

    /// The run under the lock (unless a peer leaves the history at one of
    /// the digests `done` while this run waits for it), with the history
    /// as read before it, if it was, or `digest_missing` when no digest
    /// was found.
    async fn run_locked(
        &self,
        client: &Client,
        started: Instant,
        done: &[HistoryDigest],
        known_before: Option<KnownBefore>,
        digest_missing: bool,
    ) -> Result<Report> {
        let guard = CancelOnDrop(Some(client.cancel_token()));
        let step = Instant::now();
        let locked = async {
            let (session, lock) = match self.take_turn(client, done, false, digest_missing).await? {
                Turn::Ours(session, lock) => (session, lock),
                Turn::DoneByPeer(lock) => return Ok(Err(lock)),
            };
            tracing::info!(
                "took the migration lock and checked the history tables ({:?})",
                step.elapsed()
            );
            let mut retries = Vec::new();
            // A history table changed by hand is read (and its damage
            // named), never known from its digest alone.
            let known_before = known_before.filter(|known| {
                known.prefix().is_none() || session.history_found() == HistoryFound::AsMade
            });
            // A history the run has just made is empty before it: the
            // run's rows are all of it.
            let prefix = match known_before.as_ref() {
                None if session.history_found() == HistoryFound::Made => Some(Prefix {
                    digest: HistoryDigest::default(),
                    applied: 0,
                    version: None,
                }),
                known => known.and_then(KnownBefore::prefix),
            };
            let result = self
                .apply_with_retries(&session, &mut retries, known_before)
                .await;
            let repeated = match result {
                Ok(_) => self.apply_repeatables(&session).await,
                Err(_) => Ok(Vec::new()),
            };
            // The batch ended its transaction (or rolled it back), so the
            // session can finish the run even after a failure; closing the
            // connection would release the lock too, but only once the
            // server notices.
            let finished = self.finish(&session, prefix).await;
            Ok::<_, Error>(Ok((result, repeated, finished, lock, retries)))
        }
        .await;
        // Over, failed or not: only a future dropped mid-way cancels; an
        // error returned early must not cancel the caller's next query on
        // this connection.
        guard.disarm();
        let (result, repeated, finished, lock, lock_retries) = match locked? {
            Ok(locked) => locked,
            Err(lock) => {
                return Ok(Report::nothing_applied(
                    self.target.or(self.migrations.head()),
                    started.elapsed(),
                    Some(lock),
                ))
            }
        };
        let done = result?;
        let repeatables = repeated?;
        let ended = finished?;
        let applied = done
            .iter()
            .filter_map(|d| {
                let row = ended.rows.iter().find(|r| r.version == d.version);
                // A baseline shares its version with the migration it
                // stands in for: the row says which of the two ran.
                let m = match row.map(|r| r.kind) {
                    Some(RowKind::Baseline) => self
                        .migrations
                        .baselines()
                        .iter()
                        .find(|b| b.version() == d.version)?,
                    _ => self.find(d.version)?,
                };
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
        let version = ended.version;
        let report = Report {
            applied,
            version,
            elapsed: started.elapsed(),
            lock: Some(lock),
            repeatables,
            lock_retries,
        };
        tracing::info!(
            "applied {} migration(s) and {} repeatable migration(s), database at version {} ({:?})",
            report.applied.len(),
            report.repeatables.len(),
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
    /// to the run under the lock, which reads the history again unless
    /// the digest is still the one of these rows.
    async fn look_without_lock(&self, client: &Client, digest: HistoryDigest) -> Result<Unlocked> {
        // The common deploy: the history is the versions of an older
        // binary, which its digest says without reading it.
        if let Some(prefix) = applied_prefix(self.migrations, self.target, digest) {
            tracing::debug!(
                "the history holds the first {} migration(s), as its digest says",
                prefix.applied
            );
            return Ok(Unlocked::Due(Some(KnownBefore::Prefix(prefix))));
        }
        let rows = self.history.read(client).await?;
        if HistoryDigest::of_rows(&rows) != digest {
            return Ok(Unlocked::Due(None));
        }
        if !rows.iter().any(|r| !r.success) {
            if let Ok(plan) = Plan::new(self.migrations, &rows, self.target, self.policies) {
                if plan.pending.is_empty() {
                    return Ok(Unlocked::AtVersion(rows.iter().map(|r| r.version).max()));
                }
            }
        }
        Ok(Unlocked::Due(Some(KnownBefore::Rows { digest, rows })))
    }

    pub(super) fn find(&self, version: i64) -> Option<&'m Migration> {
        self.migrations.get(version).or_else(|| {
            self.migrations
                .baselines()
                .iter()
                .find(|b| b.version() == version)
        })
    }

    /// Under the lock: read the history (unless its digest is still that
    /// of the history known before the lock), plan, apply. A first try
    /// warns first about long transactions (a retry has just named them).
    pub(super) async fn apply(
        &self,
        session: &Session<'_>,
        first_try: bool,
        known_before: Option<KnownBefore>,
    ) -> Result<Vec<Done>> {
        let known = self
            .history_under_lock(session, first_try, known_before)
            .await?;
        let (pending, mut rank): (Vec<&Migration>, i32) = match &known {
            KnownUnderLock::Prefix { applied, last_rank } => (
                self.migrations
                    .iter()
                    .skip(*applied)
                    .filter(|m| m.within(self.target))
                    .collect(),
                last_rank + 1,
            ),
            KnownUnderLock::Rows(rows) => (
                self.plan(session, rows).await?.pending,
                rows.iter().map(|r| r.installed_rank).max().unwrap_or(0) + 1,
            ),
        };
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        tracing::info!("applying {} migration(s)", pending.len());
        // Long transactions hold up every DDL statement on the tables they
        // locked. A migration under a lock timeout names them when it gives
        // up and is tried again; one that waits as long as it takes would
        // not, so they are named before it starts.
        if first_try && pending.iter().any(|m| session.waits_unbounded(m)) {
            for blocker in
                retry::blockers(session.client, self.lock_timeout.max(LONG_TRANSACTION)).await?
            {
                tracing::warn!("a long transaction may block the migrations: {blocker}");
            }
        }
        session.set_total(pending.len());
        let mut done = Vec::new();
        let mut end = 0;
        // Consecutive transactional migrations share one pipelined round
        // trip; a no-transaction migration runs alone.
        for segment in pending.chunk_by(|a, b| !a.no_transaction() && !b.no_transaction()) {
            let step = Instant::now();
            end += segment.len();
            let after = &pending[end..];
            if segment[0].no_transaction() {
                let applied = session
                    .apply_without_transaction(segment[0], rank)
                    .await
                    .map_err(|e| in_run(e, &done, after))?;
                done.push(applied);
                tracing::info!(
                    "applied migration {} outside a transaction ({:?})",
                    segment[0].version(),
                    step.elapsed()
                );
                if after.is_empty() {
                    session.store_snapshot().await?;
                }
            } else {
                let mut applied = session
                    .apply_pipelined(segment, rank)
                    .await
                    .map_err(|e| in_run(e, &done, after))?;
                done.append(&mut applied);
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

    /// The history under the lock: the prefix known before it or the rows
    /// read before it, when the digest is still theirs; none, when the run
    /// has just made the table; else read.
    async fn history_under_lock(
        &self,
        session: &Session<'_>,
        first_try: bool,
        known_before: Option<KnownBefore>,
    ) -> Result<KnownUnderLock> {
        let client = session.client;
        match known_before {
            Some(KnownBefore::Prefix(prefix)) => {
                let read = match session.take_digest_read() {
                    Some(read) => read,
                    None => self.history.digest_and_last_rank(client).await?,
                };
                if let Some((digest, last_rank)) = read {
                    if digest == prefix.digest {
                        tracing::debug!("the digest is unchanged under the lock: planning from it");
                        return Ok(KnownUnderLock::Prefix {
                            applied: prefix.applied,
                            last_rank,
                        });
                    }
                }
            }
            Some(KnownBefore::Rows { digest, rows })
                if match session.take_digest_read() {
                    Some(read) => read.map(|(digest, _)| digest),
                    None => self.history.digest(client).await?,
                } == Some(digest) =>
            {
                return Ok(KnownUnderLock::Rows(rows));
            }
            // Made by this run, which has not written to it yet.
            _ if first_try && session.history_found() == HistoryFound::Made => {
                return Ok(KnownUnderLock::Rows(Vec::new()));
            }
            _ => {}
        }
        Ok(KnownUnderLock::Rows(self.history.read(client).await?))
    }

    /// The plan from the history's `rows`, under the lock: nobody else is
    /// running an unfinished migration, so it is dirty, and what it left
    /// behind is named.
    async fn plan<'p>(&'p self, session: &Session<'_>, rows: &'p [HistoryRow]) -> Result<Plan<'p>> {
        match Plan::new(self.migrations, rows, self.target, self.policies) {
            Err(Error::Dirty { version, file, .. }) => Err(Error::Dirty {
                version,
                file,
                invalid_indexes: indexes::invalid(session.client).await?,
            }),
            planned => planned,
        }
    }

    /// The state of every version: applied (when, how long), pending,
    /// unknown, edited, dirty. Read-only, without the lock.
    ///
    /// # Errors
    ///
    /// A connection or query error.
    pub async fn status(&self, pool: &Pool) -> Result<Status> {
        let client = pool.get().await.map_err(pool_error)?;
        self.status_on(&client).await
    }

    /// [`status`](Self::status) on a connection the caller owns.
    pub async fn status_on(&self, client: &Client) -> Result<Status> {
        let rows = if self.history.exists(client).await? {
            self.history.read(client).await?
        } else {
            Vec::new()
        };
        let running = verify::running_holder(client, &self.history, &rows).await?;
        Ok(self.status_from(
            &rows,
            running.as_ref(),
            indexes::invalid(client).await?,
            self.repeatable_states(client).await?,
        ))
    }

    /// The status of what was read: the history's `rows`, the migrator
    /// `running` an unfinished one, the database's INVALID indexes and the
    /// repeatable migrations' states.
    pub(crate) fn status_from(
        &self,
        rows: &[HistoryRow],
        running: Option<&LockHolder>,
        invalid_indexes: Vec<InvalidIndex>,
        repeatables: Vec<RepeatableStatus>,
    ) -> Status {
        let entries = reconcile(self.migrations, rows)
            .iter()
            .map(|entry| StatusEntry {
                version: entry.version,
                name: entry.name().to_owned(),
                file: entry.embedded.map(|m| m.file().to_owned()),
                state: plan::state(entry, running),
            })
            .collect();
        Status {
            entries,
            invalid_indexes,
            repeatables,
        }
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
        // The fixture history matters only with fixtures to compare.
        let populated = match self.fixtures {
            Some(_) => self.history.populated_fixtures(client).await?,
            None => Vec::new(),
        };
        let repeatables = self.repeatable_states(client).await?;
        Ok(self.verify_from(observed, &populated, repeatables))
    }

    /// The verify report of what was read: the history, schema and indexes
    /// (`observed`), the fixture history and the repeatable migrations'
    /// states.
    pub(crate) fn verify_from(
        &self,
        observed: verify::Observed,
        populated: &[PopulatedFixture],
        repeatables: Vec<RepeatableStatus>,
    ) -> VerifyReport {
        let mut report =
            verify::report(self.migrations, observed, self.policies, self.schema_policy);
        if let Some(fixtures) = self.fixtures {
            report
                .findings
                .extend(verify::fixtures(populated, fixtures, self.fixture_policy));
        }
        report.repeatables = repeatables;
        report
    }

    /// Load `fixture` in one transaction, recorded in
    /// `dbprep_fixture_history` beside the migration history. Populating
    /// the same content again writes nothing; changed content is loaded
    /// again under the conflict policy (`conflict`, else the fixture's
    /// `__mode`: insert skips existing keys, update updates them). It runs
    /// under the migration lock (in this migrator's lock mode, waiting at
    /// most its `lock_wait`), so that replicas loading one fixture at once
    /// load it once.
    ///
    /// # Errors
    ///
    /// An unknown table or column, a value PostgreSQL cannot convert, a row
    /// that violates a constraint, two rows with one primary key: each names
    /// the fixture, table, row and column, and nothing is written.
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
pub(crate) async fn take(pool: &Pool) -> Result<deadpool_postgres::ClientWrapper> {
    let object = pool.get().await.map_err(pool_error)?;
    Ok(Object::take(object))
}

/// Close a run's span: its outcome as fields, and a span per migration
/// applied or failed (after the fact: the migrations of a batch run in one
/// round trip, so each carries its duration on the server as a field).
fn trace_run(span: &tracing::Span, result: &Result<Report>, elapsed: Duration) {
    span.record("elapsed_ms", elapsed.as_millis() as u64);
    let migration = |version: i64, name: &str, file: &str, duration: Duration, outcome: &str| {
        let _entered = tracing::info_span!(
            parent: span,
            "dbprep.migration",
            version,
            name,
            file,
            duration_ms = duration.as_millis() as u64,
            outcome,
        )
        .entered();
    };
    match result {
        Ok(report) => {
            span.record(
                "outcome",
                if report.was_up_to_date() {
                    "up to date"
                } else {
                    "applied"
                },
            );
            span.record("applied", report.applied.len());
            if let Some(version) = report.version {
                span.record("version", version);
            }
            for applied in &report.applied {
                migration(
                    applied.version,
                    &applied.name,
                    &applied.file,
                    applied.duration,
                    "applied",
                );
            }
        }
        Err(error) => {
            span.record("outcome", "failed");
            if let Error::Migration(failed) = error {
                migration(failed.version, "", &failed.file, Duration::ZERO, "failed");
            }
        }
    }
}

/// A migration's failure with what the whole run applied before it and
/// what it leaves pending: a segment (one pipelined batch, or one
/// no-transaction migration) knows only its own.
fn in_run(error: Error, before: &[Done], after: &[&Migration]) -> Error {
    match error {
        Error::Migration(mut failure) => {
            failure
                .applied
                .splice(0..0, before.iter().map(|d| d.version));
            failure
                .not_applied
                .extend(after.iter().map(|m| m.version()));
            Error::Migration(failure)
        }
        other => other,
    }
}
