//! The schema snapshot: a canonical description of the schema, read from
//! `pg_catalog`, stored after every run and compared by `verify` to say
//! *what* was changed by hand.
//!
//! It is a set of objects, each a row of a section (`tables`, `views`,
//! `sequences`, `indexes`, `constraints`, `triggers`, `functions`,
//! `enums`, `domains`), a name, the OID of the catalog row that owns it and
//! its definition. It is computed with `search_path = pg_catalog` (as
//! pg_dump does; the `pg_get_*def` functions print names relative to the
//! search path) and is independent of OIDs (the owner is kept beside the
//! definition, not in it) and of dropped columns: columns are listed in
//! their order among live columns, enum labels in their order, never raw
//! `attnum` or `enumsortorder`. Left out: extension members, `pg_toast`
//! and temporary schemas, dbprep's own tables and what hangs on them,
//! owners, ACLs and collation versions.
//!
//! Rows can be read for some owners only ([`Owners`]): a run refreshes
//! the objects that may have changed since the stored snapshot
//! ([`changed`](super::changed)), not the whole schema.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::pg::sql::literal;
use crate::pg::store::HistoryTable;

/// The sections of a snapshot, each with the noun `diff` names its
/// objects with, in the order `diff` reports them.
pub(crate) const SECTIONS: [(&str, &str); 9] = [
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

/// PostgreSQL's `FirstNormalObjectId`: every object made after `initdb` has
/// an OID at least this (they wrap around to it, never below), and the
/// built-in objects, thousands of rows in `pg_proc`, `pg_type` and
/// `pg_attribute`, are below it. Each catalog's primary key is its OID, so
/// `oid >= 16384` reads the user's few rows through the index instead of
/// every row; the rows it leaves out are all in `pg_catalog` and
/// `information_schema`, which [`USER_SCHEMA`] leaves out too.
pub(crate) const FIRST_USER_OID: u32 = 16384;

/// The schemas a snapshot describes when it is not given them.
const USER_SCHEMA: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'";

/// The settings, local to the transaction, that snapshot queries run
/// with: names printed relative to `pg_catalog` alone, and no JIT. The
/// planner cannot estimate the catalog joins (a dependency walk is taken
/// for a million rows), prices them above `jit_above_cost`, and compiling
/// them took longer than running them many times over.
pub(crate) const CATALOG_SETTINGS: &str =
    "SELECT pg_catalog.set_config('search_path', 'pg_catalog', true), \
     pg_catalog.set_config('jit', 'off', true);";

/// Which objects to read: all, or those whose owner is in a list.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Owners<'a> {
    /// Every object the snapshot describes.
    All,
    /// Every object of these sections, which are all that have objects:
    /// the others are not even planned.
    AllIn(&'a BTreeSet<String>),
    /// An SQL expression of type text: `*` for every object, else the
    /// owners' OIDs separated by commas (empty: none), as
    /// [`HistoryTable::changed_owners_sql`] says them.
    Listed(&'a str),
    /// The objects of these owners in these sections, as a run's
    /// [`Refresh`](super::changed::Refresh) found them: the other sections
    /// are not even planned.
    These {
        owners: &'a [u32],
        sections: &'a BTreeSet<String>,
    },
}

impl Owners<'_> {
    /// The `wanted` CTE's query (one row: `everything`, `owners`), or `None`
    /// for all objects.
    fn cte(self) -> Option<String> {
        match self {
            Owners::All | Owners::AllIn(_) | Owners::These { .. } => None,
            Owners::Listed(list) => Some(format!(
                "wanted AS MATERIALIZED (SELECT l.list = '*' AS everything, \
                 CASE WHEN l.list = '*' THEN '{{}}' ELSE '{{' || l.list || '}}' END::pg_catalog.oid[] AS owners \
                 FROM (SELECT {list} AS list) AS l)"
            )),
        }
    }

    /// `WITH` and the `wanted` CTE, for a statement whose only CTE it is
    /// (empty for all objects).
    pub(crate) fn with(self) -> String {
        self.cte()
            .map_or_else(String::new, |cte| format!("WITH {cte}\n"))
    }

    /// A condition: `oid` is one of the owners read. The list is read once
    /// (the `wanted` CTE), not for every catalog row.
    pub(crate) fn admit(self, oid: &str) -> String {
        match self {
            Owners::All | Owners::AllIn(_) => "true".to_owned(),
            Owners::Listed(_) => format!(
                "((SELECT everything FROM wanted) OR {oid} = ANY ((SELECT owners FROM wanted)::pg_catalog.oid[]))"
            ),
            Owners::These { owners, .. } => {
                let oids: Vec<String> = owners.iter().map(u32::to_string).collect();
                format!("{oid} = ANY ('{{{}}}'::pg_catalog.oid[])", oids.join(","))
            }
        }
    }

    /// Whether objects of `section` are read.
    fn reads(self, section: &str) -> bool {
        match self {
            Owners::All | Owners::Listed(_) => true,
            Owners::AllIn(sections) | Owners::These { sections, .. } => sections.contains(section),
        }
    }
}

/// The sections a whole snapshot always reads: nearly every schema has
/// objects in them, and asking costs more than planning them.
const ALWAYS_READ: [&str; 3] = ["tables", "indexes", "constraints"];

impl HistoryTable {
    /// An expression of type text: `*` followed by the sections that may
    /// have objects, for [`Refresh::parse`](super::changed::Refresh::parse)
    /// to take a snapshot whole without planning the others. A section is
    /// left out only when no catalog row could be one of its objects; one
    /// read for nothing costs time, never correctness. Must run with
    /// `search_path = pg_catalog`, after the `seen` stored with the
    /// snapshot was taken: what commits in between is then read again by
    /// the next run, not missed.
    pub(crate) fn present_sections_sql(&self) -> String {
        let own = self.own_relations();
        let any = |section: &str, rows: &str| {
            format!("CASE WHEN EXISTS (SELECT FROM {rows}) THEN ' {section}' ELSE '' END")
        };
        let relations = |kinds: &str| {
            format!(
                "pg_catalog.pg_class c WHERE c.oid >= {FIRST_USER_OID} AND c.relkind IN ({kinds})"
            )
        };
        let types = |typtype: &str| {
            format!(
                "pg_catalog.pg_type ty WHERE ty.oid >= {FIRST_USER_OID} AND ty.typtype = '{typtype}'"
            )
        };
        let present = [
            any("views", &relations("'v', 'm'")),
            any("sequences", &relations("'S'")),
            any(
                "triggers",
                &format!(
                    "pg_catalog.pg_trigger tg WHERE tg.oid >= {FIRST_USER_OID} AND NOT tg.tgisinternal \
                     AND tg.tgrelid <> ALL ({own})"
                ),
            ),
            // As the functions' section reads them: not dbprep's own.
            any(
                "functions",
                &format!(
                    "pg_catalog.pg_proc p WHERE p.oid >= {FIRST_USER_OID} AND p.prokind IN ('f', 'p') AND {}",
                    self.not_own_trigger_function("p.oid")
                ),
            ),
            any("enums", &types("e")),
            any("domains", &types("d")),
        ];
        format!("'* {}' || {}", ALWAYS_READ.join(" "), present.join(" || "))
    }

    /// The condition on `n.nspname` that keeps the schemas the snapshot
    /// describes: [`HistoryTable::snapshot_schemas`], else every user schema.
    pub(crate) fn described_schemas(&self) -> String {
        if self.snapshot_schemas.is_empty() {
            return USER_SCHEMA.to_owned();
        }
        let names: Vec<String> = self.snapshot_schemas.iter().map(|s| literal(s)).collect();
        format!("n.nspname IN ({})", names.join(", "))
    }

    /// A condition: the function `oid` is no trigger function of dbprep's
    /// own relations (the history digest's), which no snapshot describes.
    fn not_own_trigger_function(&self, oid: &str) -> String {
        format!(
            "NOT EXISTS (SELECT FROM pg_catalog.pg_trigger tg WHERE tg.tgfoid = {oid} AND tg.tgrelid = ANY ({}))",
            self.own_relations()
        )
    }

    /// dbprep's own relations, which no snapshot describes.
    pub(crate) fn own_relations(&self) -> String {
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

    /// A query of the snapshot's objects, columns `section`, `name`,
    /// `owner` and `definition` (json; NULL for all when `definitions` is
    /// false: which objects exist, not what they are). Must run with
    /// `search_path = pg_catalog`.
    pub(crate) fn objects_sql(&self, owners: Owners<'_>, definitions: bool) -> String {
        let own = self.own_relations();
        let schemas = self.described_schemas();
        let admit = |oid: &str| owners.admit(oid);
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
        let define = |expression: &str| {
            if definitions {
                expression.to_owned()
            } else {
                "NULL::pg_catalog.json".to_owned()
            }
        };
        let text = |expression: &str| define(&format!("pg_catalog.to_json({expression})"));
        // The relations described (tables, views, sequences, indexes), and
        // those whose constraints and triggers are: listed once for every
        // section, with the extension check made once per relation rather
        // than once per constraint or index. Read for some owners, the
        // relations of their constraints and triggers are among the owners
        // (see `changed_owners_sql`).
        let qualified = |namespace: &str, name: &str| {
            format!("pg_catalog.quote_ident({namespace}) || '.' || pg_catalog.quote_ident({name})")
        };
        let mut ctes: Vec<String> = owners.cte().into_iter().collect();
        ctes.push(format!(
            "rel AS MATERIALIZED (SELECT c.oid, c.relkind, {} AS name \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.oid >= {FIRST_USER_OID} AND {schemas} AND c.oid <> ALL ({own}) AND {} AND {})",
            qualified("n.nspname", "c.relname"),
            admit("c.oid"),
            not_extension("pg_class", "c.oid")
        ));
        let function = format!(
            "{} || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')'",
            qualified("n.nspname", "p.proname")
        );
        // The user's types of one kind (`typtype`), each described by
        // `value`.
        let types = |section: &str, typtype: &str, value: &str| {
            format!(
                "SELECT '{section}', {}, ty.oid, {} FROM pg_catalog.pg_type ty JOIN pg_catalog.pg_namespace n ON n.oid = ty.typnamespace
  WHERE ty.oid >= {FIRST_USER_OID} AND ty.typtype = '{typtype}' AND {schemas} AND {} AND {ext_type}",
                qualified("n.nspname", "ty.typname"),
                define(value),
                admit("ty.oid")
            )
        };
        // Columns of all tables in one join and one grouping by table: a
        // sub-select per table (and one per column for its default) took
        // twice as long at 200 tables, and grouping the columns apart, then
        // joining the groups to the tables, made the planner (which cannot
        // estimate either side) compare every table with every group.
        let tables = if definitions {
            "SELECT 'tables', c.name, c.oid, pg_catalog.json_build_object('kind', c.relkind, 'columns', coalesce(c.list, '[]'))
  FROM (SELECT r.oid, r.name, r.relkind, pg_catalog.json_agg(pg_catalog.json_build_object(
        'name', a.attname, 'type', pg_catalog.format_type(a.atttypid, a.atttypmod), 'not_null', a.attnotnull,
        'default', pg_catalog.pg_get_expr(d.adbin, d.adrelid),
        'identity', a.attidentity, 'generated', a.attgenerated,
        'collation', CASE WHEN a.attcollation <> t.typcollation THEN (SELECT collname FROM pg_catalog.pg_collation WHERE oid = a.attcollation) END
      ) ORDER BY a.attnum) FILTER (WHERE a.attnum IS NOT NULL) AS list
    FROM rel r LEFT JOIN (pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
      LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum)
      ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
    WHERE r.relkind IN ('r', 'p', 'f') GROUP BY r.oid, r.name, r.relkind) AS c"
                .to_owned()
        } else {
            "SELECT 'tables', r.name, r.oid, NULL::pg_catalog.json FROM rel r WHERE r.relkind IN ('r', 'p', 'f')"
                .to_owned()
        };
        let sections = [
            tables,
            format!(
                "SELECT 'views', r.name, r.oid, {} FROM rel r WHERE r.relkind IN ('v', 'm')",
                text("pg_catalog.pg_get_viewdef(r.oid)")
            ),
            format!(
                "SELECT 'sequences', r.name, r.oid, {} FROM rel r JOIN pg_catalog.pg_sequence s ON s.seqrelid = r.oid WHERE r.relkind = 'S'",
                define(
                    "pg_catalog.json_build_object('type', pg_catalog.format_type(s.seqtypid, NULL), \
                     'start', s.seqstart, 'increment', s.seqincrement, 'min', s.seqmin, 'max', s.seqmax, 'cycle', s.seqcycle)"
                )
            ),
            format!(
                "SELECT 'indexes', r.name, r.oid, {} FROM pg_catalog.pg_index i JOIN rel r ON r.oid = i.indexrelid WHERE i.indrelid <> ALL ({own})",
                text("pg_catalog.pg_get_indexdef(i.indexrelid)")
            ),
            format!(
                "SELECT 'constraints', r.name || '.' || pg_catalog.quote_ident(co.conname), co.oid, {} \
                 FROM pg_catalog.pg_constraint co JOIN rel r ON r.oid = co.conrelid WHERE {}",
                text("pg_catalog.pg_get_constraintdef(co.oid)"),
                admit("co.oid")
            ),
            format!(
                "SELECT 'triggers', r.name || '.' || pg_catalog.quote_ident(tg.tgname), tg.oid, {} \
                 FROM pg_catalog.pg_trigger tg JOIN rel r ON r.oid = tg.tgrelid WHERE NOT tg.tgisinternal AND {}",
                text("pg_catalog.pg_get_triggerdef(tg.oid)"),
                admit("tg.oid")
            ),
            format!(
                "SELECT 'functions', {function}, p.oid, {} FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
  WHERE p.oid >= {FIRST_USER_OID} AND p.prokind IN ('f', 'p') AND {schemas} AND {} AND {ext_proc}
    AND {}",
                text("pg_catalog.pg_get_functiondef(p.oid)"),
                admit("p.oid"),
                self.not_own_trigger_function("p.oid")
            ),
            types(
                "enums",
                "e",
                "(SELECT pg_catalog.json_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_catalog.pg_enum e WHERE e.enumtypid = ty.oid)",
            ),
            types(
                "domains",
                "d",
                "pg_catalog.json_build_object(
    'type', pg_catalog.format_type(ty.typbasetype, ty.typtypmod), 'not_null', ty.typnotnull, 'default', ty.typdefault,
    'checks', (SELECT coalesce(pg_catalog.json_agg(pg_catalog.pg_get_constraintdef(co.oid) ORDER BY co.conname), '[]') \
    FROM pg_catalog.pg_constraint co WHERE co.contypid = ty.oid))",
            ),
        ];
        let read: Vec<String> = sections
            .into_iter()
            .zip(SECTIONS)
            .filter(|(sql, (section, _))| {
                debug_assert!(sql.starts_with(&format!("SELECT '{section}'")));
                owners.reads(section)
            })
            .map(|(sql, _)| sql)
            .collect();
        if read.is_empty() {
            return "SELECT NULL::text, NULL::text, NULL::pg_catalog.oid, NULL::pg_catalog.json WHERE false"
                .to_owned();
        }
        format!(
            "WITH {}\nSELECT o.* FROM (\n{}\n) AS o (section, name, owner, definition)",
            ctes.join(",\n"),
            read.join("\nUNION ALL\n")
        )
    }

    /// A query of one row, one column: the objects of `objects_sql` as a
    /// json array of `[section, name, definition]`, for [`document`] to
    /// build the snapshot from.
    pub(crate) fn objects_array_sql(&self, owners: Owners<'_>) -> String {
        format!(
            "SELECT pg_catalog.json_agg(pg_catalog.json_build_array(x.section, x.name, x.definition)) FROM ({}) AS x",
            self.objects_sql(owners, true)
        )
    }
}

/// The snapshot document of objects given as `[section, name, definition]`:
/// `{section: {name: definition}}`, every section present.
pub(crate) fn document(objects: &Value) -> Value {
    let mut document: Map<String, Value> = SECTIONS
        .iter()
        .map(|(section, _)| ((*section).to_owned(), Value::Object(Map::new())))
        .collect();
    for object in objects.as_array().into_iter().flatten() {
        let (Some(section), Some(name)) = (
            object.get(0).and_then(Value::as_str),
            object.get(1).and_then(Value::as_str),
        ) else {
            continue;
        };
        let definition = object.get(2).cloned().unwrap_or(Value::Null);
        if let Some(Value::Object(objects)) = document.get_mut(section) {
            objects.insert(name.to_owned(), definition);
        }
    }
    Value::Object(document)
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
    for (key, noun) in SECTIONS {
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
