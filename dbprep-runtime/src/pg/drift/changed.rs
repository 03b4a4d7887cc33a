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

use std::collections::BTreeSet;

use crate::pg::drift::snapshot::{FIRST_USER_OID, SECTIONS};
use crate::pg::store::HistoryTable;

/// Above this many owners to read again, the whole snapshot is taken: each
/// catalog row is checked against the list, which grows with it.
const MOST_OWNERS: u32 = 256;

/// The catalogs whose rows an object's description is read from, each with
/// the owners a changed row stands for (the relation of a column, the type
/// of an enum label; a constraint is its own and its domain's), and its OID
/// column when it has an index on it: built-in rows (below
/// [`FIRST_USER_OID`], thousands in `pg_proc` and `pg_collation`) are not
/// read. `pg_namespace` is read whole (`public` is built in, and renamed
/// or granted on like any schema), and `pg_attribute` too (its index would
/// read most of it, one by one).
const WRITTEN: [(&str, [&str; 2], Option<&str>); 13] = [
    ("pg_class", ["x.oid", "0"], Some("x.oid")),
    ("pg_attribute", ["x.attrelid", "0"], None),
    ("pg_attrdef", ["x.adrelid", "0"], Some("x.oid")),
    ("pg_index", ["x.indexrelid", "0"], Some("x.indexrelid")),
    ("pg_rewrite", ["x.ev_class", "0"], Some("x.oid")),
    ("pg_trigger", ["x.oid", "0"], Some("x.oid")),
    ("pg_sequence", ["x.seqrelid", "0"], Some("x.seqrelid")),
    ("pg_constraint", ["x.oid", "x.contypid"], Some("x.oid")),
    ("pg_proc", ["x.oid", "0"], Some("x.oid")),
    ("pg_type", ["x.oid", "0"], Some("x.oid")),
    ("pg_enum", ["x.enumtypid", "0"], Some("x.oid")),
    ("pg_namespace", ["x.oid", "0"], None),
    ("pg_collation", ["x.oid", "0"], Some("x.oid")),
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
        //
        // Each catalog is scanned with the cheap test alone (its bound
        // computed once, not joined to every row), and the few rows left
        // are asked of the snapshot together.
        let written = |catalog: &str, [first, second]: [&str; 2], oid: Option<&str>| {
            let mut only = String::new();
            if let Some(oid) = oid {
                only.push_str(&format!(" AND {oid} >= {FIRST_USER_OID}"));
            }
            if catalog == "pg_class" {
                only.push_str(" AND x.relpersistence <> 't'");
            }
            format!(
                "SELECT {first}, {second}::pg_catalog.oid, x.xmin FROM pg_catalog.{catalog} x \
                 WHERE pg_catalog.age(x.xmin) <= (SELECT w.k FROM w){only}"
            )
        };
        let seeds = WRITTEN
            .iter()
            .map(|(catalog, owners, oid)| written(catalog, *owners, *oid))
            .collect::<Vec<_>>()
            .join("\n    UNION ALL ");
        let wide = "(w.n - ((w.n - r.x::text::bigint) % 4294967296 + 4294967296) % 4294967296)";
        format!(
            "(WITH w AS MATERIALIZED (
    SELECT h.seen, h.own, pg_catalog.age((pg_catalog.txid_snapshot_xmin(h.seen) % 4294967296)::text::xid) AS k,
           pg_catalog.txid_snapshot_xmax(pg_catalog.txid_current_snapshot()) AS n
    FROM (SELECT (d.definition ->> 'seen')::pg_catalog.txid_snapshot AS seen, (d.definition ->> 'own')::bigint AS own
          FROM {table} d WHERE d.section = '' AND d.name = '') AS h),
  r (a, b, x) AS ({seeds})
SELECT CASE WHEN NOT EXISTS (SELECT FROM w WHERE w.seen IS NOT NULL)
      OR (SELECT w.n - pg_catalog.txid_snapshot_xmin(w.seen) FROM w) > 1073741824 THEN '*'
    ELSE (SELECT coalesce(pg_catalog.string_agg(DISTINCT v.o::text, ','), '')
          FROM r, w, LATERAL (VALUES (r.a), (r.b)) AS v (o)
          WHERE v.o <> 0 AND NOT pg_catalog.txid_visible_in_snapshot({wide}, w.seen) AND {wide} IS DISTINCT FROM w.own)
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
        // Every owner is a row of one of the catalogs sections are read
        // from: one it is in no longer was dropped.
        let live = SECTION_OF
            .map(|(catalog, _)| {
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

/// The sections a catalog row's object is described in, by catalog, as
/// the objects' query reads them (`-`: none).
const SECTION_OF: [(&str, &str); 5] = [
    (
        "pg_class",
        "CASE WHEN x.relkind IN ('r', 'p', 'f') THEN 'tables' WHEN x.relkind IN ('v', 'm') THEN 'views' \
         WHEN x.relkind = 'S' THEN 'sequences' WHEN x.relkind IN ('i', 'I') THEN 'indexes' ELSE '-' END",
    ),
    ("pg_constraint", "'constraints'"),
    ("pg_trigger", "'triggers'"),
    ("pg_proc", "'functions'"),
    (
        "pg_type",
        "CASE x.typtype WHEN 'e' THEN 'enums' WHEN 'd' THEN 'domains' ELSE '-' END",
    ),
];

/// What a run reads again of the stored snapshot, as
/// [`HistoryTable::refresh_of_sql`] says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refresh {
    /// Every object: the snapshot is taken whole.
    Whole,
    /// Every object, in these sections alone (no other has any): the
    /// snapshot is taken whole, under the `seen` taken before they were
    /// asked for.
    Sections(BTreeSet<String>),
    /// The rows of `owners` are replaced by what they describe now, which
    /// is in `sections` (none: the owners were dropped, or nothing
    /// changed at all).
    Owners {
        owners: Vec<u32>,
        sections: BTreeSet<String>,
    },
}

impl Refresh {
    /// The refresh an answer of [`HistoryTable::refresh_of_sql`] says
    /// (`*`, or words `section:oid`), or one of
    /// [`HistoryTable::present_sections_sql`] (`*` and the sections that
    /// have objects). Anything else (no answer, a word that is not one)
    /// takes the snapshot whole, which is never wrong.
    pub(crate) fn parse(answer: Option<&str>) -> Refresh {
        let Some(answer) = answer.filter(|a| *a != "*") else {
            return Refresh::Whole;
        };
        if let Some(present) = answer.strip_prefix("* ") {
            let sections: BTreeSet<String> =
                present.split_whitespace().map(str::to_owned).collect();
            let known = |s: &String| SECTIONS.iter().any(|(section, _)| section == s);
            return if sections.iter().all(known) {
                Refresh::Sections(sections)
            } else {
                Refresh::Whole
            };
        }
        let mut owners = BTreeSet::new();
        let mut sections = BTreeSet::new();
        for word in answer.split_whitespace() {
            let Some((section, oid)) = word
                .split_once(':')
                .and_then(|(s, o)| Some((s, o.parse::<u32>().ok()?)))
            else {
                return Refresh::Whole;
            };
            owners.insert(oid);
            if section != "-" {
                sections.insert(section.to_owned());
            }
        }
        Refresh::Owners {
            owners: owners.into_iter().collect(),
            sections,
        }
    }
}

impl HistoryTable {
    /// An expression of type text: the owners of `changed` (the text of
    /// [`changed_owners_sql`](Self::changed_owners_sql)) each with the
    /// section its object is in, for [`Refresh::parse`]: `*`, or words
    /// `section:oid` separated by spaces. Every owner is also said as
    /// `-:oid` (its rows are replaced even when nothing describes it any
    /// more), so that the run reads only the sections that have changed
    /// objects: planning all nine for a new table took longer than
    /// reading it.
    pub(crate) fn refresh_of_sql(&self, changed: &str) -> String {
        let sections = SECTION_OF
            .iter()
            .map(|(catalog, section)| {
                format!(
                    "UNION ALL SELECT x.oid, {section} FROM pg_catalog.{catalog} x WHERE x.oid = ANY (l.owners)"
                )
            })
            .collect::<Vec<_>>()
            .join("\n      ");
        // Materialized: a sub-select's expression is copied into each
        // place that names its column, and would run once for each.
        format!(
            "(WITH c AS MATERIALIZED (SELECT {changed} AS list),
  l AS MATERIALIZED (SELECT c.list, CASE WHEN c.list = '*' THEN '{{}}' ELSE '{{' || c.list || '}}' END::pg_catalog.oid[] AS owners FROM c)
SELECT CASE WHEN l.list = '*' THEN '*' ELSE (
    SELECT coalesce(pg_catalog.string_agg(k.section || ':' || k.o, ' '), '') FROM (
      SELECT u.o, '-' FROM pg_catalog.unnest(l.owners) AS u (o)
      {sections}) AS k (o, section))
  END
FROM l)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Refresh;

    #[test]
    fn a_refresh_is_read_from_its_words() {
        assert_eq!(Refresh::parse(Some("*")), Refresh::Whole);
        assert_eq!(Refresh::parse(None), Refresh::Whole);
        assert_eq!(Refresh::parse(Some("tables:x")), Refresh::Whole);
        assert_eq!(
            Refresh::parse(Some("* tables indexes constraints enums")),
            Refresh::Sections(
                ["constraints", "enums", "indexes", "tables"]
                    .map(str::to_owned)
                    .into()
            )
        );
        assert_eq!(Refresh::parse(Some("* tables rules")), Refresh::Whole);
        assert_eq!(
            Refresh::parse(Some("")),
            Refresh::Owners {
                owners: vec![],
                sections: Default::default()
            }
        );
        assert_eq!(
            Refresh::parse(Some("-:20 -:16400 tables:16400 indexes:20 -:7")),
            Refresh::Owners {
                owners: vec![7, 20, 16400],
                sections: ["indexes", "tables"].map(str::to_owned).into()
            }
        );
    }
}
