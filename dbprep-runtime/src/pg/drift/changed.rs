//! Which objects may differ from the stored snapshot: the owners to read
//! again, found from the catalog rows written since it was taken.
//!
//! Every DDL writes new versions of the catalog rows of what it changes,
//! and a row's `xmin` says which transaction wrote it. The stored snapshot
//! keeps the transaction snapshot it was taken under (`seen`, as
//! `txid_current_snapshot()` prints it) and the transaction that took it
//! (`own`, which that snapshot counts as running): a catalog row whose
//! writer was neither seen nor `own` is newer than the stored objects
//! (one written in a subtransaction of `own`, a savepoint or an exception
//! block, counts as newer: read again for nothing). From those rows
//! come their owners, then everything that depends on them through
//! `pg_depend`, transitively (a renamed table changes how its indexes,
//! constraints and the views over it print; a renamed schema, everything
//! in it), then the stored owners that no longer exist (a drop leaves no
//! row to find). The snapshot is right for every other object, so a run
//! reads only these again, and `verify` compares only these.
//!
//! `*` (every object) stands in when no snapshot is stored, it was taken
//! on another major version or with(out) definitions, its `seen` is too old
//! for 32-bit transaction ids to be compared (2³⁰ transactions since), or
//! many objects changed (reading them one by one would be slower than all).
//! A row written long ago whose raw `xmin` happens to look recent (once
//! transaction ids wrapped around) only adds an owner that is read again
//! for nothing: an owner too many costs time, never correctness.

use crate::pg::drift::snapshot::FIRST_USER_OID;
use crate::pg::store::HistoryTable;

/// Above this many owners to read again, the whole snapshot is taken: each
/// catalog row is checked against the list, which grows with it.
const MOST_OWNERS: u32 = 256;

/// The catalogs whose rows an object's description is read from, each with
/// the owner a changed row stands for (the relation of a column, the type
/// of an enum label), and its OID column when it has an index on it:
/// built-in rows (below [`FIRST_USER_OID`], thousands in `pg_proc` and
/// `pg_collation`) are not read. `pg_namespace` is read whole (`public` is
/// built in, and renamed or granted on like any schema), and
/// `pg_attribute` too (its index would read most of it, one by one).
const WRITTEN: [(&str, &str, Option<&str>); 14] = [
    ("pg_class", "x.oid", Some("x.oid")),
    ("pg_attribute", "x.attrelid", None),
    ("pg_attrdef", "x.adrelid", Some("x.oid")),
    ("pg_index", "x.indexrelid", Some("x.indexrelid")),
    ("pg_rewrite", "x.ev_class", Some("x.oid")),
    ("pg_trigger", "x.oid", Some("x.oid")),
    ("pg_sequence", "x.seqrelid", Some("x.seqrelid")),
    ("pg_constraint", "x.oid", Some("x.oid")),
    ("pg_constraint", "x.contypid", Some("x.oid")),
    ("pg_proc", "x.oid", Some("x.oid")),
    ("pg_type", "x.oid", Some("x.oid")),
    ("pg_enum", "x.enumtypid", Some("x.oid")),
    ("pg_namespace", "x.oid", None),
    ("pg_collation", "x.oid", Some("x.oid")),
];

/// The catalogs an object can depend on in `pg_depend` and still change
/// how a described object prints.
const REFERENCED: &str = "ARRAY['pg_catalog.pg_class'::pg_catalog.regclass, 'pg_catalog.pg_type'::pg_catalog.regclass, \
     'pg_catalog.pg_proc'::pg_catalog.regclass, 'pg_catalog.pg_namespace'::pg_catalog.regclass, \
     'pg_catalog.pg_collation'::pg_catalog.regclass, 'pg_catalog.pg_constraint'::pg_catalog.regclass, \
     'pg_catalog.pg_attrdef'::pg_catalog.regclass, 'pg_catalog.pg_rewrite'::pg_catalog.regclass, \
     'pg_catalog.pg_trigger'::pg_catalog.regclass]::pg_catalog.oid[]";

impl HistoryTable {
    /// An expression of type text: the owners of the catalog rows written
    /// since the stored snapshot (comma-separated OIDs; empty: none), or
    /// `*` when it cannot say (no snapshot stored, or one too old). Must
    /// run with `search_path = pg_catalog`, in the statement that records
    /// the new `seen`, so that both see the same catalog.
    pub(crate) fn written_since_sql(&self) -> String {
        // A row is newer than the snapshot when its writer was not visible
        // to it. `age()` is cheap and sorts out nearly every row: those
        // older than the snapshot's oldest running transaction were seen.
        // For the rest, the row's 32-bit `xmin` is widened to a 64-bit id
        // (the latest with those low bits, not after `n`) to ask the stored
        // snapshot. A negative age (a transaction that started after this
        // one, or a wrapped raw `xmin`) is kept: one owner too many.
        let written = |catalog: &str, owner: &str, oid: Option<&str>| {
            let mut only = String::new();
            if let Some(oid) = oid {
                only.push_str(&format!(" AND {oid} >= {FIRST_USER_OID}"));
            }
            if catalog == "pg_class" {
                only.push_str(" AND x.relpersistence <> 't'");
            }
            format!(
                "SELECT {owner} FROM pg_catalog.{catalog} x, w WHERE pg_catalog.age(x.xmin) <= w.k{only} \
                 AND NOT pg_catalog.txid_visible_in_snapshot({wide}, w.seen) AND {wide} IS DISTINCT FROM w.own",
                wide = "(w.n - ((w.n - x.xmin::text::bigint) % 4294967296 + 4294967296) % 4294967296)"
            )
        };
        let seeds = WRITTEN
            .iter()
            .map(|(catalog, owner, oid)| written(catalog, owner, *oid))
            .collect::<Vec<_>>()
            .join("\n    UNION ");
        format!(
            "(WITH w AS MATERIALIZED (
    SELECT h.seen, h.own, pg_catalog.age((pg_catalog.txid_snapshot_xmin(h.seen) % 4294967296)::text::xid) AS k,
           pg_catalog.txid_snapshot_xmax(pg_catalog.txid_current_snapshot()) AS n
    FROM (SELECT (d.definition ->> 'seen')::pg_catalog.txid_snapshot AS seen, (d.definition ->> 'own')::bigint AS own
          FROM {table} d WHERE d.section = '' AND d.name = '') AS h)
SELECT CASE WHEN NOT EXISTS (SELECT FROM w WHERE w.seen IS NOT NULL)
      OR (SELECT w.n - pg_catalog.txid_snapshot_xmin(w.seen) FROM w) > 1073741824 THEN '*'
    ELSE (SELECT coalesce(pg_catalog.string_agg(o::text, ','), '') FROM ({seeds}) AS seeds (o) WHERE o <> 0)
  END)",
            table = self.snapshot_table(),
        )
    }

    /// An expression of type text: the owners to read again since the
    /// stored snapshot (comma-separated OIDs; empty: none), or `*` for all
    /// of them, from `written`, the text of
    /// [`written_since_sql`](Self::written_since_sql). `itemized`: the
    /// run's choice of definitions or not (a stored snapshot of the other
    /// kind is replaced whole); `None` for `verify`, which takes the stored
    /// snapshot as it is. Must run with `search_path = pg_catalog`.
    ///
    /// Apart from `written_since_sql`, whose list this statement reads as
    /// a parameter: the planner then expects a few owners, not the
    /// thousands it guesses for catalog rows filtered by `age()` (and the
    /// dependency walk sized its hash table for millions).
    pub(crate) fn changed_owners_sql(&self, written: &str, itemized: Option<bool>) -> String {
        let table = self.snapshot_table();
        let same_kind = match itemized {
            Some(itemized) => format!(" AND h.itemized = {itemized}"),
            None => String::new(),
        };
        let live = [
            "pg_class",
            "pg_constraint",
            "pg_trigger",
            "pg_proc",
            "pg_type",
        ]
        .map(|catalog| {
            format!("SELECT oid FROM pg_catalog.{catalog} WHERE oid >= {FIRST_USER_OID}")
        })
        .join(" UNION ALL ");
        format!(
            "(WITH RECURSIVE h AS MATERIALIZED (
    SELECT (d.definition ->> 'server_major')::integer AS server_major, (d.definition ->> 'itemized')::boolean AS itemized
    FROM {table} d WHERE d.section = '' AND d.name = ''),
  written (list) AS MATERIALIZED (SELECT {written}),
  -- Each owner's dependents through the index on what they reference
  -- (`OFFSET 0` keeps the planner, which cannot estimate the walk, from
  -- sorting all of pg_depend to join it instead).
  closure (o) AS (
    SELECT pg_catalog.unnest(('{{' || list || '}}')::pg_catalog.oid[]) FROM written WHERE list <> '*'
    UNION SELECT d.objid FROM closure z, LATERAL (SELECT dep.objid FROM pg_catalog.pg_depend dep
      WHERE dep.refclassid = ANY ({REFERENCED}) AND dep.refobjid = z.o OFFSET 0) AS d),
  owners (o) AS (
    SELECT o FROM closure
    UNION SELECT x.adrelid FROM pg_catalog.pg_attrdef x WHERE x.oid IN (SELECT o FROM closure)
    UNION SELECT x.ev_class FROM pg_catalog.pg_rewrite x WHERE x.oid IN (SELECT o FROM closure)
    UNION SELECT x.conrelid FROM pg_catalog.pg_constraint x WHERE x.oid IN (SELECT o FROM closure) AND x.conrelid <> 0
    UNION SELECT x.contypid FROM pg_catalog.pg_constraint x WHERE x.oid IN (SELECT o FROM closure) AND x.contypid <> 0
    UNION SELECT x.tgrelid FROM pg_catalog.pg_trigger x WHERE x.oid IN (SELECT o FROM closure)
    UNION SELECT s.owner FROM {table} s WHERE s.section <> '' AND s.owner NOT IN ({live}))
SELECT CASE
    WHEN (SELECT list FROM written) = '*'
      OR NOT EXISTS (SELECT FROM h WHERE h.server_major = pg_catalog.current_setting('server_version_num')::integer / 10000{same_kind})
      THEN '*'
    ELSE (SELECT CASE WHEN count(*) > {MOST_OWNERS} THEN '*' ELSE coalesce(pg_catalog.string_agg(o::text, ','), '') END FROM owners)
  END)"
        )
    }
}
