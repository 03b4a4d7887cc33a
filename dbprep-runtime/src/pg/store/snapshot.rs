//! The schema snapshot table, `dbprep_schema_snapshot`: one row per object
//! of the last snapshot of the schema (section, name, owner OID,
//! definition), and one row about the snapshot itself (section and name
//! empty): the version and server major version it was taken at, whether
//! it holds definitions, and the transaction snapshot it was taken under,
//! from which [`changed`](crate::pg::drift::changed) finds what may have
//! changed since. What a snapshot *is* (the catalog query, the diff) is
//! drift's business; this is where it is kept.

use tokio_postgres::Client;

use super::{query_bool, HistoryTable};
use crate::pg::drift::snapshot::{Owners, CATALOG_SETTINGS};
use crate::pg::error::Result;
use crate::pg::sql::literal;

/// The setting that carries the owners to read again from the statement
/// that finds them to those that replace their rows.
const REFRESH: &str = "dbprep.snapshot_refresh";

/// The setting that carries the owners of the catalog rows written since
/// the stored snapshot to the statement that adds their dependents.
const WRITTEN: &str = "dbprep.snapshot_written";

/// The setting that carries the transaction snapshot the objects were
/// read under to the row about the snapshot.
const SEEN: &str = "dbprep.snapshot_seen";

/// An expression: the value of one of these settings.
fn current(setting: &str) -> String {
    format!("pg_catalog.current_setting('{setting}')")
}

impl HistoryTable {
    /// The statement that creates the snapshot table if missing, after
    /// dropping one of an earlier layout (`old_layout`: one row holding the
    /// whole document; the next snapshot is taken whole).
    pub(crate) fn create_snapshot_sql(&self, old_layout: bool) -> String {
        let drop = if old_layout {
            format!("DROP TABLE {};\n", self.snapshot_table())
        } else {
            String::new()
        };
        format!(
            "{drop}CREATE TABLE IF NOT EXISTS {} (
    section    text NOT NULL,
    name       text NOT NULL,
    owner      oid NOT NULL,
    definition json,
    PRIMARY KEY (section, name)
);",
            self.snapshot_table()
        )
    }

    /// Whether the snapshot table exists in the layout of an earlier
    /// version (one row with the whole document).
    pub(crate) async fn snapshot_has_old_layout(&self, client: &Client) -> Result<bool> {
        query_bool(
            client,
            &self.snapshot_layout_sql("only_row"),
            "look at the schema snapshot table",
        )
        .await
    }

    /// A boolean expression: the snapshot table has the column `column`.
    pub(crate) fn snapshot_layout_sql(&self, column: &str) -> String {
        format!(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_attribute WHERE attrelid = pg_catalog.to_regclass({}) \
             AND attname = {} AND NOT attisdropped)",
            literal(&self.snapshot_table()),
            literal(column)
        )
    }

    /// Statements that bring the stored snapshot up to the live schema for
    /// the history's head version, in the transaction of the last
    /// migration of a run: the objects that may have changed since the
    /// stored one are read again (all of them the first time); with
    /// `itemize` false, which objects exist but not their definitions
    /// (`verify` can then tell that the schema changed, not how).
    ///
    /// The rows written since and the new `seen` are found in one
    /// statement, so under one catalog snapshot: what a transaction
    /// committing meanwhile wrote is newer than `seen`, and found by the
    /// next run or `verify`.
    pub(crate) fn store_snapshot_sql(&self, itemize: bool) -> String {
        let table = self.snapshot_table();
        let refresh_list = current(REFRESH);
        let refresh = Owners::Listed(&refresh_list);
        let head = format!(
            "(SELECT max(version) FROM {} WHERE success)",
            self.qualified()
        );
        format!(
            "{CATALOG_SETTINGS}
SELECT pg_catalog.set_config('{SEEN}', pg_catalog.txid_current_snapshot()::text, true), pg_catalog.set_config('{WRITTEN}', {written}, true);
SELECT pg_catalog.set_config('{REFRESH}', {changed}, true);
{with}DELETE FROM {table} WHERE section <> '' AND {refreshed};
INSERT INTO {table} (section, name, owner, definition)
{objects}
ON CONFLICT (section, name) DO UPDATE SET owner = EXCLUDED.owner, definition = EXCLUDED.definition;
INSERT INTO {table} (section, name, owner, definition)
SELECT '', '', 0, pg_catalog.json_build_object('version', {head},
    'server_major', pg_catalog.current_setting('server_version_num')::integer / 10000,
    'seen', {seen}, 'own', pg_catalog.txid_current_if_assigned(),
    'itemized', {itemize}, 'taken_at', pg_catalog.clock_timestamp())
ON CONFLICT (section, name) DO UPDATE SET definition = EXCLUDED.definition;\n",
            seen = current(SEEN),
            written = self.written_since_sql(),
            changed = self.changed_owners_sql(&current(WRITTEN), Some(itemize)),
            with = refresh.with(),
            refreshed = refresh.admit("owner"),
            objects = self.objects_sql(refresh, itemize),
        )
    }

    /// Statements whose last answers one row: the stored snapshot's
    /// `version`, `server_major` and `itemized` (all NULL when none is
    /// stored), the server's major version, and the owners to compare
    /// again (`*`: all).
    pub(crate) fn stored_snapshot_sql(&self) -> String {
        format!(
            "SELECT pg_catalog.set_config('{WRITTEN}', {}, true);
SELECT h.definition ->> 'version', h.definition ->> 'server_major', h.definition ->> 'itemized',
       pg_catalog.current_setting('server_version_num')::integer / 10000, {}
FROM (SELECT 1) AS one LEFT JOIN {} AS h ON h.section = '' AND h.name = ''",
            self.written_since_sql(),
            self.changed_owners_sql(&current(WRITTEN), None),
            self.snapshot_table()
        )
    }

    /// A query of one row, one column: the stored objects of `owners` as
    /// a json array of `[section, name, definition]`.
    pub(crate) fn stored_objects_sql(&self, owners: Owners<'_>) -> String {
        format!(
            "{}SELECT pg_catalog.json_agg(pg_catalog.json_build_array(s.section, s.name, s.definition)) FROM {} s \
             WHERE s.section <> '' AND {}",
            owners.with(),
            self.snapshot_table(),
            owners.admit("s.owner")
        )
    }
}
