//! Going back: the down files of applied migrations, newest first, each
//! with the removal of its history row.
//!
//! Everything is checked before anything runs: every version to undo must
//! be embedded with a down file and the checksum it was applied with (a
//! down written for another up would undo something else), none may be a
//! baseline or a stamp's (their downs never ran as written), and none may
//! be unfinished. Then, under the migration lock, each transactional down
//! runs in one transaction with its row's `DELETE`; a down that starts with
//! `-- dbprep:no-transaction` marks its row unfinished, runs statement by
//! statement outside a transaction, and deletes the row at its end, so a
//! failure leaves it dirty, as an upgrade would. The digest trigger keeps
//! the digest; the schema snapshot is taken again at the end.

use std::time::{Duration, Instant};

use deadpool_postgres::Pool;

use super::batch::{migration_error, Session};
use super::migrator::{take, Migrator};
use crate::model::directive;
use crate::model::history::{HistoryRow, RowKind};
use crate::model::migration::Migration;
use crate::pg::error::{Error, Result};
use crate::pg::report::show;

/// A migration a revert undid.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reverted {
    /// Its version.
    pub version: i64,
    /// Its description.
    pub name: String,
    /// The down file that ran.
    pub file: String,
    /// How long its down took.
    #[serde(rename = "duration_ms", serialize_with = "crate::pg::report::millis")]
    pub duration: Duration,
}

/// What [`Migrator::revert`] did, or with `dry_run` would do.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RevertReport {
    /// The migrations undone, newest first.
    pub reverted: Vec<Reverted>,
    /// The version the database is at afterwards (`None`: no migration).
    pub version: Option<i64>,
    /// Whether nothing ran (`--dry-run`).
    pub dry_run: bool,
    /// How long it took.
    #[serde(rename = "elapsed_ms", serialize_with = "crate::pg::report::millis")]
    pub elapsed: Duration,
}

impl std::fmt::Display for RevertReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.dry_run {
            "would revert"
        } else {
            "reverted"
        };
        let at = show(self.version);
        if self.reverted.is_empty() {
            return write!(f, "nothing to revert; database at version {at}");
        }
        write!(
            f,
            "{verb} {} migration(s), database at version {at}",
            self.reverted.len()
        )?;
        // Columns, as the other reports print them.
        let width = |of: fn(&Reverted) -> usize| self.reverted.iter().map(of).max().unwrap_or(0);
        let (name_width, file_width) = (width(|r| r.name.len()), width(|r| r.file.len()));
        for r in &self.reverted {
            if self.dry_run {
                write!(
                    f,
                    "\n  {:>6}  {:<name_width$}  {}",
                    r.version, r.name, r.file
                )?;
            } else {
                write!(
                    f,
                    "\n  {:>6}  {:<name_width$}  {:<file_width$}  {:>8.1?}",
                    r.version, r.name, r.file, r.duration
                )?;
            }
        }
        Ok(())
    }
}

impl<'m> Migrator<'m> {
    /// Take the database back to version `to` (`0`: before the first
    /// migration): the down files of every applied version above it,
    /// newest first, each atomic with the removal of its history row,
    /// under the migration lock. With `dry_run`, only check and say what
    /// would run.
    ///
    /// # Errors
    ///
    /// [`Error::Revert`] naming every version that cannot be undone (no
    /// down file, not embedded, edited, a baseline or a stamp), before
    /// anything runs; [`Error::Dirty`] for an unfinished version; a down
    /// that fails, with its file, line and column (what was undone before
    /// it stays undone).
    pub async fn revert(&self, pool: &Pool, to: i64, dry_run: bool) -> Result<RevertReport> {
        let started = Instant::now();
        let client = take(pool).await?;
        if dry_run {
            let rows = if self.history.exists(&client).await? {
                self.history.read(&client).await?
            } else {
                Vec::new()
            };
            let undo = self.to_undo(&rows, to)?;
            return Ok(self.report(&rows, &undo, Vec::new(), true, started));
        }
        let (session, _) = self.locked_session(&client).await?;
        let outcome = async {
            let rows = self.history.read(&client).await?;
            let undo = self.to_undo(&rows, to)?;
            let mut durations = Vec::with_capacity(undo.len());
            for m in &undo {
                let elapsed = if down_outside_transaction(m) {
                    session.revert_without_transaction(m).await?
                } else {
                    session.revert_in_transaction(m).await?
                };
                tracing::info!("reverted migration {} ({elapsed:?})", m.version());
                durations.push(elapsed);
            }
            if !undo.is_empty() {
                session.store_snapshot().await?;
            }
            Ok::<_, Error>((rows, undo, durations))
        }
        .await;
        // The lock goes, failed or not; the digest is the trigger's.
        let finished = self.finish(&session, None).await;
        let (rows, undo, durations) = outcome?;
        finished?;
        Ok(self.report(&rows, &undo, durations, false, started))
    }

    /// The migrations to undo to reach `to`, newest first, or every reason
    /// it cannot be done.
    fn to_undo(&self, rows: &[HistoryRow], to: i64) -> Result<Vec<&'m Migration>> {
        if let Some(row) = rows.iter().find(|r| !r.success) {
            return Err(Error::Dirty {
                version: row.version,
                file: self
                    .migrations
                    .get(row.version)
                    .map_or_else(|| row.name.clone(), |m| m.file().to_owned()),
                invalid_indexes: Vec::new(),
            });
        }
        let mut undo = Vec::new();
        let mut problems = Vec::new();
        let mut above: Vec<&HistoryRow> = rows.iter().filter(|r| r.version > to).collect();
        above.sort_by_key(|r| std::cmp::Reverse(r.version));
        for row in above {
            let v = row.version;
            let Some(m) = self.migrations.get(v) else {
                problems.push(format!(
                    "version {v} ({}) is not one of this binary's migrations",
                    row.name
                ));
                continue;
            };
            match row.kind {
                RowKind::Baseline => problems.push(format!(
                    "version {v} was installed by a baseline, whose migrations never ran here; go back no further than {v}"
                )),
                RowKind::Stamp => problems.push(format!(
                    "version {v} was stamped, not applied: its down would undo what dbprep never did"
                )),
                RowKind::Migration => {}
            }
            if !row.recorded(m.checksum()) {
                problems.push(format!(
                    "version {v} ({}) was applied from another version of the file; its down may not undo it",
                    m.file()
                ));
            }
            if m.down_sql().is_none() {
                problems.push(format!("version {v} ({}) has no down migration", m.file()));
            }
            undo.push(m);
        }
        if problems.is_empty() {
            Ok(undo)
        } else {
            Err(Error::Revert { to, problems })
        }
    }

    fn report(
        &self,
        rows: &[HistoryRow],
        undo: &[&Migration],
        durations: Vec<Duration>,
        dry_run: bool,
        started: Instant,
    ) -> RevertReport {
        let mut durations = durations.into_iter();
        let reverted = undo
            .iter()
            .map(|m| Reverted {
                version: m.version(),
                name: m.name().to_owned(),
                file: m.down_file().unwrap_or_default(),
                duration: durations.next().unwrap_or_default(),
            })
            .collect();
        let gone = |v: i64| undo.iter().any(|m| m.version() == v);
        RevertReport {
            reverted,
            version: rows.iter().map(|r| r.version).filter(|v| !gone(*v)).max(),
            dry_run,
            elapsed: started.elapsed(),
        }
    }
}

/// Whether the down file starts with `-- dbprep:no-transaction`.
fn down_outside_transaction(m: &Migration) -> bool {
    m.down_sql()
        .and_then(|sql| directive::parse(sql).ok())
        .is_some_and(|d| d.no_transaction)
}

impl Session<'_> {
    /// A transactional down: the row's `DELETE` first (nothing of dbprep's
    /// then runs after the down's own `SET`s), then the down, in one
    /// transaction.
    async fn revert_in_transaction(&self, m: &Migration) -> Result<Duration> {
        let mut own = String::new();
        if self.pooled() {
            // The guard: a lease that ran out leaves `run_id` NULL, which
            // the table refuses, before the down runs.
            own.push_str(&format!(
                "UPDATE {} SET run_id = {} WHERE version = {};\n",
                self.history().qualified(),
                self.guarded_run_id(),
                m.version()
            ));
        }
        own.push_str(&self.forget_sql(m.version()));
        self.run_file_in_transaction(&own, m.down_sql().unwrap_or_default())
            .await
            .map_err(|(error, position)| down_error(m, error, position))
    }

    /// A no-transaction down: its row marked unfinished, then each
    /// statement on its own, then the row deleted.
    async fn revert_without_transaction(&self, m: &Migration) -> Result<Duration> {
        let down = m.down_sql().unwrap_or_default();
        let version = m.version();
        let started = Instant::now();
        self.run_own(
            &format!(
                "UPDATE {} SET success = false WHERE version = {version};\n",
                self.history().qualified()
            ),
            format!("record the start of the down of migration {version}"),
        )
        .await?;
        if let Err((error, position)) = self.run_outside_transaction(down, version).await? {
            return Err(down_error(m, error, position));
        }
        let elapsed = started.elapsed();
        self.run_own(
            &self.forget_sql(version),
            format!("record the end of the down of migration {version}"),
        )
        .await?;
        Ok(elapsed)
    }

    /// The statement that removes `version`'s row.
    fn forget_sql(&self, version: i64) -> String {
        self.history().delete_sql(version)
    }
}

/// A failed down, named by its file.
fn down_error(
    m: &Migration,
    error: tokio_postgres::Error,
    position: Option<(usize, usize)>,
) -> Error {
    match migration_error(m, error, position, Vec::new(), Vec::new()) {
        Error::Migration(mut failure) => {
            failure.file = m.down_file().unwrap_or_else(|| m.file().to_owned());
            failure.outside_transaction = down_outside_transaction(m);
            Error::Migration(failure)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revert_lists_its_downs_in_columns() {
        let reverted = |version, name: &str, file: &str, micros| Reverted {
            version,
            name: name.into(),
            file: file.into(),
            duration: Duration::from_micros(micros),
        };
        let report = RevertReport {
            reverted: vec![
                reverted(
                    5,
                    "index_keypairs_by_user",
                    "U5__index_keypairs_by_user.sql",
                    2900,
                ),
                reverted(4, "touch", "U4__touch.sql", 950),
            ],
            version: Some(3),
            dry_run: false,
            elapsed: Duration::from_millis(4),
        };
        assert_eq!(
            report.to_string(),
            "reverted 2 migration(s), database at version 3\n\
             \x20      5  index_keypairs_by_user  U5__index_keypairs_by_user.sql     2.9ms\n\
             \x20      4  touch                   U4__touch.sql                    950.0µs"
        );
        let dry = RevertReport {
            dry_run: true,
            ..report
        };
        assert_eq!(
            dry.to_string(),
            "would revert 2 migration(s), database at version 3\n\
             \x20      5  index_keypairs_by_user  U5__index_keypairs_by_user.sql\n\
             \x20      4  touch                   U4__touch.sql"
        );
    }
}
