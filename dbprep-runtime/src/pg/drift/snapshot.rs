//! The schema snapshot: a canonical description of the schema, read from
//! `pg_catalog`, stored after every run and compared by `verify` to say
//! *what* was changed by hand.
//!
//! It is computed with `search_path = pg_catalog` (as pg_dump does; the
//! `pg_get_*def` functions print names relative to the search path) and is
//! independent of OIDs and of dropped columns: columns are listed in their
//! order among live columns, enum labels in their order, never raw
//! `attnum` or `enumsortorder`. Left out: extension members, `pg_toast`
//! and temporary schemas, dbprep's own tables and what hangs on them,
//! owners, ACLs and collation versions.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::pg::sql::literal;
use crate::pg::store::snapshot::LiveSchema;
use crate::pg::store::HistoryTable;

/// `json_object_agg` of `key` and `value`, keys in byte order: json, unlike
/// jsonb, keeps keys in the order it is given them, and the snapshot's
/// hash must not depend on the order catalog rows are read in. (Built as
/// jsonb, which sorts keys itself, the document took 15% longer: 47 against
/// 40 ms at 200 tables, for the parse of the whole text into jsonb.)
fn object_agg(key: &str, value: &str) -> String {
    format!("pg_catalog.json_object_agg({key}, {value} ORDER BY {key} COLLATE pg_catalog.\"C\")")
}

/// The `hash` of a snapshot `document` (an expression of type json), as
/// stored with it and as `verify` computes it for the live schema: the two
/// must be the same expression.
pub(crate) fn document_hash_sql(document: &str) -> String {
    format!("pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to({document}::text, 'UTF8')), 'hex')")
}

/// PostgreSQL's `FirstNormalObjectId`: every object made after `initdb` has
/// an OID at least this (they wrap around to it, never below), and the
/// built-in objects, thousands of rows in `pg_proc`, `pg_type` and
/// `pg_attribute`, are below it. Each catalog's primary key is its OID, so
/// `oid >= 16384` reads the user's few rows through the index instead of
/// every row; the rows it leaves out are all in `pg_catalog` and
/// `information_schema`, which [`USER_SCHEMA`] leaves out too, so the
/// snapshot and the fingerprint are the same with it or without.
const FIRST_USER_OID: u32 = 16384;

/// The schemas a snapshot describes when it is not given them.
const USER_SCHEMA: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'";

impl HistoryTable {
    /// The condition on `n.nspname` that keeps the schemas the snapshot
    /// describes: [`HistoryTable::snapshot_schemas`], else every user schema.
    fn described_schemas(&self) -> String {
        if self.snapshot_schemas.is_empty() {
            return USER_SCHEMA.to_owned();
        }
        let names: Vec<String> = self.snapshot_schemas.iter().map(|s| literal(s)).collect();
        format!("n.nspname IN ({})", names.join(", "))
    }

    /// dbprep's own relations, which no snapshot describes.
    fn own_relations(&self) -> String {
        let regclasses: Vec<String> = self
            .own_tables()
            .iter()
            .map(|n| format!("pg_catalog.to_regclass({})", literal(n)))
            .collect();
        // Tables not created yet are NULL, and `x <> ALL` of an array with a
        // NULL is never true: drop them. In a sub-select, so that it is
        // evaluated once, not for every catalog row.
        format!(
            "(SELECT pg_catalog.array_remove(ARRAY[{}]::oid[], NULL))::oid[]",
            regclasses.join(", ")
        )
    }

    /// The live schema as the snapshot table's statement takes it.
    pub(crate) fn live_schema(&self) -> LiveSchema {
        LiveSchema {
            fingerprint: self.fingerprint_sql(),
            from_item: self.live_snapshot_sql(),
            document_hash: document_hash_sql("s"),
        }
    }

    /// A `FROM` item: `live`, one row whose column `s` is the snapshot of
    /// the live schema. Must run with `search_path = pg_catalog`.
    pub(crate) fn live_snapshot_sql(&self) -> String {
        // `OFFSET 0` keeps the planner from pulling the sub-select up into
        // the query, which copies the expression into every place `s` is
        // used (the document and its hash): computed twice, it was half the
        // time of a run's last transaction at 200 tables.
        format!("(SELECT {} AS s OFFSET 0) AS live", self.snapshot_sql())
    }

    /// An expression of type json: the snapshot of the live schema, as
    /// canonical text (every object's keys in one order), so that its hash
    /// says whether two snapshots are the same.
    fn snapshot_sql(&self) -> String {
        let own = self.own_relations();
        let schemas = self.described_schemas();
        let not_extension = |catalog: &str, oid: &str| {
            format!(
                "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend dep WHERE dep.classid = '{catalog}'::regclass \
                 AND dep.objid = {oid} AND dep.deptype = 'e')"
            )
        };
        let (ext_proc, ext_type) = (
            not_extension("pg_proc", "p.oid"),
            not_extension("pg_type", "ty.oid"),
        );
        // The relations described (tables, views, sequences, indexes), and
        // those whose constraints and triggers are: listed once for every
        // section, with the extension check made once per relation rather
        // than once per constraint or index.
        let qualified = |namespace: &str, name: &str| {
            format!("pg_catalog.quote_ident({namespace}) || '.' || pg_catalog.quote_ident({name})")
        };
        let relations = format!(
            "rel AS MATERIALIZED (SELECT c.oid, c.relkind, {} AS name \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.oid >= {FIRST_USER_OID} AND {schemas} AND c.oid <> ALL ({own}) AND {})",
            qualified("n.nspname", "c.relname"),
            not_extension("pg_class", "c.oid")
        );
        let function = format!(
            "{} || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')'",
            qualified("n.nspname", "p.proname")
        );
        // The user's types of one kind (`typtype`), each described by
        // `value`.
        let types = |typtype: &str, value: &str| {
            format!(
                "SELECT {} FROM pg_catalog.pg_type ty JOIN pg_catalog.pg_namespace n ON n.oid = ty.typnamespace
  WHERE ty.oid >= {FIRST_USER_OID} AND ty.typtype = '{typtype}' AND {schemas} AND {ext_type}",
                object_agg(&qualified("n.nspname", "ty.typname"), value)
            )
        };
        // Columns of all tables in one join and one grouping by table: a
        // sub-select per table (and one per column for its default) took
        // twice as long at 200 tables, and grouping the columns apart, then
        // joining the groups to the tables, made the planner (which cannot
        // estimate either side) compare every table with every group.
        let sections = [
            (
                "tables",
                format!(
                    "SELECT {} FROM (SELECT r.name, r.relkind, pg_catalog.json_agg(pg_catalog.json_build_object(
        'name', a.attname, 'type', pg_catalog.format_type(a.atttypid, a.atttypmod), 'not_null', a.attnotnull,
        'default', pg_catalog.pg_get_expr(d.adbin, d.adrelid),
        'identity', a.attidentity, 'generated', a.attgenerated,
        'collation', CASE WHEN a.attcollation <> t.typcollation THEN (SELECT collname FROM pg_catalog.pg_collation WHERE oid = a.attcollation) END
      ) ORDER BY a.attnum) FILTER (WHERE a.attnum IS NOT NULL) AS list
    FROM rel r LEFT JOIN (pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
      LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum)
      ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
    WHERE r.relkind IN ('r', 'p', 'f') GROUP BY r.oid, r.name, r.relkind) AS c",
                    object_agg(
                        "c.name",
                        "pg_catalog.json_build_object('kind', c.relkind, 'columns', coalesce(c.list, '[]'))"
                    )
                ),
            ),
            (
                "views",
                format!(
                    "SELECT {} FROM rel r WHERE r.relkind IN ('v', 'm')",
                    object_agg("r.name", "pg_catalog.pg_get_viewdef(r.oid)")
                ),
            ),
            (
                "sequences",
                format!(
                    "SELECT {} FROM rel r JOIN pg_catalog.pg_sequence s ON s.seqrelid = r.oid WHERE r.relkind = 'S'",
                    object_agg(
                        "r.name",
                        "pg_catalog.json_build_object('type', pg_catalog.format_type(s.seqtypid, NULL), \
                         'start', s.seqstart, 'increment', s.seqincrement, 'min', s.seqmin, 'max', s.seqmax, 'cycle', s.seqcycle)"
                    )
                ),
            ),
            (
                "indexes",
                format!(
                    "SELECT {} FROM pg_catalog.pg_index i JOIN rel r ON r.oid = i.indexrelid WHERE i.indrelid <> ALL ({own})",
                    object_agg("r.name", "pg_catalog.pg_get_indexdef(i.indexrelid)")
                ),
            ),
            (
                "constraints",
                format!(
                    "SELECT {} FROM pg_catalog.pg_constraint co JOIN rel r ON r.oid = co.conrelid",
                    object_agg(
                        "r.name || '.' || pg_catalog.quote_ident(co.conname)",
                        "pg_catalog.pg_get_constraintdef(co.oid)"
                    )
                ),
            ),
            (
                "triggers",
                format!(
                    "SELECT {} FROM pg_catalog.pg_trigger tg JOIN rel r ON r.oid = tg.tgrelid WHERE NOT tg.tgisinternal",
                    object_agg(
                        "r.name || '.' || pg_catalog.quote_ident(tg.tgname)",
                        "pg_catalog.pg_get_triggerdef(tg.oid)"
                    )
                ),
            ),
            (
                "functions",
                format!(
                    "SELECT {} FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
  WHERE p.oid >= {FIRST_USER_OID} AND p.prokind IN ('f', 'p') AND {schemas} AND {ext_proc}
    AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger tg WHERE tg.tgfoid = p.oid AND tg.tgrelid = ANY ({own}))",
                    object_agg(&function, "pg_catalog.pg_get_functiondef(p.oid)")
                ),
            ),
            (
                "enums",
                types(
                    "e",
                    "(SELECT pg_catalog.json_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_catalog.pg_enum e WHERE e.enumtypid = ty.oid)",
                ),
            ),
            (
                "domains",
                types(
                    "d",
                    "pg_catalog.json_build_object(
    'type', pg_catalog.format_type(ty.typbasetype, ty.typtypmod), 'not_null', ty.typnotnull, 'default', ty.typdefault,
    'checks', (SELECT coalesce(pg_catalog.json_agg(pg_catalog.pg_get_constraintdef(co.oid) ORDER BY co.conname), '[]') \
    FROM pg_catalog.pg_constraint co WHERE co.contypid = ty.oid))",
                ),
            ),
        ];
        let sections: Vec<String> = sections
            .iter()
            .map(|(key, select)| format!("'{key}', coalesce(({select}), '{{}}')"))
            .collect();
        format!(
            "(WITH {relations}\nSELECT pg_catalog.json_build_object(\n{}\n))",
            sections.join(",\n")
        )
    }

    /// An expression of type text: a hash of the identity and `xmin` of
    /// every catalog row the snapshot is made from. Any DDL that changes an
    /// object writes a new version of its catalog rows, with a new `xmin`,
    /// so an equal fingerprint means "nothing changed" at a fraction of the
    /// snapshot's cost (no deparsing). It depends on OIDs and on how each
    /// object was made, so when it differs `verify` compares the full
    /// snapshots, which decide.
    pub(crate) fn fingerprint_sql(&self) -> String {
        let own = self.own_relations();
        let schemas = self.described_schemas();
        let user_relations = format!(
            "SELECT c.oid, c.xmin FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.oid >= {FIRST_USER_OID} AND {schemas} AND c.oid <> ALL ({own})"
        );
        let user_schema_rows = |catalog: &str, alias: &str, namespace: &str| {
            format!(
                "SELECT pg_catalog.string_agg({alias}.oid::text || ':' || {alias}.xmin::text, ',' ORDER BY {alias}.oid) \
                 FROM pg_catalog.{catalog} {alias} JOIN pg_catalog.pg_namespace n ON n.oid = {alias}.{namespace} \
                 WHERE {alias}.oid >= {FIRST_USER_OID} AND {schemas}"
            )
        };
        let parts = [
            // The relations' own rows: `u` is read from pg_class.
            "SELECT pg_catalog.string_agg(u.oid::text || ':' || u.xmin::text, ',' ORDER BY u.oid) FROM u".to_owned(),
            "SELECT pg_catalog.string_agg(a.attrelid::text || '.' || a.attnum::text || ':' || a.xmin::text, ',' ORDER BY a.attrelid, a.attnum) \
             FROM pg_catalog.pg_attribute a JOIN u ON u.oid = a.attrelid WHERE a.attnum > 0".to_owned(),
            "SELECT pg_catalog.string_agg(d.oid::text || ':' || d.xmin::text, ',' ORDER BY d.oid) FROM pg_catalog.pg_attrdef d JOIN u ON u.oid = d.adrelid".to_owned(),
            "SELECT pg_catalog.string_agg(i.indexrelid::text || ':' || i.xmin::text, ',' ORDER BY i.indexrelid) FROM pg_catalog.pg_index i JOIN u ON u.oid = i.indrelid".to_owned(),
            "SELECT pg_catalog.string_agg(r.oid::text || ':' || r.xmin::text, ',' ORDER BY r.oid) FROM pg_catalog.pg_rewrite r JOIN u ON u.oid = r.ev_class".to_owned(),
            "SELECT pg_catalog.string_agg(tg.oid::text || ':' || tg.xmin::text, ',' ORDER BY tg.oid) FROM pg_catalog.pg_trigger tg JOIN u ON u.oid = tg.tgrelid".to_owned(),
            "SELECT pg_catalog.string_agg(s.seqrelid::text || ':' || s.xmin::text, ',' ORDER BY s.seqrelid) FROM pg_catalog.pg_sequence s JOIN u ON u.oid = s.seqrelid".to_owned(),
            user_schema_rows("pg_constraint", "co", "connamespace"),
            user_schema_rows("pg_proc", "p", "pronamespace"),
            user_schema_rows("pg_type", "ty", "typnamespace"),
            format!(
                "SELECT pg_catalog.string_agg(e.oid::text || ':' || e.xmin::text, ',' ORDER BY e.oid) \
                 FROM pg_catalog.pg_enum e JOIN pg_catalog.pg_type ty ON ty.oid = e.enumtypid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = ty.typnamespace WHERE e.oid >= {FIRST_USER_OID} AND {schemas}"
            ),
        ];
        let parts: Vec<String> = parts
            .iter()
            .map(|p| format!("coalesce(({p}), '')"))
            .collect();
        format!(
            "(WITH u AS MATERIALIZED ({user_relations}) \
             SELECT pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(pg_catalog.concat_ws('|', {}), 'UTF8')), 'hex'))",
            parts.join(", ")
        )
    }
}

/// What changed between a stored snapshot and the live schema, one line per
/// change: `column public.users.nickname added`, `index public.ix dropped`,
/// `function public.f() body changed`.
pub fn diff(stored: &Value, live: &Value) -> Vec<String> {
    let mut changes = Vec::new();
    let empty = Map::new();
    let section = |v: &'_ Value, key: &str| {
        v.get(key)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_else(|| empty.clone())
    };
    let what = [
        ("tables", "table"),
        ("views", "view"),
        ("sequences", "sequence"),
        ("indexes", "index"),
        ("constraints", "constraint"),
        ("triggers", "trigger"),
        ("functions", "function"),
        ("enums", "enum"),
        ("domains", "domain"),
    ];
    for (key, noun) in what {
        let (old, new) = (section(stored, key), section(live, key));
        let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
        for name in names {
            match (old.get(name), new.get(name)) {
                (Some(_), None) => changes.push(format!("{noun} {name} dropped")),
                (None, Some(_)) => changes.push(format!("{noun} {name} added")),
                (Some(a), Some(b)) if a != b => match key {
                    "tables" => changes.extend(table_changes(name, a, b)),
                    "functions" => changes.push(format!("function {name} body changed")),
                    "enums" => changes.push(format!("enum {name} labels changed: {a} → {b}")),
                    _ => changes.push(format!("{noun} {name} changed: {} → {}", show(a), show(b))),
                },
                _ => {}
            }
        }
    }
    changes
}

fn show(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Column-level changes of one table.
fn table_changes(table: &str, old: &Value, new: &Value) -> Vec<String> {
    let columns = |v: &Value| -> Vec<Value> {
        v.get("columns")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let name = |c: &Value| {
        c.get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (old_columns, new_columns) = (columns(old), columns(new));
    let old_names: Vec<String> = old_columns.iter().map(name).collect();
    let new_names: Vec<String> = new_columns.iter().map(name).collect();
    let mut changes = Vec::new();
    for column in &old_names {
        if !new_names.contains(column) {
            changes.push(format!("column {table}.{column} dropped"));
        }
    }
    for column in &new_names {
        if !old_names.contains(column) {
            changes.push(format!("column {table}.{column} added"));
        }
    }
    for a in &old_columns {
        if let Some(b) = new_columns.iter().find(|b| name(b) == name(a)) {
            if a != b {
                let fields = [
                    "type",
                    "not_null",
                    "default",
                    "identity",
                    "generated",
                    "collation",
                ];
                let what: Vec<String> = fields
                    .iter()
                    .filter(|f| a.get(**f) != b.get(**f))
                    .map(|f| {
                        format!(
                            "{f} {} → {}",
                            show(a.get(*f).unwrap_or(&Value::Null)),
                            show(b.get(*f).unwrap_or(&Value::Null))
                        )
                    })
                    .collect();
                changes.push(format!(
                    "column {table}.{} changed: {}",
                    name(a),
                    what.join(", ")
                ));
            }
        }
    }
    let shared_old: Vec<&String> = old_names.iter().filter(|c| new_names.contains(c)).collect();
    let shared_new: Vec<&String> = new_names.iter().filter(|c| old_names.contains(c)).collect();
    if shared_old != shared_new {
        changes.push(format!("table {table} columns reordered"));
    }
    if old.get("kind") != new.get("kind") {
        changes.push(format!("table {table} kind changed"));
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn says_what_changed() {
        let old = json!({
            "tables": {"public.users": {"kind": "r", "columns": [{"name": "id", "type": "integer"}, {"name": "email", "type": "text"}]}},
            "indexes": {"public.ix_users_email": "CREATE INDEX ix_users_email ON public.users USING btree (email)"},
            "functions": {"public.f()": "body 1"},
        });
        let new = json!({
            "tables": {"public.users": {"kind": "r", "columns": [{"name": "id", "type": "bigint"}, {"name": "email", "type": "text"}, {"name": "nickname", "type": "text"}]}},
            "indexes": {},
            "functions": {"public.f()": "body 2"},
            "triggers": {"public.users.audit": "CREATE TRIGGER audit …"},
        });
        assert_eq!(
            diff(&old, &new),
            [
                "column public.users.nickname added",
                "column public.users.id changed: type integer → bigint",
                "index public.ix_users_email dropped",
                "trigger public.users.audit added",
                "function public.f() body changed",
            ]
        );
    }
}
