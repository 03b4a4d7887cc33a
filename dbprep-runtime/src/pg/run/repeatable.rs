//! Repeatable migrations (`R__views.sql`, as Flyway names them): views,
//! functions and grants kept as one file each, applied again, after the
//! versioned migrations, whenever their checksum differs from the one
//! they last ran with, in name order. Each runs in one transaction with
//! its row in the repeatable history (written first, as a versioned
//! migration's row is, so that nothing of dbprep's runs after the file's
//! own `SET`s).
//!
//! They run only when a run reaches the set's head: a file written for the
//! newest schema may name what an older target does not have yet.

use std::time::Duration;

use tokio_postgres::Client;

use super::batch::{migration_error, Session};
use super::migrator::Migrator;
use crate::model::migration::Migration;
use crate::pg::error::Result;
use crate::pg::report::{AppliedRepeatable, RepeatableStatus};
use crate::pg::sql::literal;
use crate::pg::store::repeatables::{outdated, states};

impl Migrator<'_> {
    /// Whether this run applies repeatable migrations: the set has some,
    /// and the run goes to its head.
    pub(super) fn runs_repeatables(&self) -> bool {
        !self.migrations.repeatables().is_empty()
            && self
                .target
                .is_none_or(|t| Some(t) >= self.migrations.head())
    }

    /// Whether a repeatable migration is due (new, or changed since it
    /// last ran), read without the lock: one round trip, and only for a set
    /// that has them.
    pub(super) async fn repeatables_due(&self, client: &Client) -> Result<bool> {
        if !self.runs_repeatables() {
            return Ok(false);
        }
        let recorded = self.history.read_repeatables(client).await?;
        Ok(!outdated(self.migrations.repeatables(), &recorded.unwrap_or_default()).is_empty())
    }

    /// Every repeatable migration, embedded or recorded, with the checksum
    /// it last ran with against the file's (read-only).
    pub(crate) async fn repeatable_states(&self, client: &Client) -> Result<Vec<RepeatableStatus>> {
        let recorded = self.history.read_repeatables(client).await?;
        Ok(states(
            self.migrations.repeatables(),
            recorded.as_deref().unwrap_or_default(),
        ))
    }

    /// Under the lock, after the versioned migrations: apply the
    /// repeatable migrations that are due, then record how long each took
    /// and store the schema snapshot again.
    pub(super) async fn apply_repeatables(
        &self,
        session: &Session<'_>,
    ) -> Result<Vec<AppliedRepeatable>> {
        if !self.runs_repeatables() {
            return Ok(Vec::new());
        }
        let recorded = self.history.read_repeatables(session.client).await?;
        let due = outdated(
            self.migrations.repeatables(),
            recorded.as_deref().unwrap_or_default(),
        );
        if due.is_empty() {
            return Ok(Vec::new());
        }
        if recorded.is_none() {
            session
                .run_own(
                    &self.history.create_repeatable_table_sql(),
                    "create the table of repeatable migrations".to_owned(),
                )
                .await?;
        }
        let mut applied = Vec::with_capacity(due.len());
        for m in due {
            let duration = session.apply_repeatable(m).await?;
            tracing::info!(
                "applied the repeatable migration {} ({duration:?})",
                m.file()
            );
            applied.push(AppliedRepeatable {
                name: m.name().to_owned(),
                file: m.file().to_owned(),
                duration,
            });
        }
        let durations: Vec<(&str, u128)> = applied
            .iter()
            .map(|a| (a.name.as_str(), a.duration.as_millis()))
            .collect();
        session
            .run_own(
                &self.history.repeatable_durations_sql(&durations),
                "record the durations of the repeatable migrations".to_owned(),
            )
            .await?;
        session.store_snapshot().await?;
        Ok(applied)
    }
}

impl Session<'_> {
    /// One repeatable migration: its row first, then its SQL, in one
    /// transaction, as the run's session (its role and search path).
    async fn apply_repeatable(&self, m: &Migration) -> Result<Duration> {
        // Through a pooler, a lease that ran out leaves `run_id` NULL,
        // which the table refuses, before the file runs.
        let run_id = if self.pooled() {
            self.guarded_run_id()
        } else {
            literal(self.run_id())
        };
        let own = self
            .history()
            .record_repeatable_sql(m, &literal(&self.facts.user), &run_id);
        self.run_file_in_transaction(&own, m.sql())
            .await
            .map_err(|(error, position)| {
                migration_error(m, error, position, Vec::new(), Vec::new())
            })
    }
}
