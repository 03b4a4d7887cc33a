//! Loading a fixture: one transaction per fixture, one statement per table
//! and distinct set of columns, every name checked against the catalog
//! first.
//!
//! Rows go from the file's JSON text to the server without a tree of
//! values in between (module `encode`): as `COPY t (a, b) FROM STDIN` text when
//! the table is empty (or conflicts are errors), else as one JSON array:
//!
//! ```sql
//! INSERT INTO "t" ("a", "b") [OVERRIDING SYSTEM VALUE]
//! SELECT "a", "b" FROM json_populate_recordset(NULL::"t", $1::text::json)
//! [ON CONFLICT ("id") DO NOTHING | DO UPDATE SET "b" = EXCLUDED."b"]
//! ```
//!
//! Only the columns the rows name are listed, so the others get their
//! defaults (`json_populate_recordset` alone would give them NULL); rows
//! with other keys form another statement. A refused statement is traced
//! to its row and column (module `locate`).

use std::fmt;
use std::time::{Duration, Instant};

use deadpool_postgres::{Object, Pool};
use serde_json::value::RawValue;
use tokio_postgres::Client;

pub use super::error::FixtureFailure;
use super::error::{Error, Result};
use super::sql::{advance_sequence_sql, ident};
use crate::model::fixture::{Fixture, FixtureTable, Mode, Row};
use crate::pg::run::lock::{LockMode, MigrationLock};
use crate::pg::store::history::HistoryTable;

mod encode;
mod locate;

use encode::{groups, json_rows, key_part, ColumnKind};
use locate::locate;

/// What to do with a row whose primary key already exists. Overrides the
/// fixture's `__mode` when given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    /// Fail, and write nothing.
    Error,
    /// Keep the existing row (`ON CONFLICT (<primary key>) DO NOTHING`).
    Skip,
    /// Update the existing row's other columns from the fixture.
    Update,
}

/// What [`Migrator::populate`](crate::Migrator::populate) did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[must_use = "a populate report says whether anything was written"]
pub struct PopulateReport {
    /// The fixture's name.
    pub fixture: String,
    /// Whether it was loaded, and why.
    pub outcome: Outcome,
    /// Rows inserted or updated per table, in file order.
    #[serde(serialize_with = "tables_json")]
    pub tables: Vec<(String, u64)>,
    /// Rows inserted or updated in all.
    pub rows: u64,
    /// How long it took.
    #[serde(rename = "elapsed_ms", serialize_with = "crate::pg::report::millis")]
    pub elapsed: Duration,
}

/// `[{"table": …, "rows": …}]`, for `--json`.
fn tables_json<S: serde::Serializer>(
    tables: &[(String, u64)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    #[derive(serde::Serialize)]
    struct Table<'a> {
        table: &'a str,
        rows: u64,
    }
    serializer.collect_seq(
        tables
            .iter()
            .map(|(table, rows)| Table { table, rows: *rows }),
    )
}

/// Whether a fixture was loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Loaded for the first time.
    Populated,
    /// Loaded again because its content changed since the last time.
    Repopulated {
        /// The checksum recorded the last time, as hex.
        previous: String,
    },
    /// Loaded again with the content of the last time, because the
    /// caller gave a conflict policy: `update` then writes what an earlier
    /// load in `insert` mode skipped.
    Reloaded,
    /// Already loaded with this very content: nothing was written.
    Unchanged,
}

impl Outcome {
    /// Its name as `--json` writes it: `populated`, `repopulated`,
    /// `reloaded` or `unchanged`.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Populated => "populated",
            Outcome::Repopulated { .. } => "repopulated",
            Outcome::Reloaded => "reloaded",
            Outcome::Unchanged => "unchanged",
        }
    }
}

impl serde::Serialize for Outcome {
    /// As its [`name`](Self::name).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl fmt::Display for PopulateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Unchanged => write!(
                f,
                "fixture '{}' already populated with this content: nothing to do",
                self.fixture
            ),
            outcome => {
                let again = match outcome {
                    Outcome::Repopulated { .. } => " (changed since last populated)",
                    Outcome::Reloaded => " (loaded again, as asked)",
                    _ => "",
                };
                write!(
                    f,
                    "fixture '{}'{again}: {} rows in {:?}",
                    self.fixture, self.rows, self.elapsed
                )?;
                for (table, rows) in &self.tables {
                    write!(f, "\n  {table}: {rows}")?;
                }
                Ok(())
            }
        }
    }
}

/// A table's columns as the catalog knows them.
struct Columns {
    /// The table, quoted and qualified, for SQL.
    quoted: String,
    names: Vec<String>,
    /// `GENERATED ALWAYS AS IDENTITY` columns.
    always_identity: Vec<String>,
    /// Columns with an owned sequence (identity or serial).
    sequenced: Vec<String>,
    /// Generated (computed) columns, which cannot be written.
    generated: Vec<String>,
    primary_key: Vec<String>,
    /// How each column takes a JSON value in COPY text, by name.
    kinds: Vec<(String, ColumnKind)>,
}

impl Columns {
    /// The rows `indices`, columns `keys`, in COPY's text format; `None`
    /// when one needs `json_populate_recordset` (see [`encode::copy_text`]).
    fn copy_text(&self, rows: &[Row<'_>], keys: &[String], indices: &[usize]) -> Option<Vec<u8>> {
        let kinds: Vec<ColumnKind> = keys
            .iter()
            .map(|k| {
                self.kinds
                    .iter()
                    .find(|(name, _)| name == k)
                    .map(|(_, kind)| *kind)
            })
            .collect::<Option<_>>()?;
        encode::copy_text(rows, keys, &kinds, indices)
    }
}

/// The first row whose primary key an earlier row has, and that row.
fn duplicate_key(rows: &[Row<'_>], primary_key: &[String]) -> Option<(usize, usize)> {
    let mut seen = std::collections::HashMap::with_capacity(rows.len());
    'rows: for (i, row) in rows.iter().enumerate() {
        let mut key = Vec::with_capacity(primary_key.len());
        for column in primary_key {
            // A row without its key draws it from a default.
            let Some((_, value)) = row.iter().find(|(c, _)| c == column) else {
                continue 'rows;
            };
            key.push(key_part(value));
        }
        if let Some(&first) = seen.get(&key) {
            return Some((i, first));
        }
        seen.insert(key, i);
    }
    None
}

/// Load `fixture` in one transaction. Populating the same content again
/// under the fixture's own `__mode` writes nothing; changed content is
/// loaded again under the conflict policy (`conflict`, else the fixture's
/// `__mode`: insert skips existing keys, update updates them). A
/// `conflict` given by the caller always loads: an `update` after a load
/// in `insert` mode writes what that load skipped, though the content is
/// the same. It runs under the migration lock of
/// `history`, taken in `lock_mode` and waited for at most `lock_wait`, so
/// that replicas loading one fixture at once load it once.
///
/// # Errors
///
/// An unknown table or column, a value PostgreSQL cannot convert, a row
/// that violates a constraint, two rows with one primary key: each names
/// the fixture, table, row and column, and nothing is written.
pub(crate) async fn populate(
    pool: &Pool,
    history: &HistoryTable,
    fixture: &Fixture,
    conflict: Option<Conflict>,
    lock_mode: LockMode,
    lock_wait: Duration,
) -> Result<PopulateReport> {
    let started = Instant::now();
    let object = pool.get().await.map_err(crate::pg::connect::pool_error)?;
    // A connection of its own, closed afterwards: a failed transaction
    // never returns to the pool.
    let client = Object::take(object);
    // Under the migration lock: two replicas loading one fixture at once
    // would both find its tables empty and copy the same rows (a duplicate
    // key for one of them), and a fixture must not load into a schema a
    // peer is still migrating.
    let run_id = crate::pg::run::session::run_id();
    let lock = MigrationLock::new(
        history,
        lock_mode,
        &run_id,
        &format!("dbprep populate {} {run_id}", fixture.name()),
    );
    lock.acquire(&client, lock_wait).await?;
    // The fixture history is made in a short transaction of its own (a
    // peer making it at the same moment waits for that one, not for the
    // whole fixture), without the "already exists, skipping" notices
    // tokio-postgres would log.
    let create_schema = !history.schema_exists(&client).await?;
    client
        .batch_execute(&format!(
            "BEGIN;\nSET LOCAL client_min_messages = warning;\n{}\nCOMMIT;\n\
             BEGIN;\n{}SELECT pg_catalog.set_config('TimeZone', 'UTC', true);",
            history.create_fixture_table_sql(create_schema),
            lock.renew_sql(),
        ))
        .await
        .map_err(Error::postgres("start the fixture transaction"))?;
    let result = load(&client, history, fixture, conflict, started).await;
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    client
        .batch_execute(&format!("{end};\n{}", lock.release_sql()))
        .await
        .map_err(Error::postgres(format!("{end} the fixture")))?;
    let report = result?;
    if report.outcome != Outcome::Unchanged {
        tracing::info!(
            "Populating fixture '{}' … done ({} rows in {} ms)",
            report.fixture,
            report.rows,
            report.elapsed.as_millis()
        );
    } else {
        tracing::info!(
            "Fixture '{}' already populated with this content: nothing to do",
            report.fixture
        );
    }
    Ok(report)
}

async fn load(
    client: &Client,
    history: &HistoryTable,
    fixture: &Fixture,
    conflict: Option<Conflict>,
    started: Instant,
) -> Result<PopulateReport> {
    let name = fixture.name().to_owned();
    let checksum = fixture.checksum();
    let recorded = history.fixture_checksum(client, &name).await?;
    let outcome = match recorded {
        Some(previous) if previous == checksum.to_string() => {
            if conflict.is_none() {
                return Ok(PopulateReport {
                    fixture: name,
                    outcome: Outcome::Unchanged,
                    tables: Vec::new(),
                    rows: 0,
                    elapsed: started.elapsed(),
                });
            }
            Outcome::Reloaded
        }
        Some(previous) => Outcome::Repopulated { previous },
        None => Outcome::Populated,
    };
    let content = fixture.content().map_err(Error::FixtureFile)?;
    let conflict = conflict.unwrap_or(match content.mode {
        Mode::Insert => Conflict::Skip,
        Mode::Update => Conflict::Update,
    });
    let refuse = Refuse { fixture: &name };
    let catalog = check_against_catalog(client, &content.tables, conflict, &refuse).await?;
    let mut tables = Vec::new();
    let mut total = 0;
    for (table, (columns, groups)) in content.tables.iter().zip(catalog) {
        let written = write_table(client, table, &columns, groups, conflict, &refuse).await?;
        tables.push((table.display_name(), written));
        total += written;
    }
    history
        .record_fixture(client, &name, checksum, total)
        .await?;
    Ok(PopulateReport {
        fixture: name,
        outcome,
        tables,
        rows: total,
        elapsed: started.elapsed(),
    })
}

/// The rows of a table grouped by the set of keys they name.
type Groups = Vec<(Vec<String>, Vec<usize>)>;

/// The error that says where the database refused a fixture.
struct Refuse<'a> {
    fixture: &'a str,
}

impl Refuse<'_> {
    fn at(
        &self,
        table: &FixtureTable<'_>,
        row: Option<usize>,
        column: Option<&str>,
        value: Option<&RawValue>,
        message: String,
    ) -> Error {
        Error::Fixture(Box::new(FixtureFailure {
            fixture: self.fixture.to_owned(),
            table: table.display_name(),
            row,
            column: column.map(str::to_owned),
            value: value.map(|v| v.get().to_owned()),
            message,
        }))
    }
}

/// Check every table, column and primary key of the fixture against the
/// catalog before anything is written (`json_populate_recordset` would
/// silently ignore an unknown column): each table's columns and its rows
/// grouped by the keys they name.
async fn check_against_catalog(
    client: &Client,
    tables: &[FixtureTable<'_>],
    conflict: Conflict,
    refuse: &Refuse<'_>,
) -> Result<Vec<(Columns, Groups)>> {
    let mut catalog = Vec::with_capacity(tables.len());
    for table in tables {
        let columns = columns(client, table).await?.ok_or_else(|| {
            refuse.at(table, None, None, None, "no such table (check the name and the schema; tables load in file order, parents first)".into())
        })?;
        let groups = groups(&table.rows);
        // Rows of a group name the same columns: checking its first row
        // checks them all.
        for (keys, indices) in &groups {
            let first = indices[0];
            let value = |column: &str| {
                table.rows[first]
                    .iter()
                    .find(|(k, _)| k == column)
                    .map(|(_, v)| *v)
            };
            for column in keys {
                let problem = if !columns.names.contains(column) {
                    "no such column"
                } else if columns.generated.contains(column) {
                    "a generated column cannot be written"
                } else {
                    continue;
                };
                return Err(refuse.at(
                    table,
                    Some(first),
                    Some(column),
                    value(column),
                    problem.into(),
                ));
            }
        }
        if !columns.primary_key.is_empty() {
            if let Some((row, first)) = duplicate_key(&table.rows, &columns.primary_key) {
                let values: Vec<&str> = columns
                    .primary_key
                    .iter()
                    .filter_map(|k| table.rows[row].iter().find(|(c, _)| c == k))
                    .map(|(_, v)| v.get())
                    .collect();
                return Err(refuse.at(
                    table,
                    Some(row),
                    None,
                    None,
                    format!(
                        "same primary key ({}) = ({}) as row {first}",
                        columns.primary_key.join(", "),
                        values.join(", "),
                    ),
                ));
            }
        } else if conflict == Conflict::Update && !table.rows.is_empty() {
            return Err(refuse.at(
                table,
                None,
                None,
                None,
                "the table has no primary key, which update mode needs to find existing rows"
                    .into(),
            ));
        }
        catalog.push((columns, groups));
    }
    Ok(catalog)
}

/// Write one table's rows, a statement per group of keys (with `COPY`
/// into an empty table), each under a savepoint so that a refused row can
/// be found: how many rows were written.
async fn write_table(
    client: &Client,
    table: &FixtureTable<'_>,
    columns: &Columns,
    groups: Groups,
    conflict: Conflict,
    refuse: &Refuse<'_>,
) -> Result<u64> {
    let mut written = 0;
    let empty = table.rows.is_empty()
        || client
            .query_one(
                &format!("SELECT NOT EXISTS (SELECT 1 FROM {})", columns.quoted),
                &[],
            )
            .await
            .map_err(Error::postgres(format!(
                "look into {}",
                table.display_name()
            )))?
            .get::<_, bool>(0);
    // Rows that give identity or serial values go first, and their
    // sequences move past them before the other rows draw from them:
    // else a generated value could take a key the file gives later.
    let (with_sequence, without): (Vec<_>, Vec<_>) = groups
        .into_iter()
        .partition(|(keys, _)| keys.iter().any(|k| columns.sequenced.contains(k)));
    for (i, (keys, indices)) in with_sequence.iter().chain(&without).enumerate() {
        if i == with_sequence.len() {
            advance_sequences(client, columns, table, &with_sequence).await?;
        }
        client
            .batch_execute("SAVEPOINT dbprep_fixture")
            .await
            .map_err(Error::postgres("set a savepoint"))?;
        // No existing row can conflict with a table that is empty (and
        // the file's own keys were checked above).
        let copy = match conflict {
            Conflict::Error => columns.copy_text(&table.rows, keys, indices),
            _ if empty => columns.copy_text(&table.rows, keys, indices),
            _ => None,
        };
        let result = match copy {
            Some(text) => copy_in(client, columns, keys, text).await,
            None => {
                let json = json_rows(&table.rows, indices);
                client
                    .execute(&insert_sql(columns, keys, conflict), &[&json])
                    .await
            }
        };
        match result {
            Ok(n) => written += n,
            Err(e) => {
                client
                    .batch_execute("ROLLBACK TO SAVEPOINT dbprep_fixture")
                    .await
                    .map_err(Error::postgres("roll back"))?;
                return Err(
                    locate(client, columns, table, indices, keys, conflict, e, refuse).await,
                );
            }
        }
    }
    if without.is_empty() {
        advance_sequences(client, columns, table, &with_sequence).await?;
    }
    Ok(written)
}

/// Move the sequences of the identity or serial columns that `groups` give
/// values for past the largest value in the table.
async fn advance_sequences(
    client: &Client,
    columns: &Columns,
    table: &FixtureTable<'_>,
    groups: &[(Vec<String>, Vec<usize>)],
) -> Result<()> {
    for column in columns
        .sequenced
        .iter()
        .filter(|c| groups.iter().any(|(keys, _)| keys.contains(c)))
    {
        client
            .batch_execute(&advance_sequence_sql(&columns.quoted, column))
            .await
            .map_err(Error::postgres(format!(
                "advance the sequence of {}.{column}",
                table.display_name()
            )))?;
    }
    Ok(())
}

/// `COPY t (keys) FROM STDIN` with `text`.
async fn copy_in(
    client: &Client,
    columns: &Columns,
    keys: &[String],
    text: Vec<u8>,
) -> Result<u64, tokio_postgres::Error> {
    use futures_util::SinkExt;
    let list = keys.iter().map(|k| ident(k)).collect::<Vec<_>>().join(", ");
    let sink = client
        .copy_in::<_, bytes::Bytes>(&format!("COPY {} ({list}) FROM STDIN", columns.quoted))
        .await?;
    futures_util::pin_mut!(sink);
    sink.send(bytes::Bytes::from(text)).await?;
    sink.finish().await
}

fn insert_sql(columns: &Columns, keys: &[String], conflict: Conflict) -> String {
    let list = keys.iter().map(|k| ident(k)).collect::<Vec<_>>().join(", ");
    let overriding = if keys.iter().any(|k| columns.always_identity.contains(k)) {
        " OVERRIDING SYSTEM VALUE"
    } else {
        ""
    };
    let pk = columns
        .primary_key
        .iter()
        .map(|k| ident(k))
        .collect::<Vec<_>>()
        .join(", ");
    let on_conflict = match conflict {
        Conflict::Error => String::new(),
        Conflict::Skip if pk.is_empty() => String::new(),
        Conflict::Skip => format!(" ON CONFLICT ({pk}) DO NOTHING"),
        Conflict::Update => {
            let set: Vec<String> = keys
                .iter()
                .filter(|k| !columns.primary_key.contains(k))
                .map(|k| format!("{c} = EXCLUDED.{c}", c = ident(k)))
                .collect();
            if set.is_empty() {
                format!(" ON CONFLICT ({pk}) DO NOTHING")
            } else {
                format!(" ON CONFLICT ({pk}) DO UPDATE SET {}", set.join(", "))
            }
        }
    };
    format!(
        "INSERT INTO {t} ({list}){overriding} SELECT {list} FROM pg_catalog.json_populate_recordset(NULL::{t}, $1::text::json){on_conflict}",
        t = columns.quoted
    )
}

/// The table's columns, or `None` when there is no such table.
async fn columns(client: &Client, table: &FixtureTable<'_>) -> Result<Option<Columns>> {
    let quoted = match &table.schema {
        Some(schema) => format!("{}.{}", ident(schema), ident(&table.table)),
        None => ident(&table.table),
    };
    let rows = client
        .query(
            "SELECT a.attname::text, a.attidentity::text, a.attgenerated::text, \
                    pg_catalog.pg_get_serial_sequence(c.oid::regclass::text, a.attname) IS NOT NULL, \
                    coalesce(a.attnum = ANY (pk.indkey), false), \
                    pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname), \
                    CASE WHEN t.typname IN ('json', 'jsonb') AND t.typnamespace = 'pg_catalog'::regnamespace THEN 'j' \
                         WHEN t.typcategory = 'A' THEN 'a' WHEN t.typtype IN ('c', 'd') THEN 'c' ELSE 's' END \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
             JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
             LEFT JOIN pg_catalog.pg_index pk ON pk.indrelid = c.oid AND pk.indisprimary \
             WHERE c.oid = pg_catalog.to_regclass($1) AND c.relkind IN ('r', 'p') ORDER BY a.attnum",
            &[&quoted],
        )
        .await
        .map_err(Error::postgres(format!("look up table {}", table.display_name())))?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let mut columns = Columns {
        quoted: first.get(5),
        names: Vec::new(),
        always_identity: Vec::new(),
        sequenced: Vec::new(),
        generated: Vec::new(),
        primary_key: Vec::new(),
        kinds: Vec::new(),
    };
    for row in &rows {
        let name: String = row.get(0);
        if row.get::<_, String>(1) == "a" {
            columns.always_identity.push(name.clone());
        }
        if !row.get::<_, String>(2).is_empty() {
            columns.generated.push(name.clone());
        }
        if row.get::<_, bool>(3) {
            columns.sequenced.push(name.clone());
        }
        if row.get::<_, bool>(4) {
            columns.primary_key.push(name.clone());
        }
        let kind = match row.get::<_, String>(6).as_str() {
            "j" => Some(ColumnKind::Json),
            "a" => Some(ColumnKind::Array),
            "s" => Some(ColumnKind::Scalar),
            // Composite and domain types: only json_populate_recordset
            // knows how to build them from JSON.
            _ => None,
        };
        if let Some(kind) = kind {
            columns.kinds.push((name.clone(), kind));
        }
        columns.names.push(name);
    }
    Ok(Some(columns))
}
