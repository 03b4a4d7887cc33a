//! The schema snapshot table, `dbprep_schema_snapshot`: one row holding the
//! last snapshot of the schema (or its fingerprint alone), its hash, the
//! server's major version and the version it was taken at. What a snapshot
//! *is* (the catalog query, the fingerprint, the diff) is drift's
//! business; this is where it is kept.

use super::HistoryTable;

/// The `hash` of a stored row that holds the fingerprint alone (a run made
/// with [`Migrator::schema_snapshot(false)`](crate::Migrator::schema_snapshot)).
pub(crate) const NO_DOCUMENT: &str = "''";

/// The live schema, as SQL the snapshot statement runs (with
/// `search_path = pg_catalog`).
pub(crate) struct LiveSchema {
    /// An expression of type text: the catalog's fingerprint.
    pub fingerprint: String,
    /// A `FROM` item `live` with one column `s`, the snapshot document.
    pub from_item: String,
    /// An expression: the hash of the document `s`.
    pub document_hash: String,
}

impl HistoryTable {
    /// The statement that creates the snapshot table if missing.
    pub(crate) fn create_snapshot_sql(&self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
    only_row     boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    version      bigint,
    server_major integer NOT NULL,
    hash         text NOT NULL,
    fingerprint  text NOT NULL,
    snapshot     json NOT NULL,
    taken_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);",
            self.snapshot_table()
        )
    }

    /// Statements that store the live snapshot for the history's head
    /// version, in the transaction of the last migration of a run; with
    /// `itemize` false, the fingerprint alone (no document: `verify` can
    /// then tell that the schema changed, not what).
    ///
    /// The fingerprint is computed first: when it equals the stored one
    /// (the run changed data, not the schema) the stored snapshot is still
    /// the schema's, and only its version moves. Taking the snapshot is most
    /// of the time of a run that applies one migration to a large schema.
    pub(crate) fn store_snapshot_sql(&self, itemize: bool, live: &LiveSchema) -> String {
        let head = format!(
            "(SELECT max(version) FROM {} WHERE success)",
            self.qualified()
        );
        let mut unchanged = "fingerprint = pg_catalog.current_setting('dbprep.fingerprint') \
             AND server_major = pg_catalog.current_setting('server_version_num')::integer / 10000"
            .to_owned();
        // (hash, document, FROM): a document only when asked for, and kept
        // only when the stored row has one.
        let (hash, document, from) = if itemize {
            unchanged.push_str(&format!(" AND hash <> {NO_DOCUMENT}"));
            (
                live.document_hash.clone(),
                "s",
                format!("FROM {}\n", live.from_item),
            )
        } else {
            (
                NO_DOCUMENT.to_owned(),
                "'null'::pg_catalog.json",
                String::new(),
            )
        };
        format!(
            "SELECT pg_catalog.set_config('search_path', 'pg_catalog', true);
SELECT pg_catalog.set_config('dbprep.fingerprint', {fingerprint}, true);
UPDATE {t} SET version = {head}, taken_at = pg_catalog.clock_timestamp() WHERE {unchanged};
INSERT INTO {t} AS old (only_row, version, server_major, hash, fingerprint, snapshot)
SELECT true, {head}, pg_catalog.current_setting('server_version_num')::integer / 10000,
       {hash}, pg_catalog.current_setting('dbprep.fingerprint'), {document}
{from}WHERE NOT EXISTS (SELECT FROM {t} WHERE {unchanged})
ON CONFLICT (only_row) DO UPDATE SET version = EXCLUDED.version, server_major = EXCLUDED.server_major,
    hash = EXCLUDED.hash, fingerprint = EXCLUDED.fingerprint, snapshot = EXCLUDED.snapshot, taken_at = pg_catalog.clock_timestamp();\n",
            t = self.snapshot_table(),
            fingerprint = live.fingerprint,
        )
    }
}
