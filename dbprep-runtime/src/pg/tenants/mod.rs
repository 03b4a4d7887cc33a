//! Many tenants, one migration set: [`Tenants`] says where they are (one
//! schema each in one database, or one database each on a server),
//! [`Rollout`] how to go through them, and
//! [`Migrator::run_each`](crate::Migrator::run_each) (with `status_each`
//! and `verify_each`) goes.
//!
//! - `discover`: listing tenants by pattern, query or file;
//! - `each`: the walk over them, a few at a time;
//! - `report`: what it tells, one outcome per tenant.
//!
//! Each tenant is an ordinary run of its own history: schema tenants keep
//! theirs in their schema, so its lock key, digest and snapshot are the
//! tenant's alone, and two tenants never wait for each other.

mod discover;
mod each;
mod report;

use std::sync::Arc;

use deadpool_postgres::Pool;

pub use report::{EachReport, TenantOutcome, TenantResult, TenantSummary};

use crate::pg::error::{Error, Result};

/// PostgreSQL's longest identifier, in bytes (`NAMEDATALEN - 1`); a longer
/// name is cut silently, and two tenants could become one.
const MAX_IDENTIFIER: usize = 63;

/// Makes the pool of one tenant database from its name.
type ConnectDatabase = Arc<dyn Fn(&str) -> Pool + Send + Sync>;

/// Where the tenants are, and their names in the order a rollout takes
/// them.
///
/// ```no_run
/// # use dbprep_runtime::{Migrations, Migrator, Tenants};
/// # async fn go(pool: deadpool_postgres::Pool, migrations: &Migrations) -> Result<(), dbprep_runtime::Error> {
/// let tenants = Tenants::schemas_like(&pool, "tenant\\_%").await?;
/// let report = Migrator::new(migrations).run_each(&tenants, 4).await?;
/// for failed in report.failed() {
///     eprintln!("{}: {}", failed.tenant, failed.error().map(|e| e.to_string()).unwrap_or_default());
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Tenants {
    place: Place,
    names: Vec<String>,
}

#[derive(Clone)]
enum Place {
    /// One schema per tenant in the database of `pool`; migrations run with
    /// `search_path` set to the tenant's schema alone.
    Schemas { pool: Pool },
    /// One database per tenant; `connect` makes the pool of one.
    Databases { connect: ConnectDatabase },
}

impl std::fmt::Debug for Tenants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.place {
            Place::Schemas { .. } => "schemas",
            Place::Databases { .. } => "databases",
        };
        f.debug_struct("Tenants")
            .field("kind", &kind)
            .field("names", &self.names)
            .finish()
    }
}

impl Tenants {
    /// Tenants that are schemas of the database `pool` connects to, named
    /// in the order a rollout takes them. A schema that does not exist yet
    /// is created by its first run (a new tenant).
    ///
    /// Each tenant's history (`<schema>.dbprep_schema_history`, or the
    /// migrator's [`history_table`](crate::Migrator::history_table) name)
    /// and snapshot live in its schema, and its migrations run with
    /// `search_path` set to that schema alone, so one set of unqualified
    /// migrations serves every tenant. Objects shared by all tenants (an
    /// extension's types in `public`) are written schema-qualified.
    pub fn schemas<S: Into<String>>(pool: &Pool, names: impl IntoIterator<Item = S>) -> Tenants {
        Tenants {
            place: Place::Schemas { pool: pool.clone() },
            names: names.into_iter().map(Into::into).collect(),
        }
    }

    /// Tenants that are databases of one server: `connect` makes the pool
    /// of a database from its name (the same server and role, another
    /// `dbname`). A run holds one connection per tenant it is migrating.
    ///
    /// ```no_run
    /// # use dbprep_runtime::Tenants;
    /// let server: tokio_postgres::Config = "postgres://app@db.internal/postgres".parse().unwrap();
    /// let tenants = Tenants::databases(["acme", "globex"], move |name| {
    ///     dbprep_runtime::pg::connect::pool(server.clone().dbname(name).to_owned(), 1)
    /// });
    /// ```
    pub fn databases<S: Into<String>>(
        names: impl IntoIterator<Item = S>,
        connect: impl Fn(&str) -> Pool + Send + Sync + 'static,
    ) -> Tenants {
        Tenants {
            place: Place::Databases {
                connect: Arc::new(connect),
            },
            names: names.into_iter().map(Into::into).collect(),
        }
    }

    /// The tenants' names, in rollout order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// How many tenants.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Whether the tenants are schemas (else databases).
    pub fn are_schemas(&self) -> bool {
        matches!(self.place, Place::Schemas { .. })
    }

    /// Refuse names a rollout cannot keep apart: empty, too long for an
    /// identifier (PostgreSQL would cut them), reserved, or given twice.
    fn check(&self) -> Result<()> {
        let mut problems = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for name in &self.names {
            if name.is_empty() {
                problems.push("an empty name".to_owned());
            } else if name.len() > MAX_IDENTIFIER {
                problems.push(format!(
                    "{name:?} is longer than PostgreSQL's {MAX_IDENTIFIER} bytes"
                ));
            } else if self.are_schemas() && name.starts_with("pg_") {
                problems.push(format!(
                    "{name:?}: schema names starting with pg_ are reserved"
                ));
            }
            if !seen.insert(name.as_str()) {
                problems.push(format!("{name:?} is listed twice"));
            }
        }
        problems.dedup();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::config(format!(
                "cannot go through these tenants: {}",
                problems.join("; ")
            )))
        }
    }
}

/// What a rollout does when a tenant fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// Start no other tenant (those running finish); the rest are
    /// reported as not started. The default.
    #[default]
    Stop,
    /// Go on with the others; the report lists the failed ones with their
    /// errors, and a rerun picks them up.
    Continue,
}

impl std::str::FromStr for OnFailure {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        match text {
            "stop" => Ok(OnFailure::Stop),
            "continue" => Ok(OnFailure::Continue),
            other => Err(format!(
                "unknown failure policy {other:?}: stop or continue"
            )),
        }
    }
}

/// How a rollout goes through the tenants: how many at once, a canary
/// first, and what a failure does. A bare number is a rollout with that
/// many jobs.
///
/// ```
/// # use dbprep_runtime::{OnFailure, Rollout};
/// let rollout = Rollout::jobs(8).canary(2).on_failure(OnFailure::Continue);
/// ```
#[derive(Clone)]
pub struct Rollout {
    jobs: usize,
    canary: usize,
    on_failure: OnFailure,
    progress: Option<Arc<dyn Fn(usize, usize) + Send + Sync>>,
}

impl std::fmt::Debug for Rollout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rollout")
            .field("jobs", &self.jobs)
            .field("canary", &self.canary)
            .field("on_failure", &self.on_failure)
            .finish_non_exhaustive()
    }
}

impl Rollout {
    /// `jobs` tenants at once (at least one), no canary, stop at the
    /// first failure.
    pub fn jobs(jobs: usize) -> Rollout {
        Rollout {
            jobs: jobs.max(1),
            canary: 0,
            on_failure: OnFailure::Stop,
            progress: None,
        }
    }

    /// Migrate the first `tenants` first, and stop before the others if
    /// one of them fails, whatever [`on_failure`](Self::on_failure) says.
    pub fn canary(mut self, tenants: usize) -> Rollout {
        self.canary = tenants;
        self
    }

    /// What a failure after the canary does.
    pub fn on_failure(mut self, policy: OnFailure) -> Rollout {
        self.on_failure = policy;
        self
    }

    /// Call `progress(done, total)` after each tenant (a progress bar).
    pub fn on_progress(mut self, progress: impl Fn(usize, usize) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(progress));
        self
    }
}

impl From<usize> for Rollout {
    fn from(jobs: usize) -> Rollout {
        Rollout::jobs(jobs)
    }
}
