//! Moving a legacy SQLite database into the migrated schema (feature
//! `sqlite`): [`Migrator::import_sqlite`](crate::Migrator::import_sqlite).
//!
//! The schema comes from the embedded migrations, brought to the version
//! the SQLite data matches; then every row of every table both sides have
//! is copied in one transaction, under the migration lock, referenced
//! tables first; then the schema goes on to the newest version. Values are
//! converted for the target column's type (module `convert`); the SQLite
//! file is read on a thread of its own, in chunks (module `source`); the
//! target's tables, columns and foreign keys come from the catalog (module
//! `target`).

mod convert;
mod source;
mod target;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use deadpool_postgres::{Object, Pool};
use futures_util::SinkExt;
use tokio_postgres::Client;

use crate::pg::error::{Error, Result};
use crate::pg::report::show;
use crate::pg::run::lock::MigrationLock;
use crate::pg::sql::{advance_sequence_sql, literal};
use crate::Migrator;
use convert::Context;
use source::{CopyColumn, Message, SourceTable, TableCopy};
use target::{ForeignKey, Table};

/// What [`Migrator::import_sqlite`](crate::Migrator::import_sqlite) copies,
/// and how.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    at: Option<i64>,
    tables: Vec<String>,
    exclude: Vec<String>,
    truncate: bool,
    timezone: Option<String>,
    chunk_bytes: Option<usize>,
}

impl ImportOptions {
    /// The version whose schema the SQLite data matches (default: the
    /// newest): the database is brought to it before the copy, and to the
    /// newest version after.
    pub fn at(mut self, version: i64) -> Self {
        self.at = Some(version);
        self
    }

    /// Copy only these SQLite tables (default: every table both sides
    /// have).
    pub fn tables(mut self, tables: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.tables = tables.into_iter().map(Into::into).collect();
        self
    }

    /// Leave out these tables, or columns written `table.column`.
    pub fn exclude(mut self, names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.exclude = names.into_iter().map(Into::into).collect();
        self
    }

    /// Empty the target tables first (in the same transaction) instead of
    /// refusing tables that have rows.
    pub fn truncate(mut self, truncate: bool) -> Self {
        self.truncate = truncate;
        self
    }

    /// The time zone of naive date-times (`2024-05-06 07:08:09`, no offset)
    /// going into `timestamptz` columns (default: UTC), as PostgreSQL names
    /// it (`Europe/Paris`).
    pub fn timezone(mut self, zone: impl Into<String>) -> Self {
        self.timezone = Some(zone.into());
        self
    }

    /// About how many bytes of COPY text to send at once (default 1 MiB):
    /// what bounds the memory an import holds.
    pub fn chunk_bytes(mut self, bytes: usize) -> Self {
        self.chunk_bytes = Some(bytes.max(1));
        self
    }
}

/// One table copied.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImportedTable {
    /// The table, schema-qualified.
    pub table: String,
    /// Rows read from SQLite.
    pub source_rows: u64,
    /// Rows the target table holds after the copy (checked equal).
    pub target_rows: u64,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[must_use = "an import report says what was copied"]
pub struct ImportReport {
    /// The SQLite file.
    pub file: String,
    /// The version the rows were copied at.
    pub copied_at: Option<i64>,
    /// The version the database is at afterwards.
    pub version: Option<i64>,
    /// The tables copied, in the order they were.
    pub tables: Vec<ImportedTable>,
    /// SQLite tables with no table of that name in PostgreSQL (not
    /// copied).
    pub only_in_sqlite: Vec<String>,
    /// PostgreSQL tables with no SQLite table (left as they were).
    pub only_in_postgres: Vec<String>,
    /// `table.column` only in PostgreSQL: they took their defaults.
    pub defaulted_columns: Vec<String>,
    /// What `exclude` left out.
    pub excluded: Vec<String>,
    /// Foreign keys between tables of a cycle, dropped for the copy and
    /// created again after it (which checked every row).
    pub rechecked_foreign_keys: Vec<String>,
    /// Rows copied in all.
    pub rows: u64,
    /// How long it took, upgrades included.
    #[serde(serialize_with = "milliseconds")]
    pub elapsed: Duration,
}

fn milliseconds<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "imported {} rows from {} at version {}; the database is at version {}",
            self.rows,
            self.file,
            show(self.copied_at),
            show(self.version)
        )?;
        for t in &self.tables {
            writeln!(f, "  {:<40} {:>10} rows", t.table, t.target_rows)?;
        }
        let list = |f: &mut fmt::Formatter<'_>, what: &str, items: &[String]| {
            if items.is_empty() {
                Ok(())
            } else {
                writeln!(f, "{what}: {}", items.join(", "))
            }
        };
        list(f, "only in SQLite (not copied)", &self.only_in_sqlite)?;
        list(
            f,
            "only in PostgreSQL (left as they were)",
            &self.only_in_postgres,
        )?;
        list(
            f,
            "columns only in PostgreSQL (defaults)",
            &self.defaulted_columns,
        )?;
        list(f, "excluded", &self.excluded)?;
        list(
            f,
            "foreign keys of a cycle, created again after the copy",
            &self.rechecked_foreign_keys,
        )
    }
}

/// An import refused or failed: nothing was copied.
fn refused(file: &Path, message: impl Into<String>) -> Error {
    Error::Import {
        file: file.display().to_string(),
        message: message.into(),
    }
}

/// The plan of a copy: what goes where.
struct Plan<'t> {
    /// In copy order: the target table and what to read for it.
    tables: Vec<(&'t Table, TableCopy)>,
    only_in_sqlite: Vec<String>,
    only_in_postgres: Vec<String>,
    defaulted: Vec<String>,
    excluded: Vec<String>,
    set_aside: Vec<ForeignKey>,
}

/// Match the SQLite tables with the target's, column by column; refuse
/// what cannot be copied without a guess.
fn plan<'t>(
    file: &Path,
    sources: &[SourceTable],
    targets: &'t BTreeMap<String, Table>,
    options: &ImportOptions,
) -> Result<Plan<'t>> {
    for name in &options.tables {
        if !sources.iter().any(|s| &s.name == name) {
            return Err(refused(
                file,
                format!("--tables names {name:?}, which the SQLite file does not have"),
            ));
        }
    }
    let excluded_table = |name: &str| options.exclude.iter().any(|e| e == name);
    let excluded_column = |table: &str, column: &str| {
        options
            .exclude
            .iter()
            .any(|e| *e == format!("{table}.{column}"))
    };
    let find = |name: &str| {
        targets
            .get(name)
            .or_else(|| targets.get(&name.to_lowercase()))
    };
    let mut matched = Vec::new();
    let mut plan = Plan {
        tables: Vec::new(),
        only_in_sqlite: Vec::new(),
        only_in_postgres: Vec::new(),
        defaulted: Vec::new(),
        excluded: options.exclude.clone(),
        set_aside: Vec::new(),
    };
    let mut problems = Vec::new();
    for source in sources {
        if excluded_table(&source.name)
            || (!options.tables.is_empty() && !options.tables.contains(&source.name))
        {
            continue;
        }
        let Some(table) = find(&source.name) else {
            plan.only_in_sqlite.push(source.name.clone());
            continue;
        };
        let mut columns = Vec::new();
        for column in &source.columns {
            if excluded_column(&source.name, &column.name) {
                continue;
            }
            let target = table
                .columns
                .iter()
                .find(|c| c.name == column.name)
                .or_else(|| {
                    table
                        .columns
                        .iter()
                        .find(|c| c.name == column.name.to_lowercase())
                });
            match target {
                Some(c) if c.generated => problems.push(format!(
                    "{}.{}: a generated column in PostgreSQL, which takes no value; exclude it (--exclude {}.{})",
                    source.name, column.name, source.name, column.name
                )),
                Some(c) => columns.push(CopyColumn {
                    source: column.name.clone(),
                    target: c.target,
                    name: c.name.clone(),
                    type_name: c.type_name.clone(),
                }),
                None => problems.push(format!(
                    "{}.{} (declared {:?} in SQLite) has no column in {}; exclude it (--exclude {}.{}) or add it by a migration",
                    source.name,
                    column.name,
                    column.declared,
                    table.quoted,
                    source.name,
                    column.name
                )),
            }
        }
        for column in &table.columns {
            if columns.iter().any(|c| c.name == column.name) || column.generated {
                continue;
            }
            if column.required {
                problems.push(format!(
                    "{}.{} is NOT NULL without a default, and the SQLite table has no such column",
                    table.quoted, column.name
                ));
            } else {
                plan.defaulted
                    .push(format!("{}.{}", table.name, column.name));
            }
        }
        matched.push(table.oid);
        plan.tables.push((
            table,
            TableCopy {
                source: source.name.clone(),
                has_rowid: source.has_rowid,
                columns,
            },
        ));
    }
    if !problems.is_empty() {
        return Err(refused(file, problems.join("\n  ")));
    }
    plan.only_in_postgres = targets
        .values()
        .filter(|t| !matched.contains(&t.oid))
        .map(|t| t.quoted.clone())
        .collect();
    Ok(plan)
}

impl<'m> Migrator<'m> {
    /// Move the SQLite database at `path` into this database: bring the
    /// schema to the version the data matches ([`ImportOptions::at`],
    /// default the newest), copy every row of every table both have in one
    /// transaction under the migration lock, referenced tables first, then
    /// apply the rest of the migrations. Values are converted for the
    /// target column's type (0/1 into boolean, 32 hex digits into uuid,
    /// Unix times and naive date-times into timestamps, JSON arrays into
    /// arrays, blobs into bytea); sequences of serial and identity columns
    /// are moved past the largest imported value.
    ///
    /// The copy is all or nothing: a value that cannot convert, a row the
    /// target refuses or counts that differ roll it back, and the error
    /// names the table, the SQLite `rowid`, the column and the value. The
    /// schema then stays at the `at` version (a rerun picks up from there).
    /// Target tables that have rows are refused unless
    /// [`ImportOptions::truncate`].
    ///
    /// # Errors
    ///
    /// [`Error::Import`] for what cannot be copied, and any error of
    /// [`run`](Self::run).
    pub async fn import_sqlite(
        &self,
        pool: &Pool,
        path: impl AsRef<Path>,
        options: &ImportOptions,
    ) -> Result<ImportReport> {
        let started = Instant::now();
        let file = path.as_ref().to_owned();
        let sources = {
            let connection = source::open(&file).map_err(|e| {
                refused(&e.file, format!("cannot open it as SQLite: {}", e.message))
            })?;
            source::tables(&connection, &file).map_err(|e| refused(&e.file, e.message))?
        };
        let at = match options.at {
            Some(v) if self.migrations.get(v).is_none() => return Err(Error::UnknownTarget(v)),
            Some(v) => Some(v),
            None => self.migrations.head(),
        };
        let client = Object::take(pool.get().await.map_err(crate::pg::connect::pool_error)?);
        // Past `at`, the data would go into a schema it was not made for.
        if self.history.exists(&client).await? {
            let applied = self.history.read(&client).await?;
            let current = applied
                .iter()
                .filter(|r| r.success)
                .map(|r| r.version)
                .max();
            if let (Some(current), Some(at)) = (current, at) {
                if current > at {
                    return Err(refused(
                        &file,
                        format!("the database is at version {current}, past {at} that the data matches; import into a database at {at} or before"),
                    ));
                }
            }
        }
        if let Some(at) = at {
            let upgrade = Migrator {
                target: Some(at),
                ..self.clone()
            };
            let report = upgrade.run_on(&client).await?;
            tracing::info!(
                "the database is at version {} for the copy",
                show(report.version)
            );
        }
        let run_id = crate::pg::run::session::run_id();
        let lock = MigrationLock::new(
            &self.history,
            self.lock_mode,
            &run_id,
            &format!("dbprep import-sqlite {run_id}"),
        );
        lock.acquire(&client, self.lock_wait).await?;
        let zone = options.timezone.as_deref().unwrap_or("UTC");
        let begin = client
            .batch_execute(&format!(
                "BEGIN;\n{}SELECT pg_catalog.set_config('TimeZone', {}, true);",
                lock.renew_sql(),
                literal(zone)
            ))
            .await
            .map_err(Error::postgres("start the import transaction"));
        let result = match begin {
            Ok(()) => self.copy(&client, &file, &sources, at, options).await,
            Err(e) => Err(e),
        };
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = client
            .batch_execute(&format!("{end};\n{}", lock.release_sql()))
            .await
            .map_err(Error::postgres(format!("{end} the import")));
        let mut report = result?;
        ended?;
        let upgraded = self.run_on(&client).await?;
        report.version = upgraded.version;
        report.elapsed = started.elapsed();
        tracing::info!(
            "imported {} rows from {} ({} tables) in {} ms",
            report.rows,
            report.file,
            report.tables.len(),
            report.elapsed.as_millis()
        );
        Ok(report)
    }

    /// Inside the import transaction, under the lock: check the version,
    /// plan, empty or refuse non-empty tables, copy, check.
    async fn copy(
        &self,
        client: &Client,
        file: &Path,
        sources: &[SourceTable],
        at: Option<i64>,
        options: &ImportOptions,
    ) -> Result<ImportReport> {
        let rows = self.history.read(client).await?;
        let current = rows.iter().filter(|r| r.success).map(|r| r.version).max();
        if current != at {
            return Err(refused(
                file,
                format!(
                    "another migrator moved the database to version {} while the import waited for the lock (expected {})",
                    show(current),
                    show(at)
                ),
            ));
        }
        let targets = target::tables(client, &self.history).await?;
        let mut plan = plan(file, sources, &targets, options)?;
        let oids: Vec<u32> = plan.tables.iter().map(|(t, _)| t.oid).collect();
        let keys = target::foreign_keys(client, &oids).await?;
        let (order, set_aside) = target::copy_order(&oids, &keys);
        plan.tables
            .sort_by_key(|(t, _)| order.iter().position(|o| *o == t.oid));
        plan.set_aside = set_aside;
        let chosen: Vec<&Table> = plan.tables.iter().map(|(t, _)| *t).collect();
        let full = target::non_empty(client, &chosen).await?;
        if !full.is_empty() {
            if !options.truncate {
                return Err(refused(
                    file,
                    format!("{} already hold rows; import into empty tables, or empty them with --truncate (ImportOptions::truncate)", full.join(", ")),
                ));
            }
            let list: Vec<&str> = chosen.iter().map(|t| t.quoted.as_str()).collect();
            client
                .batch_execute(&format!("TRUNCATE {} RESTART IDENTITY", list.join(", ")))
                .await
                .map_err(|e| {
                    refused(
                        file,
                        format!(
                            "cannot empty the target tables: {}",
                            crate::pg::error::describe(&e)
                        ),
                    )
                })?;
        }
        for key in &plan.set_aside {
            let table = &key.on;
            client
                .batch_execute(&format!("ALTER TABLE {table} DROP CONSTRAINT {}", key.name))
                .await
                .map_err(Error::postgres(format!(
                    "set aside the foreign key {} of {table}",
                    key.name
                )))?;
        }
        let context = Context {
            naive_is_utc: options
                .timezone
                .as_deref()
                .is_none_or(|z| z.eq_ignore_ascii_case("UTC")),
        };
        let mut receiver = source::read(
            file.to_owned(),
            plan.tables.iter().map(|(_, c)| c.clone()).collect(),
            context,
            options.chunk_bytes.unwrap_or(1 << 20),
        );
        let mut copied = Vec::new();
        for (table, copy) in &plan.tables {
            let columns: Vec<String> = copy
                .columns
                .iter()
                .map(|c| crate::pg::sql::ident(&c.name))
                .collect();
            let (source_rows, written) =
                copy_table(client, file, table, copy, &columns, &mut receiver).await?;
            if source_rows != written {
                return Err(refused(
                    file,
                    format!(
                        "{}: {source_rows} rows read from SQLite, {written} written",
                        table.quoted
                    ),
                ));
            }
            copied.push(ImportedTable {
                table: table.quoted.clone(),
                source_rows,
                target_rows: written,
            });
        }
        drop(receiver);
        for key in &plan.set_aside {
            let table = &key.on;
            client
                .batch_execute(&format!(
                    "ALTER TABLE {table} ADD CONSTRAINT {} {}",
                    key.name, key.definition
                ))
                .await
                .map_err(|e| {
                    refused(
                        file,
                        format!(
                            "the foreign key {} of {table} does not hold for the imported rows: {}",
                            key.name,
                            crate::pg::error::describe(&e)
                        ),
                    )
                })?;
        }
        for (table, copy) in &plan.tables {
            for column in table
                .columns
                .iter()
                .filter(|c| c.sequenced && copy.columns.iter().any(|x| x.name == c.name))
            {
                client
                    .batch_execute(&advance_sequence_sql(&table.quoted, &column.name))
                    .await
                    .map_err(Error::postgres(format!(
                        "advance the sequence of {}.{}",
                        table.quoted, column.name
                    )))?;
            }
        }
        // The counts once more, from the tables themselves.
        for imported in &mut copied {
            let count: i64 = client
                .query_one(&format!("SELECT count(*) FROM {}", imported.table), &[])
                .await
                .map_err(Error::postgres(format!(
                    "count the rows of {}",
                    imported.table
                )))?
                .get(0);
            imported.target_rows = count as u64;
            if imported.target_rows != imported.source_rows {
                return Err(refused(
                    file,
                    format!(
                        "{}: {} rows in SQLite, {} in the table after the copy",
                        imported.table, imported.source_rows, count
                    ),
                ));
            }
        }
        Ok(ImportReport {
            file: file.display().to_string(),
            copied_at: at,
            version: at,
            rows: copied.iter().map(|t| t.target_rows).sum(),
            tables: copied,
            only_in_sqlite: plan.only_in_sqlite,
            only_in_postgres: plan.only_in_postgres,
            defaulted_columns: plan.defaulted,
            excluded: plan.excluded,
            rechecked_foreign_keys: plan
                .set_aside
                .iter()
                .map(|k| format!("{}.{}", k.on, k.name))
                .collect(),
            elapsed: Duration::ZERO,
        })
    }
}

/// One table's rows from the reading thread into one `COPY` (one
/// statement, so that a table's references to its own rows are checked at
/// its end). Returns (rows read, rows written).
async fn copy_table(
    client: &Client,
    file: &Path,
    table: &Table,
    copy: &TableCopy,
    columns: &[String],
    receiver: &mut tokio::sync::mpsc::Receiver<Message>,
) -> Result<(u64, u64)> {
    let sql = format!("COPY {} ({}) FROM STDIN", table.quoted, columns.join(", "));
    let sink = client
        .copy_in::<_, bytes::Bytes>(&sql)
        .await
        .map_err(Error::postgres(format!(
            "start the copy into {}",
            table.quoted
        )))?;
    futures_util::pin_mut!(sink);
    // Which row each line of the COPY came from, to name it in an error.
    let mut rowids: Vec<i64> = Vec::new();
    let located = |e: tokio_postgres::Error, rowids: &[i64]| {
        let db = e.as_db_error();
        let line = db
            .and_then(|d| d.where_())
            .and_then(|w| w.split("line ").nth(1))
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse::<usize>().ok());
        let column = db.and_then(|d| d.column()).map(str::to_owned).or_else(|| {
            db.and_then(|d| d.where_())
                .and_then(|w| w.split("column ").nth(1))
                .and_then(|rest| rest.split(':').next())
                .map(str::to_owned)
        });
        let row = match line.and_then(|n| rowids.get(n.wrapping_sub(1))) {
            Some(rowid) => format!(", rowid {rowid}"),
            None => String::new(),
        };
        let column = column.map(|c| format!(", column {c}")).unwrap_or_default();
        refused(
            file,
            format!(
                "table {}{row}{column}: {}",
                copy.source,
                crate::pg::error::describe(&e)
            ),
        )
    };
    loop {
        match receiver.recv().await {
            Some(Message::Chunk {
                text,
                rowids: lines,
            }) => {
                rowids.extend(lines);
                if let Err(e) = sink.send(bytes::Bytes::from(text)).await {
                    return Err(located(e, &rowids));
                }
            }
            Some(Message::End { rows }) => {
                let written = sink
                    .as_mut()
                    .finish()
                    .await
                    .map_err(|e| located(e, &rowids))?;
                return Ok((rows, written));
            }
            Some(Message::Failed(failure)) => {
                let mut place = format!("table {}", failure.table);
                if let Some(rowid) = failure.rowid {
                    place.push_str(&format!(", rowid {rowid}"));
                }
                if let Some(column) = failure.column {
                    place.push_str(&format!(", column {column}"));
                }
                return Err(refused(file, format!("{place}: {}", failure.message)));
            }
            None => {
                return Err(refused(
                    file,
                    format!(
                        "the SQLite reader stopped before the end of {}",
                        copy.source
                    ),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_lists_what_it_left_out() {
        let report = ImportReport {
            file: "legacy.db".into(),
            copied_at: Some(3),
            version: Some(5),
            tables: vec![ImportedTable {
                table: "public.users".into(),
                source_rows: 2,
                target_rows: 2,
            }],
            only_in_sqlite: vec!["django_migrations".into()],
            only_in_postgres: vec![],
            defaulted_columns: vec!["users.nickname".into()],
            excluded: vec![],
            rechecked_foreign_keys: vec![],
            rows: 2,
            elapsed: Duration::from_millis(12),
        };
        let text = report.to_string();
        assert!(
            text.starts_with(
                "imported 2 rows from legacy.db at version 3; the database is at version 5"
            ),
            "{text}"
        );
        assert!(
            text.contains("only in SQLite (not copied): django_migrations"),
            "{text}"
        );
        assert!(
            text.contains("columns only in PostgreSQL (defaults): users.nickname"),
            "{text}"
        );
    }
}
