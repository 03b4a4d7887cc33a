//! Adopting a database another tool migrated: its history is read, every
//! version it lists checked against the embedded set (and, where the tool
//! keeps one, against the checksum it recorded), and dbprep's history
//! stamped with those versions in one transaction. The other tool's table
//! is left as it is, so going back to that tool stays possible.

mod tools;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;

use self::tools::{checksum_matches, qualified, Entry, ForeignRow};
pub use self::tools::{Tool, UnknownTool};
use super::migrator::{take, Migrator};
use crate::model::history::{HistoryRow, RowKind};
use crate::model::migration::Migration;
use crate::pg::error::{Error, Result};
use crate::pg::sql::{literal, rows};
use crate::pg::store::history::NewRow;

/// Where another tool keeps its history, and whether to only look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adopt {
    tool: Tool,
    schema: String,
    table: Option<String>,
    dry_run: bool,
}

impl Adopt {
    /// Adopt from `tool`'s history table under its default name, in
    /// `public`.
    pub fn new(tool: Tool) -> Adopt {
        Adopt {
            tool,
            schema: "public".to_owned(),
            table: None,
            dry_run: false,
        }
    }

    /// The schema of the other tool's table (default `public`).
    pub fn schema(mut self, schema: impl Into<String>) -> Adopt {
        self.schema = schema.into();
        self
    }

    /// The other tool's table, when it was configured away from its
    /// default ([`Tool::default_table`]).
    pub fn table(mut self, table: impl Into<String>) -> Adopt {
        self.table = Some(table.into());
        self
    }

    /// Check and report, but stamp nothing.
    pub fn dry_run(mut self, dry_run: bool) -> Adopt {
        self.dry_run = dry_run;
        self
    }

    fn qualified_table(&self) -> String {
        qualified(
            &self.schema,
            self.table.as_deref().unwrap_or(self.tool.default_table()),
        )
    }
}

/// How an adopted version was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdoptCheck {
    /// The other tool's checksum, recomputed from the embedded file,
    /// matched.
    Checksum,
    /// The tool records no checksum (diesel): only the version was
    /// checked.
    VersionOnly,
    /// At or below Flyway's baseline: recorded as a stamp (it never ran).
    Baseline,
}

/// A version dbprep's history now records on the other tool's word.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AdoptedVersion {
    /// Its version.
    pub version: i64,
    /// Its description.
    pub name: String,
    /// The embedded file.
    pub file: String,
    /// How it was checked.
    pub check: AdoptCheck,
}

/// What [`Migrator::adopt`] did, or with [`Adopt::dry_run`] would do.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AdoptReport {
    /// The tool whose history was read.
    pub tool: Tool,
    /// Its table, qualified.
    pub table: String,
    /// How many rows it holds.
    pub rows_read: usize,
    /// The versions stamped, in the order the tool applied them.
    pub adopted: Vec<AdoptedVersion>,
    /// Versions dbprep's history already recorded (an earlier adopt).
    pub already_recorded: Vec<i64>,
    /// Repeatable migrations recorded as run: Flyway ran them last with
    /// the embedded file's checksum.
    pub repeatables: Vec<String>,
    /// What the next upgrade will apply, in version order.
    pub pending: Vec<i64>,
    /// The pending versions older than the newest recorded one: the next
    /// upgrade applies them only when out-of-order migrations are allowed.
    pub out_of_order: Vec<i64>,
    /// Whether nothing was written.
    pub dry_run: bool,
    /// How long it took.
    #[serde(rename = "elapsed_ms", serialize_with = "crate::pg::report::millis")]
    pub elapsed: Duration,
}

impl std::fmt::Display for AdoptReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.dry_run {
            "would adopt"
        } else {
            "adopted"
        };
        write!(
            f,
            "{verb} {} version(s) from {}'s history {} ({} row(s) read)",
            self.adopted.len(),
            self.tool,
            self.table,
            self.rows_read
        )?;
        for a in &self.adopted {
            let check = match a.check {
                AdoptCheck::Checksum => "checksum matches",
                AdoptCheck::VersionOnly => "version only: the tool keeps no checksum",
                AdoptCheck::Baseline => "below the baseline: stamped",
            };
            write!(f, "\n  {:>6}  {}  {}  ({check})", a.version, a.name, a.file)?;
        }
        if !self.already_recorded.is_empty() {
            write!(
                f,
                "\nalready recorded by dbprep: {}",
                list(&self.already_recorded)
            )?;
        }
        if !self.repeatables.is_empty() {
            write!(
                f,
                "\nrepeatable migrations {} ran with these files: not run again",
                self.repeatables.join(", ")
            )?;
        }
        if self.pending.is_empty() {
            write!(f, "\nthe next upgrade applies nothing")?;
        } else {
            write!(f, "\nthe next upgrade applies {}", list(&self.pending))?;
        }
        if !self.out_of_order.is_empty() {
            write!(
                f,
                "\n{} older than the newest recorded version: applied only with out-of-order allowed",
                list(&self.out_of_order)
            )?;
        }
        Ok(())
    }
}

fn list(versions: &[i64]) -> String {
    versions
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One version to stamp: the embedded migration and the other tool's row
/// (none for a version under Flyway's baseline).
struct Adoption<'m> {
    migration: &'m Migration,
    row: Option<ForeignRow>,
    check: AdoptCheck,
}

/// The other tool's history against the embedded set and dbprep's own
/// history: what to stamp, or every reason not to.
struct Reading<'m> {
    adoptions: Vec<Adoption<'m>>,
    /// Repeatable migrations whose last run (Flyway's) had the embedded
    /// file's checksum.
    repeatables: Vec<&'m Migration>,
    already_recorded: Vec<i64>,
    problems: Vec<String>,
}

fn read_history<'m>(
    migrator: &Migrator<'m>,
    tool: Tool,
    foreign: Vec<ForeignRow>,
    recorded: &[HistoryRow],
) -> Reading<'m> {
    let mut problems = Vec::new();
    // Version → (row, check), in the order the tool applied them.
    let mut applied: BTreeMap<i64, (usize, ForeignRow, AdoptCheck)> = BTreeMap::new();
    let mut baseline: Option<i64> = None;
    // Flyway's repeatable runs by description, the last one winning.
    let mut repeatable_runs: BTreeMap<String, ForeignRow> = BTreeMap::new();
    for (order, row) in foreign.into_iter().enumerate() {
        let label = format!("version {} ({})", row.label, row.name);
        match row.entry {
            Entry::Marker => continue,
            Entry::Repeatable => {
                if row.success {
                    repeatable_runs.insert(row.name.clone(), row);
                }
            }
            _ if !row.success => problems.push(format!(
                "{label} failed under {tool}: finish or undo it with {tool} first, then adopt"
            )),
            _ if row.version.is_none() => problems.push(format!(
                "{label} is not a whole number, as dbprep versions are: rename the file and the row to one"
            )),
            Entry::Baseline => baseline = baseline.max(row.version),
            Entry::Undone => {
                if let Some(v) = row.version {
                    applied.remove(&v);
                }
            }
            Entry::Applied => {
                let version = row.version.unwrap_or_default();
                let Some(m) = migrator.migrations.get(version) else {
                    problems.push(format!(
                        "{label} is not among the embedded migrations: the database is newer than this binary, or its file was removed"
                    ));
                    continue;
                };
                let check = match checksum_matches(tool, row.checksum.as_deref(), m) {
                    Some(true) => AdoptCheck::Checksum,
                    None => AdoptCheck::VersionOnly,
                    Some(false) => {
                        problems.push(format!(
                            "{label}: {} is not the file {tool} applied (its checksum differs): the file was edited since",
                            m.file()
                        ));
                        continue;
                    }
                };
                applied.insert(version, (order, row, check));
            }
        }
    }
    let mut adoptions: Vec<(usize, Adoption<'m>)> = Vec::new();
    if let Some(baseline) = baseline {
        for m in migrator.migrations.iter() {
            if m.version() <= baseline && !applied.contains_key(&m.version()) {
                adoptions.push((
                    0,
                    Adoption {
                        migration: m,
                        row: None,
                        check: AdoptCheck::Baseline,
                    },
                ));
            }
        }
    }
    for (version, (order, row, check)) in applied {
        let migration = migrator
            .migrations
            .get(version)
            .expect("checked to be embedded above");
        adoptions.push((
            order + 1,
            Adoption {
                migration,
                row: Some(row),
                check,
            },
        ));
    }
    adoptions.sort_by_key(|(order, a)| (*order, a.migration.version()));
    // Versions dbprep already records are not stamped again: the same
    // row is an earlier adoption, another one a conflict to settle first.
    let mut already_recorded = Vec::new();
    let mut to_stamp = Vec::with_capacity(adoptions.len());
    for (_, a) in adoptions {
        let m = a.migration;
        match recorded.iter().find(|r| r.version == m.version()) {
            None => to_stamp.push(a),
            Some(row)
                if row.success
                    && row.recorded(m.checksum()) =>
            {
                already_recorded.push(m.version());
            }
            Some(row) => problems.push(format!(
                "version {} is already in dbprep's history, {}: settle it first (`verify` says how)",
                m.version(),
                if row.success {
                    "with another checksum"
                } else {
                    "unfinished"
                }
            )),
        }
    }
    // A repeatable runs again at the next upgrade unless Flyway last ran
    // it with the file as embedded (Flyway describes `R__a_b.sql` as "a b").
    let repeatables = migrator
        .migrations
        .repeatables()
        .iter()
        .filter(|m| {
            repeatable_runs
                .get(&m.name().replace('_', " "))
                .and_then(|row| checksum_matches(tool, row.checksum.as_deref(), m))
                == Some(true)
        })
        .collect();
    Reading {
        adoptions: to_stamp,
        repeatables,
        already_recorded,
        problems,
    }
}

impl Migrator<'_> {
    /// Take over a database that another tool migrated: read its history
    /// (`adopt` names the tool and where its table is), check that every
    /// version it lists is embedded and, where the tool keeps a checksum
    /// (sqlx, refinery, Flyway), that the embedded file is the one it
    /// applied; then record those versions in dbprep's history, in one
    /// transaction under the migration lock. The other tool's table is not
    /// touched. The next [`run`](Self::run) applies only what is new.
    ///
    /// # Errors
    ///
    /// [`Error::Adopt`] with every reason when a row failed, a version is
    /// not embedded or not a whole number, a file was edited since the
    /// tool applied it, or dbprep's history already disagrees; nothing is
    /// stamped. A missing table, or a connection error.
    pub async fn adopt(&self, pool: &Pool, adopt: &Adopt) -> Result<AdoptReport> {
        self.check_target()?;
        let started = Instant::now();
        let client = take(pool).await?;
        let table = adopt.qualified_table();
        let refuse = |problems: Vec<String>| Error::Adopt {
            tool: adopt.tool.to_string(),
            table: table.clone(),
            problems,
        };
        let found = client
            .simple_query(&format!(
                "SELECT pg_catalog.to_regclass({}) IS NOT NULL",
                literal(&table)
            ))
            .await
            .map_err(Error::postgres("look for the other tool's history"))?;
        if rows(found).first().and_then(|r| r.get(0)) != Some("t") {
            return Err(refuse(vec![format!(
                "the table does not exist (name its schema with --schema, or the table with --table, if {} was configured so)",
                adopt.tool
            )]));
        }
        let locked = if adopt.dry_run {
            None
        } else {
            Some(self.locked_session(&client).await?)
        };
        let recorded = if self.history.exists(&client).await? {
            self.history.read(&client).await?
        } else {
            Vec::new()
        };
        let answer = client
            .simple_query(&adopt.tool.select_sql(&table))
            .await
            .map_err(Error::postgres(format!(
                "read {}'s history {table}",
                adopt.tool
            )))?;
        let foreign: Vec<ForeignRow> = rows(answer)
            .iter()
            .map(|row| ForeignRow::read(adopt.tool, row))
            .collect();
        let rows_read = foreign.len();
        let reading = read_history(self, adopt.tool, foreign, &recorded);
        if !reading.problems.is_empty() {
            return Err(refuse(reading.problems));
        }
        if let Some((session, _)) = &locked {
            let first_rank = recorded.iter().map(|r| r.installed_rank).max().unwrap_or(0) + 1;
            let mut sql = String::from("BEGIN;\n");
            for (i, a) in reading.adoptions.iter().enumerate() {
                let row = NewRow::of(
                    a.migration,
                    first_rank + i as i32,
                    &session.facts.user,
                    literal(session.run_id()),
                );
                let row = match &a.row {
                    None => NewRow {
                        kind: format!("'{}'", RowKind::Stamp),
                        ..row
                    },
                    Some(foreign) => NewRow {
                        applied_at: foreign.applied_at.as_deref().map_or(row.applied_at, |at| {
                            format!("{}::pg_catalog.timestamptz", literal(at))
                        }),
                        execution_ms: foreign.execution_ms.clamp(0, i32::MAX as i64).to_string(),
                        applied_by: foreign
                            .applied_by
                            .as_deref()
                            .map_or(row.applied_by, literal),
                        ..row
                    },
                };
                sql.push_str(&self.history.insert_sql(&row));
            }
            if !reading.repeatables.is_empty() {
                sql.push_str(&self.history.create_repeatable_table_sql());
            }
            for m in &reading.repeatables {
                sql.push_str(&self.history.record_repeatable_sql(
                    m,
                    &literal(&session.facts.user),
                    &literal(session.run_id()),
                ));
            }
            sql.push_str("COMMIT;");
            client
                .batch_execute(&sql)
                .await
                .map_err(Error::postgres("stamp the adopted versions"))?;
            session.store_snapshot().await?;
            session.lock.release(&client).await?;
        }
        let mut recorded_versions: Vec<i64> = recorded
            .iter()
            .map(|r| r.version)
            .chain(reading.adoptions.iter().map(|a| a.migration.version()))
            .collect();
        recorded_versions.sort_unstable();
        let newest = recorded_versions.last().copied();
        let pending: Vec<i64> = self
            .migrations
            .iter()
            .map(Migration::version)
            .filter(|v| self.target.is_none_or(|t| *v <= t))
            .filter(|v| recorded_versions.binary_search(v).is_err())
            .collect();
        let out_of_order = pending
            .iter()
            .copied()
            .filter(|v| newest.is_some_and(|n| *v < n))
            .collect();
        let report = AdoptReport {
            tool: adopt.tool,
            table,
            rows_read,
            adopted: reading
                .adoptions
                .iter()
                .map(|a| AdoptedVersion {
                    version: a.migration.version(),
                    name: a.migration.name().to_owned(),
                    file: a.migration.file().to_owned(),
                    check: a.check,
                })
                .collect(),
            already_recorded: reading.already_recorded,
            repeatables: reading
                .repeatables
                .iter()
                .map(|m| m.name().to_owned())
                .collect(),
            pending,
            out_of_order,
            dry_run: adopt.dry_run,
            elapsed: started.elapsed(),
        };
        tracing::info!("{report}");
        Ok(report)
    }
}
