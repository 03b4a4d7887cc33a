//! The up-down-up proof: on a scratch database, each migration with a
//! down file is applied, reverted and applied again, and the schema
//! snapshots are compared: the down must give back the schema from before
//! the migration, and the second up the schema the first one made.

use tokio_postgres::{Config, NoTls};

use super::migrator::Migrator;
use super::scratch::Scratch;
use crate::model::migration::Migrations;
use crate::pg::connect::{pool_error, pool_with, PoolTls};
use crate::pg::drift::snapshot::diff;
use crate::pg::drift::verify::live_snapshot;
use crate::pg::error::Result;

/// A migration whose down does not undo it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NotReversible {
    /// Its version.
    pub version: i64,
    /// Its down file.
    pub file: String,
    /// What differs, one line each: after the down, from the schema before
    /// the migration ("added": the down left it); or after the second up,
    /// from the first up's schema; or the error that stopped it.
    pub differences: Vec<String>,
}

/// What [`Migrator::check_reversible`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct ReversibleReport {
    /// Versions whose up, down and up again left the schemas they should.
    pub reversible: Vec<i64>,
    /// Versions without a down file (not checked).
    pub without_down: Vec<i64>,
    /// Versions whose down did not restore the schema, or failed, or after
    /// which the up failed again (the check stops at a failure: what
    /// follows is not checked).
    pub not_reversible: Vec<NotReversible>,
}

impl ReversibleReport {
    /// Whether every down checked restores its schema.
    pub fn is_clean(&self) -> bool {
        self.not_reversible.is_empty()
    }
}

impl std::fmt::Display for ReversibleReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} reversible, {} without a down, {} not reversible",
            self.reversible.len(),
            self.without_down.len(),
            self.not_reversible.len()
        )?;
        for n in &self.not_reversible {
            write!(f, "\n  {} ({}):", n.version, n.file)?;
            for d in &n.differences {
                write!(f, "\n    {d}")?;
            }
        }
        Ok(())
    }
}

impl Migrator<'_> {
    /// Apply, revert and apply again each migration up to the target on a
    /// scratch database of the server of `server` (its role needs
    /// `CREATEDB`), in order, comparing schema snapshots at each step.
    /// Baselines are left out: the migrations are replayed.
    ///
    /// # Errors
    ///
    /// A connection error, or an up migration that fails.
    pub async fn check_reversible(&self, server: &Config) -> Result<ReversibleReport> {
        self.check_reversible_with(server, NoTls).await
    }

    /// [`check_reversible`](Self::check_reversible) through a TLS
    /// connector.
    ///
    /// # Errors
    ///
    /// As [`check_reversible`](Self::check_reversible).
    pub async fn check_reversible_with<T: PoolTls>(
        &self,
        server: &Config,
        tls: T,
    ) -> Result<ReversibleReport> {
        self.check_target()?;
        let scratch = Scratch::create(server, tls.clone(), "reversible").await?;
        let pool = pool_with(scratch.config.clone(), tls, 1);
        let replay = self.migrations.without_baselines();
        let checked = self.walk(&replay, &pool).await;
        pool.close();
        scratch.drop().await;
        checked
    }

    /// The walk itself, on the scratch database's `pool`.
    async fn walk(
        &self,
        replay: &Migrations,
        pool: &deadpool_postgres::Pool,
    ) -> Result<ReversibleReport> {
        let at = |version: i64| Migrator {
            migrations: replay,
            target: Some(version),
            check_schema: false,
            progress: None,
            ..self.clone()
        };
        // On a pooled connection: a snapshot takes no lock to keep out of
        // the pool (unlike a run, which takes its connection out).
        let snapshot = || async {
            let client = pool.get().await.map_err(pool_error)?;
            live_snapshot(&client, &self.history).await
        };
        let mut report = ReversibleReport::default();
        let mut previous = 0;
        for m in replay.iter().filter(|m| m.within(self.target)) {
            let v = m.version();
            let before = snapshot().await?;
            let _ = at(v).run(pool).await?;
            let Some(file) = m.down_file() else {
                report.without_down.push(v);
                previous = v;
                continue;
            };
            let after = snapshot().await?;
            if let Err(e) = at(v).revert(pool, previous, false).await {
                report.not_reversible.push(NotReversible {
                    version: v,
                    file,
                    differences: vec![format!("the down failed: {e}")],
                });
                return Ok(report);
            }
            let mut differences = diff(&before, &snapshot().await?);
            differences
                .iter_mut()
                .for_each(|d| *d = format!("after the down: {d}"));
            if let Err(e) = at(v).run(pool).await {
                differences.push(format!("up again failed: {e}"));
                report.not_reversible.push(NotReversible {
                    version: v,
                    file,
                    differences,
                });
                return Ok(report);
            }
            differences.extend(
                diff(&after, &snapshot().await?)
                    .into_iter()
                    .map(|d| format!("after up again: {d}")),
            );
            if differences.is_empty() {
                report.reversible.push(v);
            } else {
                report.not_reversible.push(NotReversible {
                    version: v,
                    file,
                    differences,
                });
            }
            previous = v;
        }
        Ok(report)
    }
}
