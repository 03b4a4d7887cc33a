//! `verify`: every way the database differs from the binary, read-only.

use std::fmt;

use serde_json::Value;
use tokio_postgres::Client;

use crate::model::fixture::Fixtures;
use crate::model::history::{reconcile, VersionState};
use crate::model::migration::Migrations;
use crate::pg::drift::indexes::{self, InvalidIndex};
use crate::pg::drift::snapshot::{diff, document, Owners, CATALOG_SETTINGS};
use crate::pg::error::{Drift, Error, Result};
use crate::pg::report::LockHolder;
use crate::pg::run::lock;
use crate::pg::run::plan::{Policies, Policy};
use crate::pg::sql::{column, literal, rows};
use crate::pg::store::fixtures::PopulatedFixture;
use crate::pg::store::history::{HistoryRow, HistoryTable};

/// What [`Migrator::verify`](crate::Migrator::verify) found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a verify report says whether the database drifted; check is_clean()"]
pub struct VerifyReport {
    /// Every difference, with the policy that applies to it.
    pub findings: Vec<Finding>,
    /// Pending versions (not drift: a run would apply them).
    pub pending: Vec<i64>,
    /// The newest applied version.
    pub version: Option<i64>,
    /// Remarks that are not drift (no snapshot yet, a snapshot from another
    /// PostgreSQL major version).
    pub notes: Vec<String>,
    /// Every repeatable migration: the checksum it last ran with against
    /// the file's (not drift: a changed one runs again at the next run).
    pub repeatables: Vec<crate::pg::report::RepeatableStatus>,
}

impl serde::Serialize for VerifyReport {
    /// `clean` ([`is_clean`](Self::is_clean)), the version, the findings,
    /// the pending versions and the notes.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut report = serializer.serialize_struct("VerifyReport", 6)?;
        report.serialize_field("clean", &self.is_clean())?;
        report.serialize_field("version", &self.version)?;
        report.serialize_field("findings", &self.findings)?;
        report.serialize_field("pending", &self.pending)?;
        report.serialize_field("notes", &self.notes)?;
        report.serialize_field("repeatables", &self.repeatables)?;
        report.end()
    }
}

impl serde::Serialize for Finding {
    /// The drift's [`kind`](Drift::kind), the policy, and the drift as
    /// text (`message`).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut finding = serializer.serialize_struct("Finding", 3)?;
        finding.serialize_field("kind", self.drift.kind())?;
        finding.serialize_field("policy", &self.policy)?;
        finding.serialize_field("message", &self.drift.to_string())?;
        finding.end()
    }
}

/// One difference and its policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What differs.
    pub drift: Drift,
    /// What the migrator's policy says to do about it.
    pub policy: Policy,
}

impl VerifyReport {
    /// Whether nothing the policies refuse was found.
    pub fn is_clean(&self) -> bool {
        self.findings.iter().all(|f| f.policy != Policy::Error)
    }

    /// The findings whose policy is [`Policy::Error`].
    pub fn errors(&self) -> impl Iterator<Item = &Drift> {
        self.findings
            .iter()
            .filter(|f| f.policy == Policy::Error)
            .map(|f| &f.drift)
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let version = crate::pg::report::show(self.version);
        if self.findings.is_empty() {
            write!(f, "database at version {version}: no drift")?;
        } else {
            write!(
                f,
                "database at version {version}: {} finding(s)",
                self.findings.len()
            )?;
            for finding in &self.findings {
                let level = match finding.policy {
                    Policy::Error => "error",
                    Policy::Warn => "warning",
                    Policy::Allow => "allowed",
                };
                write!(f, "\n  {level}: {}", finding.drift)?;
            }
        }
        if !self.pending.is_empty() {
            let pending: Vec<String> = self.pending.iter().map(i64::to_string).collect();
            write!(f, "\n  pending: {}", pending.join(", "))?;
        }
        for r in &self.repeatables {
            if !matches!(r.state, crate::pg::report::RepeatableState::Applied { .. }) {
                write!(f, "\n  repeatable {}: {}", r.name, r.state)?;
            }
        }
        for note in &self.notes {
            write!(f, "\n  note: {note}")?;
        }
        Ok(())
    }
}

/// What verify reads of the database.
pub(crate) struct Observed {
    /// The history rows, in version order.
    pub rows: Vec<HistoryRow>,
    /// The schema check (`None`: no snapshot table).
    pub schema: Option<SchemaCheck>,
    /// The live migrator holding the lock while a row is unfinished: that
    /// row is in progress, not dirty.
    pub running: Option<LockHolder>,
    /// The database's INVALID indexes.
    pub invalid_indexes: Vec<InvalidIndex>,
}

/// The schema part of a verification.
pub(crate) struct SchemaCheck {
    pub changes: Option<Vec<String>>,
    pub notes: Vec<String>,
}

/// Read what verify needs: history rows, the schema check, who runs an
/// unfinished migration, the INVALID indexes. Only SELECTs and
/// `set_config(…, true)`, so it runs with a read-only role and on a hot
/// standby.
pub(crate) async fn read(client: &Client, history: &HistoryTable) -> Result<Observed> {
    let present = client
        .simple_query(&format!(
            "SELECT pg_catalog.to_regclass({}) IS NOT NULL, pg_catalog.to_regclass({}) IS NOT NULL, ({})",
            literal(&history.qualified()),
            literal(&history.snapshot_table()),
            history.snapshot_layout_sql("section")
        ))
        .await
        .map_err(Error::postgres("look for the history"))?;
    let present = rows(present);
    let present = |i| present.first().and_then(|r| column(r, i)) == Some("t");
    let (has_history, has_snapshot, current_layout) = (present(0), present(1), present(2));
    let rows = if has_history {
        history.read(client).await?
    } else {
        Vec::new()
    };
    let schema = match (has_snapshot, current_layout) {
        (false, _) => None,
        (true, true) => Some(schema(client, history).await?),
        (true, false) => Some(SchemaCheck {
            changes: None,
            notes: vec!["the schema snapshot was stored by an earlier version of dbprep: not compared (the next run that applies a migration takes a new one)".to_owned()],
        }),
    };
    Ok(Observed {
        running: running_holder(client, history, &rows).await?,
        invalid_indexes: indexes::invalid(client).await?,
        rows,
        schema,
    })
}

/// When the history has an unfinished row: the live migrator holding the
/// lock, which is running it (`None`: nobody is, and the row is dirty).
pub(crate) async fn running_holder(
    client: &Client,
    history: &HistoryTable,
    rows: &[HistoryRow],
) -> Result<Option<LockHolder>> {
    if rows.iter().all(|r| r.success) {
        return Ok(None);
    }
    lock::holder(client, history).await
}

/// The one row of `select`, run with `search_path = pg_catalog` (the
/// `pg_get_*def` functions print names relative to it).
async fn catalog_row(client: &Client, select: &str) -> Result<tokio_postgres::SimpleQueryRow> {
    let sql = format!("{CATALOG_SETTINGS}\n{select}");
    let answer = client
        .simple_query(&sql)
        .await
        .map_err(Error::postgres("read the schema snapshot"))?;
    // The first row is set_config's; the answer is the last.
    rows(answer)
        .pop()
        .ok_or_else(|| Error::Unexpected("the snapshot query returned no row".into()))
}

/// The live schema's snapshot document, as a run stores it (dbprep's own
/// tables beside `history` left out).
pub(crate) async fn live_snapshot(client: &Client, history: &HistoryTable) -> Result<Value> {
    let row = catalog_row(client, &history.objects_array_sql(Owners::All)).await?;
    Ok(document(&parse(column(&row, 0))))
}

/// A json column's value (NULL, an empty aggregate, is `null`).
fn parse(text: Option<&str>) -> Value {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null)
}

async fn schema(client: &Client, history: &HistoryTable) -> Result<SchemaCheck> {
    // First which objects may have changed since the stored snapshot (the
    // catalog rows written since); then those alone, stored and live.
    let row = &catalog_row(client, &history.stored_snapshot_sql()).await?;
    let mut notes = Vec::new();
    let (Some(_), Some(stored_major)) = (column(row, 0), column(row, 1)) else {
        notes.push(
            "no schema snapshot stored yet: the next run that applies a migration stores one"
                .to_owned(),
        );
        return Ok(SchemaCheck {
            changes: None,
            notes,
        });
    };
    let live_major = column(row, 3).unwrap_or_default();
    if stored_major != live_major {
        notes.push(format!(
            "the schema snapshot was taken on PostgreSQL {stored_major} and the server runs {live_major}: not compared (the next run takes a new one)"
        ));
        return Ok(SchemaCheck {
            changes: None,
            notes,
        });
    }
    let itemized = column(row, 2) == Some("true");
    let owners = column(row, 4).unwrap_or("*").to_owned();
    if owners.is_empty() {
        return Ok(SchemaCheck {
            changes: Some(Vec::new()),
            notes,
        });
    }
    let listed = literal(&owners);
    let owners_read = Owners::Listed(&listed);
    let objects = format!(
        "SELECT ({}), ({})",
        history.stored_objects_sql(owners_read),
        history.objects_array_sql(owners_read)
    );
    let row = &catalog_row(client, &objects).await?;
    let (stored, live) = (
        document(&parse(column(row, 0))),
        document(&parse(column(row, 1))),
    );
    let live_names = names(&live);
    let changes = if itemized {
        diff(&stored, &live)
    } else if names(&stored) != live_names || (owners != "*" && !live_names.is_empty()) {
        vec!["the schema changed since the last run; it stored no snapshot (schema_snapshot(false)) to say what changed".to_owned()]
    } else {
        Vec::new()
    };
    Ok(SchemaCheck {
        changes: Some(changes),
        notes,
    })
}

/// The objects of a snapshot document, by section and name.
fn names(document: &Value) -> Vec<(String, String)> {
    document
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(section, objects)| {
            objects
                .as_object()
                .into_iter()
                .flatten()
                .map(move |(name, _)| (section.clone(), name.clone()))
        })
        .collect()
}

/// The `populated` fixtures whose embedded content changed since.
pub(crate) fn fixtures(
    populated: &[PopulatedFixture],
    fixtures: &Fixtures,
    policy: Policy,
) -> Vec<Finding> {
    populated
        .iter()
        .filter_map(|populated| {
            let fixture = fixtures.get(&populated.name)?;
            let embedded = fixture.checksum().to_string();
            (embedded != populated.checksum).then(|| Finding {
                drift: Drift::FixtureChanged {
                    file: fixture.file().to_owned(),
                    name: populated.name.clone(),
                    applied: populated.checksum.clone(),
                    embedded,
                },
                policy,
            })
        })
        .collect()
}

/// Turn what was read into a report.
pub(crate) fn report(
    migrations: &Migrations,
    observed: Observed,
    policies: Policies,
    schema_policy: Policy,
) -> VerifyReport {
    let Observed {
        rows,
        schema,
        running,
        invalid_indexes,
    } = observed;
    let mut findings = Vec::new();
    let mut pending = Vec::new();
    let mut notes = Vec::new();
    let newest = rows.iter().map(|r| r.version).max();
    for entry in reconcile(migrations, &rows) {
        let version = entry.version;
        match (&entry.state, &running) {
            (VersionState::Unfinished, Some(holder)) => notes.push(format!(
                "migration {version} ({}) is in progress, run by {holder}",
                entry.file()
            )),
            (VersionState::Unfinished, None) => findings.push(Finding {
                drift: Drift::Dirty {
                    version,
                    file: entry.file().to_owned(),
                },
                policy: Policy::Error,
            }),
            (VersionState::Pending { .. }, _) => pending.push(version),
            _ => {}
        }
        if let Some((drift, policy)) = policies.drift(&entry, newest) {
            findings.push(Finding { drift, policy });
        }
    }
    for index in invalid_indexes {
        if running.is_some() {
            // A running CREATE INDEX CONCURRENTLY's index is INVALID
            // until its build is over.
            notes.push(format!(
                "index {index} is INVALID while a migration is in progress (an index being built)"
            ));
        } else {
            findings.push(Finding {
                drift: Drift::InvalidIndex(index),
                policy: Policy::Error,
            });
        }
    }
    if let Some(schema) = schema {
        notes.extend(schema.notes);
        if let Some(changes) = schema.changes.filter(|c| !c.is_empty()) {
            findings.push(Finding {
                drift: Drift::Schema { changes },
                policy: schema_policy,
            });
        }
    } else if !rows.is_empty() {
        notes.push(
            "no schema snapshot table: the next run that applies a migration creates one"
                .to_owned(),
        );
    }
    VerifyReport {
        findings,
        pending,
        version: rows.iter().filter(|r| r.success).map(|r| r.version).max(),
        notes,
        repeatables: Vec::new(),
    }
}
