//! The walk over the tenants: `jobs` workers take the next tenant in
//! order until none is left or a failure stops the rollout, first over the
//! canary, then over the rest.
//!
//! A worker over schema tenants keeps one connection for tenant after
//! tenant (a run leaves the session as it found it), setting `search_path`
//! to each tenant's schema; after a failure it takes a new one, since a
//! failed run may leave its session in any state. A worker over database
//! tenants opens one connection per tenant and closes it after.

use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use deadpool_postgres::ClientWrapper;
use tokio_postgres::Client;
use tracing::Instrument;

use super::report::{EachReport, TenantOutcome, TenantResult};
use super::{OnFailure, Place, Rollout, Tenants};
use crate::pg::drift::verify::VerifyReport;
use crate::pg::error::{Error, Result};
use crate::pg::report::{Report, Status};
use crate::pg::run::migrator::take;
use crate::pg::sql::{ident, set_search_path_sql};
use crate::Migrator;

impl<'m> Migrator<'m> {
    /// Bring every tenant up to the target, `rollout` (or a number of jobs)
    /// at a time, each as its own [`run`](Self::run): its own history,
    /// lock and snapshot, so two processes walking the same tenants at once
    /// never run one tenant twice, and tenants never wait for each other.
    /// Tenants already at the target cost their one-statement check, so a
    /// rerun after a failure picks up where it stopped.
    ///
    /// ```no_run
    /// # use dbprep_runtime::{Migrations, Migrator, OnFailure, Rollout, Tenants};
    /// # async fn go(pool: deadpool_postgres::Pool, migrations: &Migrations) -> Result<(), dbprep_runtime::Error> {
    /// let tenants = Tenants::schemas_like(&pool, "tenant_%").await?;
    /// let rollout = Rollout::jobs(4).canary(5).on_failure(OnFailure::Continue);
    /// let report = Migrator::new(migrations).run_each(&tenants, rollout).await?;
    /// println!("{report}");
    /// # Ok(()) }
    /// ```
    ///
    /// For schema tenants the pool should allow `jobs` connections.
    ///
    /// # Errors
    ///
    /// Before anything runs: an unknown target, or tenant names that
    /// cannot be kept apart (empty, too long, reserved, listed twice). A
    /// tenant's failure is in the report, not an error.
    pub async fn run_each(
        &self,
        tenants: &Tenants,
        rollout: impl Into<Rollout>,
    ) -> Result<EachReport<Report>> {
        self.check_target()?;
        self.each(tenants, rollout.into(), Run).await
    }

    /// [`status`](Self::status) of every tenant, `rollout.jobs` at a
    /// time. Read-only; every tenant is read, whatever the rollout's
    /// canary and failure policy say.
    ///
    /// # Errors
    ///
    /// Tenant names that cannot be kept apart.
    pub async fn status_each(
        &self,
        tenants: &Tenants,
        rollout: impl Into<Rollout>,
    ) -> Result<EachReport<Status>> {
        let rollout = rollout.into().canary(0).on_failure(OnFailure::Continue);
        self.each(tenants, rollout, Read).await
    }

    /// [`verify`](Self::verify) of every tenant, `rollout.jobs` at a time;
    /// a tenant's snapshot describes its own schema only. Read-only, every
    /// tenant is read.
    ///
    /// # Errors
    ///
    /// Tenant names that cannot be kept apart.
    pub async fn verify_each(
        &self,
        tenants: &Tenants,
        rollout: impl Into<Rollout>,
    ) -> Result<EachReport<VerifyReport>> {
        let rollout = rollout.into().canary(0).on_failure(OnFailure::Continue);
        self.each(tenants, rollout, Verify).await
    }

    /// The migrator of one schema tenant: history, lock and snapshot in
    /// its schema.
    fn for_schema(&self, schema: &str) -> Migrator<'m> {
        let mut migrator = self.clone().history_schema(schema);
        migrator.history.snapshot_schemas = vec![schema.to_owned()];
        migrator
    }

    async fn each<O: TenantOp>(
        &self,
        tenants: &Tenants,
        rollout: Rollout,
        op: O,
    ) -> Result<EachReport<O::Output>> {
        tenants.check()?;
        let started = Instant::now();
        let count = tenants.len();
        // The progress a walk reports is the rollout's, not each run's.
        let migrator = Migrator {
            progress: None,
            ..self.clone()
        };
        let walk = Walk {
            migrator: &migrator,
            tenants,
            rollout: &rollout,
            op: &op,
            outcomes: Mutex::new((0..count).map(|_| None).collect()),
            stopped: AtomicBool::new(false),
            finished: AtomicUsize::new(0),
        };
        let canary = rollout.canary.min(count);
        walk.phase(0..canary, OnFailure::Stop).await;
        walk.phase(canary..count, rollout.on_failure).await;
        let outcomes = walk
            .outcomes
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        let tenants = outcomes
            .into_iter()
            .zip(tenants.names())
            .map(|(outcome, name)| {
                outcome.unwrap_or_else(|| TenantOutcome {
                    tenant: name.clone(),
                    result: TenantResult::NotStarted,
                    elapsed: Duration::ZERO,
                })
            })
            .collect();
        Ok(EachReport {
            tenants,
            elapsed: started.elapsed(),
        })
    }
}

/// What a walk does to each tenant. (A trait rather than an async
/// closure, so that the walk's future is `Send` and an application can
/// spawn it.)
trait TenantOp: Sync {
    type Output: Send;
    fn call<'a>(
        &'a self,
        migrator: &'a Migrator<'_>,
        client: &'a Client,
    ) -> impl Future<Output = Result<Self::Output>> + Send + 'a;
}

/// [`Migrator::run_on`].
struct Run;
/// [`Migrator::status_on`].
struct Read;
/// [`Migrator::verify_on`].
struct Verify;

impl TenantOp for Run {
    type Output = Report;
    fn call<'a>(
        &'a self,
        migrator: &'a Migrator<'_>,
        client: &'a Client,
    ) -> impl Future<Output = Result<Report>> + Send + 'a {
        migrator.run_on(client)
    }
}

impl TenantOp for Read {
    type Output = Status;
    fn call<'a>(
        &'a self,
        migrator: &'a Migrator<'_>,
        client: &'a Client,
    ) -> impl Future<Output = Result<Status>> + Send + 'a {
        migrator.status_on(client)
    }
}

impl TenantOp for Verify {
    type Output = VerifyReport;
    fn call<'a>(
        &'a self,
        migrator: &'a Migrator<'_>,
        client: &'a Client,
    ) -> impl Future<Output = Result<VerifyReport>> + Send + 'a {
        migrator.verify_on(client)
    }
}

/// One walk over the tenants, shared by its workers.
struct Walk<'w, 'm, O: TenantOp> {
    migrator: &'w Migrator<'m>,
    tenants: &'w Tenants,
    rollout: &'w Rollout,
    op: &'w O,
    /// Each tenant's outcome, by position; `None`: not started.
    outcomes: Mutex<Vec<Option<TenantOutcome<O::Output>>>>,
    /// Set by a failure the phase's policy stops at.
    stopped: AtomicBool,
    finished: AtomicUsize,
}

impl<O: TenantOp> Walk<'_, '_, O> {
    /// The tenants of `range`, `jobs` at a time, until they are all done
    /// or the walk is stopped; a failure stops it when `on_failure` says.
    async fn phase(&self, range: Range<usize>, on_failure: OnFailure) {
        if self.stopped.load(Ordering::Acquire) || range.is_empty() {
            return;
        }
        let next = AtomicUsize::new(range.start);
        let workers = self.rollout.jobs.min(range.len());
        futures_util::future::join_all(
            (0..workers).map(|_| self.worker(&next, range.end, on_failure)),
        )
        .await;
    }

    /// Take the next tenant until none is left or the walk stops.
    async fn worker(&self, next: &AtomicUsize, end: usize, on_failure: OnFailure) {
        let mut connection = None;
        while !self.stopped.load(Ordering::Acquire) {
            let i = next.fetch_add(1, Ordering::AcqRel);
            if i >= end {
                break;
            }
            let tenant = &self.tenants.names()[i];
            let begun = Instant::now();
            let span = tracing::info_span!("tenant", name = %tenant);
            let result = self.one(tenant, &mut connection).instrument(span).await;
            let result = match result {
                Ok(done) => TenantResult::Done(done),
                Err(error) => {
                    tracing::warn!("tenant {tenant} failed: {error}");
                    // A failed run may leave its session in any state.
                    connection = None;
                    if on_failure == OnFailure::Stop {
                        self.stopped.store(true, Ordering::Release);
                    }
                    TenantResult::Failed(error)
                }
            };
            let outcome = TenantOutcome {
                tenant: tenant.clone(),
                result,
                elapsed: begun.elapsed(),
            };
            self.outcomes.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(outcome);
            let finished = self.finished.fetch_add(1, Ordering::AcqRel) + 1;
            if let Some(progress) = &self.rollout.progress {
                progress(finished, self.tenants.len());
            }
        }
    }

    /// One tenant, on the worker's connection (schemas) or its own
    /// (databases).
    async fn one(&self, tenant: &str, connection: &mut Option<ClientWrapper>) -> Result<O::Output> {
        match &self.tenants.place {
            Place::Schemas { pool } => {
                let client = match connection {
                    Some(client) => client,
                    None => connection.insert(take(pool).await?),
                };
                // The tenant's schema alone, for the run that follows (which
                // keeps and restores it around each migration).
                client
                    .simple_query(&set_search_path_sql(&ident(tenant), false))
                    .await
                    .map_err(Error::postgres(format!("set search_path to {tenant}")))?;
                self.op
                    .call(&self.migrator.for_schema(tenant), client)
                    .await
            }
            Place::Databases { connect } => {
                let client = take(&connect(tenant)).await?;
                self.op.call(self.migrator, &client).await
            }
        }
    }
}
