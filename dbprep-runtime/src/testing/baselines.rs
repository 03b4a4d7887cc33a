//! Proving a baseline: the schema a fresh database gets from
//! `B<version>__*.sql` is the schema replaying the migrations up to
//! `version` gives.

use super::database::{TestDatabase, TestingError};
use crate::model::migration::Migrations;
use crate::pg::drift::snapshot::diff;
use crate::pg::drift::verify::live_snapshot;
use crate::pg::store::HistoryTable;
use crate::Migrator;

/// How the schema from the baseline of `version` differs from replaying
/// the migrations up to `version`, one line per difference (`column
/// public.users.nickname added`: the baseline has it, the replay does
/// not); empty when they are the same. Two new databases, one each way,
/// compared by their schema snapshots.
///
/// # Errors
///
/// [`TestingError::Baseline`] when there is no baseline of `version` or a
/// side fails to migrate; [`TestingError`] when no database can be had.
pub async fn baseline_differences(
    migrations: &Migrations,
    version: i64,
) -> Result<Vec<String>, TestingError> {
    let failed = |what: &str, reason: String| TestingError::Baseline {
        version,
        what: what.to_owned(),
        reason,
    };
    if !migrations
        .baselines()
        .iter()
        .any(|b| b.version() == version)
    {
        return Err(failed(
            "find it",
            format!("there is no baseline B{version}__*.sql"),
        ));
    }
    let replay = migrations.without_baselines();
    let replayed = TestDatabase::new().await?;
    let report = Migrator::new(&replay)
        .target(version)
        .run(replayed.pool())
        .await
        .map_err(|e| failed("replay the migrations", e.to_string()))?;
    tracing::debug!("replayed the migrations: {report}");
    let from_baseline = TestDatabase::new().await?;
    let report = Migrator::new(migrations)
        .target(version)
        .run(from_baseline.pool())
        .await
        .map_err(|e| failed("apply the baseline", e.to_string()))?;
    if report.applied.len() != 1 || report.applied[0].version != version {
        return Err(failed(
            "apply the baseline",
            format!("a fresh database ran {report}, not the baseline alone"),
        ));
    }
    let replayed = snapshot(&replayed, version).await?;
    let from_baseline = snapshot(&from_baseline, version).await?;
    Ok(diff(&replayed, &from_baseline))
}

/// Panic, listing the differences, unless the baseline of `version` gives
/// the schema replaying the migrations up to `version` gives (see
/// [`baseline_differences`]).
///
/// ```no_run
/// # static MIGRATIONS: dbprep_runtime::Migrations = dbprep_runtime::Migrations::empty();
/// #[tokio::test]
/// async fn the_baseline_is_the_migrations() {
///     dbprep_runtime::testing::assert_baseline_equivalent(&MIGRATIONS, 1000).await;
/// }
/// ```
pub async fn assert_baseline_equivalent(migrations: &Migrations, version: i64) {
    let differences = baseline_differences(migrations, version)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        differences.is_empty(),
        "the baseline of version {version} differs from replaying the migrations (\"added\": only the baseline has it):\n  {}",
        differences.join("\n  ")
    );
}

/// The schema snapshot of a database, as `verify` takes it.
async fn snapshot(db: &TestDatabase, version: i64) -> Result<serde_json::Value, TestingError> {
    let client = db.connect().await?;
    live_snapshot(&client, &HistoryTable::default())
        .await
        .map_err(|e| TestingError::Baseline {
            version,
            what: format!("take the schema snapshot of {}", db.name()),
            reason: e.to_string(),
        })
}
