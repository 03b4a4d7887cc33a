//! The PostgreSQL side of an import: the tables and columns rows go into,
//! and the order foreign keys ask for, all read from the catalog.

use std::collections::{BTreeMap, BTreeSet};

use tokio_postgres::Client;

use super::convert::Target;
use crate::pg::error::{Error, Result};
use crate::pg::store::HistoryTable;

/// A column of a target table.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub name: String,
    /// Its type as `format_type` writes it, for messages.
    pub type_name: String,
    pub target: Target,
    /// `NOT NULL` with no default, not identity, not generated: a value
    /// must come from SQLite.
    pub required: bool,
    /// A generated column: never written.
    pub generated: bool,
    /// Whether a sequence (serial or identity) gives its values.
    pub sequenced: bool,
}

/// A table of the target schema.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    /// Its name in PostgreSQL.
    pub name: String,
    /// Schema-qualified and quoted.
    pub quoted: String,
    pub oid: u32,
    pub columns: Vec<Column>,
}

/// A foreign key between two target tables.
#[derive(Debug, Clone)]
pub(crate) struct ForeignKey {
    pub table: u32,
    /// The table it is on, schema-qualified and quoted.
    pub on: String,
    pub references: u32,
    /// Quoted.
    pub name: String,
    /// `pg_get_constraintdef`: what re-creates it.
    pub definition: String,
}

/// The tables of the schemas on the search path (dbprep's own left out),
/// by name.
pub(crate) async fn tables(
    client: &Client,
    history: &HistoryTable,
) -> Result<BTreeMap<String, Table>> {
    let own: Vec<String> = history.own_tables().to_vec();
    let rows = client
        .query(
            "SELECT c.oid, c.relname::text, \
                    pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname), \
                    a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod), \
                    coalesce(bt.typname, t.typname)::text, coalesce(bt.typcategory, t.typcategory)::text, \
                    a.attnotnull AND NOT a.atthasdef AND a.attidentity = '' AND a.attgenerated = '', \
                    a.attgenerated <> '', \
                    a.attidentity <> '' OR pg_catalog.pg_get_serial_sequence(c.oid::regclass::text, a.attname) IS NOT NULL \
             FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
             JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
             LEFT JOIN pg_catalog.pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype \
             WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY (pg_catalog.current_schemas(false)) \
               AND c.oid <> ALL (SELECT pg_catalog.to_regclass(o)::oid FROM pg_catalog.unnest($1::text[]) AS o \
                                 WHERE pg_catalog.to_regclass(o) IS NOT NULL) \
             ORDER BY pg_catalog.array_position(pg_catalog.current_schemas(false), n.nspname::text), c.relname, a.attnum",
            &[&own],
        )
        .await
        .map_err(Error::postgres("read the target tables"))?;
    let mut tables: BTreeMap<String, Table> = BTreeMap::new();
    for row in rows {
        let name: String = row.get(1);
        // The first schema of the search path that has the name wins, as
        // an unqualified name would resolve.
        let oid: u32 = row.get(0);
        let table = tables.entry(name.clone()).or_insert_with(|| Table {
            name,
            quoted: row.get(2),
            oid,
            columns: Vec::new(),
        });
        if table.oid != oid {
            continue;
        }
        let base: String = row.get(5);
        let category: String = row.get(6);
        table.columns.push(Column {
            name: row.get(3),
            type_name: row.get(4),
            target: Target::of(&base, &category),
            required: row.get(7),
            generated: row.get(8),
            sequenced: row.get(9),
        });
    }
    Ok(tables)
}

/// Whether each of `tables` has no row.
pub(crate) async fn non_empty(client: &Client, tables: &[&Table]) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for table in tables {
        let has_rows: bool = client
            .query_one(
                &format!("SELECT EXISTS (SELECT 1 FROM {})", table.quoted),
                &[],
            )
            .await
            .map_err(Error::postgres(format!("look into {}", table.quoted)))?
            .get(0);
        if has_rows {
            found.push(table.quoted.clone());
        }
    }
    Ok(found)
}

/// The foreign keys from one of `oids` to another.
pub(crate) async fn foreign_keys(client: &Client, oids: &[u32]) -> Result<Vec<ForeignKey>> {
    let rows = client
        .query(
            "SELECT co.conrelid, co.confrelid, pg_catalog.quote_ident(co.conname), \
                    pg_catalog.pg_get_constraintdef(co.oid), \
                    pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) \
             FROM pg_catalog.pg_constraint co \
             JOIN pg_catalog.pg_class c ON c.oid = co.conrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE co.contype = 'f' AND co.conrelid = ANY ($1::oid[]) AND co.confrelid = ANY ($1::oid[]) \
             ORDER BY c.relname, co.conname",
            &[&oids],
        )
        .await
        .map_err(Error::postgres("read the foreign keys between the target tables"))?;
    Ok(rows
        .iter()
        .map(|row| ForeignKey {
            table: row.get(0),
            references: row.get(1),
            name: row.get(2),
            definition: row.get(3),
            on: row.get(4),
        })
        .collect())
}

/// The order to copy `oids` in, referenced tables first, and the foreign
/// keys that no order satisfies: those between tables of a cycle (two
/// tables that reference each other, or a longer loop). A table that
/// references itself needs none: its rows go in one `COPY`, whose checks
/// run at the end of the statement.
pub(crate) fn copy_order(oids: &[u32], keys: &[ForeignKey]) -> (Vec<u32>, Vec<ForeignKey>) {
    let mut waiting_on: BTreeMap<u32, BTreeSet<u32>> =
        oids.iter().map(|&o| (o, BTreeSet::new())).collect();
    for key in keys.iter().filter(|k| k.table != k.references) {
        waiting_on
            .entry(key.table)
            .or_default()
            .insert(key.references);
    }
    let mut order = Vec::new();
    loop {
        // Tables in the given order whose referenced tables are all in.
        let ready: Vec<u32> = oids
            .iter()
            .copied()
            .filter(|o| waiting_on.get(o).is_some_and(BTreeSet::is_empty))
            .collect();
        if ready.is_empty() {
            break;
        }
        for oid in ready {
            waiting_on.remove(&oid);
            for waits in waiting_on.values_mut() {
                waits.remove(&oid);
            }
            order.push(oid);
        }
    }
    // What is left is in a cycle or waits on one: its keys between left
    // tables are set aside for the copy, and the tables go in as given.
    let left: BTreeSet<u32> = waiting_on.keys().copied().collect();
    order.extend(oids.iter().copied().filter(|o| left.contains(o)));
    let set_aside = keys
        .iter()
        .filter(|k| {
            k.table != k.references && left.contains(&k.table) && left.contains(&k.references)
        })
        .cloned()
        .collect();
    (order, set_aside)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(table: u32, references: u32) -> ForeignKey {
        ForeignKey {
            table,
            references,
            name: format!("fk_{table}_{references}"),
            definition: String::new(),
            on: format!("t{table}"),
        }
    }

    #[test]
    fn referenced_tables_go_first() {
        let (order, aside) = copy_order(&[1, 2, 3], &[key(1, 2), key(2, 3)]);
        assert_eq!(order, [3, 2, 1]);
        assert!(aside.is_empty());
    }

    #[test]
    fn a_self_reference_needs_nothing_set_aside() {
        let (order, aside) = copy_order(&[1, 2], &[key(1, 1), key(2, 1)]);
        assert_eq!(order, [1, 2]);
        assert!(aside.is_empty());
    }

    #[test]
    fn a_cycle_sets_its_keys_aside() {
        let (order, aside) = copy_order(&[1, 2, 3, 4], &[key(1, 2), key(2, 1), key(3, 4)]);
        assert_eq!(order, [4, 3, 1, 2]);
        let names: Vec<&str> = aside.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["fk_1_2", "fk_2_1"]);
    }
}
