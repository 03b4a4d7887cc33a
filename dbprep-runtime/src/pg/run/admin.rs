//! The operator's repairs of the history: stamp (record versions without
//! running them, to adopt a database) and repair (forget dirty rows, accept
//! edited files, drop INVALID indexes).

use std::time::{Duration, Instant};

use deadpool_postgres::Pool;

use super::migrator::{take, Migrator};
use super::plan::{Plan, Policies, Policy};
use crate::model::history::{reconcile, RowKind, VersionState};
use crate::pg::drift::indexes;
use crate::pg::error::{Error, Result};
use crate::pg::report::{Applied, RepairOptions, RepairReport, Report};
use crate::pg::sql::literal;
use crate::pg::store::history::NewRow;

impl Migrator<'_> {
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
                &session.facts.user,
                literal(session.run_id()),
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
        session.store_snapshot().await?;
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
            repeatables: Vec::new(),
            lock_retries: Vec::new(),
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
}
