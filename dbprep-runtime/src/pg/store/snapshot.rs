//! The schema snapshot table, `dbprep_schema_snapshot`: one row per object
//! of the last snapshot of the schema (section, name, owner OID,
//! definition), and one row about the snapshot itself (section and name
//! empty): the version and server major version it was taken at, whether
//! it holds definitions, and the transaction snapshot it was taken under,
//! from which [`changed`](crate::pg::drift::changed) finds what may have
//! changed since. What a snapshot *is* (the catalog query, the diff) is
//! drift's business; this is where it is kept.

use super::HistoryTable;
use crate::pg::drift::changed::Refresh;
use crate::pg::drift::snapshot::{Owners, CATALOG_SETTINGS};
use crate::pg::sql::literal;

/// Whether the snapshot table exists, and in which layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SnapshotTable {
    /// Not made yet.
    Missing,
    /// One row holding the whole document, as an earlier version kept it:
    /// replaced by the next run.
    OldLayout,
    /// One row per object.
    Current,
}

impl SnapshotTable {
    /// The state [`HistoryTable::snapshot_table_state_sql`] answers.
    pub(crate) fn parse(answer: Option<&str>) -> SnapshotTable {
        match answer {
            Some("missing") => SnapshotTable::Missing,
            Some("old") => SnapshotTable::OldLayout,
            _ => SnapshotTable::Current,
        }
    }
}

/// The setting that carries the owners to read again from the statement
/// that finds them to those that replace their rows.
const REFRESH: &str = "dbprep.snapshot_refresh";

/// The setting that carries the owners of the catalog rows written since
/// the stored snapshot to the statement that adds their dependents.
const WRITTEN: &str = "dbprep.snapshot_written";

/// The setting that carries the transaction snapshot the objects were
/// read under to the row about the snapshot.
const SEEN: &str = "dbprep.snapshot_seen";

/// Statements that put the catalog settings in place and take `seen`,
/// before the objects of a snapshot taken whole are read (or asked about).
fn take_seen() -> String {
    format!(
        "{CATALOG_SETTINGS}
SELECT pg_catalog.set_config('{SEEN}', pg_catalog.txid_current_snapshot()::text, true);\n"
    )
}

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

    /// An expression of type text: the state of the snapshot table, as
    /// [`SnapshotTable::parse`] reads it.
    pub(crate) fn snapshot_table_state_sql(&self) -> String {
        format!(
            "CASE WHEN pg_catalog.to_regclass({}) IS NULL THEN 'missing' \
             WHEN ({}) THEN 'old' ELSE 'current' END",
            literal(&self.snapshot_table()),
            self.snapshot_layout_sql("only_row")
        )
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
    /// the history's head version in one message, for a script run by
    /// `psql` (a run asks first, with [`refresh_plan_sql`]): the objects
    /// that may have changed since the stored one are read again (all of
    /// them the first time); with `itemize` false, which objects exist but
    /// not their definitions (`verify` can then tell that the schema
    /// changed, not how).
    ///
    /// [`refresh_plan_sql`]: Self::refresh_plan_sql
    pub(crate) fn store_snapshot_sql(&self, itemize: bool) -> String {
        let refresh_list = current(REFRESH);
        let refresh = Owners::Listed(&refresh_list);
        format!(
            "{plan}SELECT pg_catalog.set_config('{REFRESH}', {changed}, true);
{with}DELETE FROM {table} WHERE section <> '' AND {refreshed};
{store}",
            plan = self.seen_and_written_sql(),
            changed = self.changed_owners_sql(&current(WRITTEN), Some(itemize)),
            table = self.snapshot_table(),
            with = refresh.with(),
            refreshed = refresh.admit("owner"),
            store = self.store_objects_sql(refresh, itemize),
        )
    }

    /// Statements that find what a run reads again of the stored snapshot,
    /// in the transaction of its last migration; the last answers one row
    /// for [`Refresh::parse`]. [`refresh_sql`](Self::refresh_sql) then
    /// reads it, in the same transaction.
    ///
    /// Asked apart so that the statement that reads the objects is written
    /// for them: their OIDs in it, and only their sections (planning a
    /// query of every section, for a list the planner cannot see, took
    /// longer than reading a new table's objects).
    pub(crate) fn refresh_plan_sql(&self, itemize: bool) -> String {
        format!(
            "{}SELECT {};\n",
            self.seen_and_written_sql(),
            self.refresh_of_sql(&self.changed_owners_sql(&current(WRITTEN), Some(itemize)))
        )
    }

    /// Statements that start taking the snapshot whole, in the
    /// transaction of a run's last migration: `seen` is taken, then the
    /// last answers which sections have objects, for [`Refresh::parse`];
    /// [`refresh_sql`](Self::refresh_sql) then reads them, in the same
    /// transaction. Asked apart for the same reason as
    /// [`refresh_plan_sql`](Self::refresh_plan_sql): a statement that
    /// reads only the sections a schema uses plans in a fraction of the
    /// time of one that reads all nine.
    pub(crate) fn whole_plan_sql(&self) -> String {
        format!("{}SELECT {};\n", take_seen(), self.present_sections_sql())
    }

    /// Statements that read again what `refresh` says of the stored
    /// snapshot: after [`refresh_plan_sql`](Self::refresh_plan_sql) in the
    /// same transaction, or alone to take it whole.
    pub(crate) fn refresh_sql(&self, refresh: &Refresh, itemize: bool) -> String {
        let table = self.snapshot_table();
        let replace_all = |owners: Owners<'_>| {
            format!(
                "DELETE FROM {table} WHERE section <> '';\n{}",
                self.store_objects_sql(owners, itemize)
            )
        };
        match refresh {
            // What was seen is taken before the objects are read: what
            // commits in between is read again next time, not missed.
            Refresh::Whole => take_seen() + &replace_all(Owners::All),
            // `seen` was taken before the sections were asked for.
            Refresh::Sections(sections) => replace_all(Owners::AllIn(sections)),
            Refresh::Owners { owners, sections } => {
                let these = Owners::These { owners, sections };
                let delete = if owners.is_empty() {
                    String::new()
                } else {
                    format!(
                        "DELETE FROM {table} WHERE section <> '' AND {};\n",
                        these.admit("owner")
                    )
                };
                format!("{delete}{}", self.store_objects_sql(these, itemize))
            }
        }
    }

    /// The statement that finds the new `seen` and the owners of the rows
    /// written since the stored one, both under one catalog snapshot: what
    /// a transaction committing meanwhile wrote is newer than `seen`, and
    /// found by the next run or `verify`.
    fn seen_and_written_sql(&self) -> String {
        format!(
            "{CATALOG_SETTINGS}
SELECT pg_catalog.set_config('{SEEN}', pg_catalog.txid_current_snapshot()::text, true), pg_catalog.set_config('{WRITTEN}', {}, true);\n",
            self.written_since_sql()
        )
    }

    /// Statements that store the objects of `owners` (their earlier rows
    /// deleted) and the row about the snapshot.
    fn store_objects_sql(&self, owners: Owners<'_>, itemize: bool) -> String {
        let table = self.snapshot_table();
        let objects = match owners {
            Owners::These { sections, .. } if sections.is_empty() => String::new(),
            _ => format!(
                "INSERT INTO {table} (section, name, owner, definition)
{}
ON CONFLICT (section, name) DO UPDATE SET owner = EXCLUDED.owner, definition = EXCLUDED.definition;\n",
                self.objects_sql(owners, itemize)
            ),
        };
        format!(
            "{objects}INSERT INTO {table} (section, name, owner, definition)
SELECT '', '', 0, pg_catalog.json_build_object('version', (SELECT max(version) FROM {} WHERE success),
    'server_major', pg_catalog.current_setting('server_version_num')::integer / 10000,
    'seen', {}, 'own', pg_catalog.txid_current_if_assigned(),
    'itemized', {itemize}, 'taken_at', pg_catalog.clock_timestamp())
ON CONFLICT (section, name) DO UPDATE SET definition = EXCLUDED.definition;\n",
            self.qualified(),
            current(SEEN),
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
