//! The SQLite side of an import: the file opened read-only, its tables and
//! columns, and its rows turned into COPY text on a thread of their own,
//! in chunks, so that reading and converting overlap the server's writing
//! and memory stays bounded whatever the table's size.

use std::path::{Path, PathBuf};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::mpsc;

use super::convert::{convert, push_field, Context, Target};

/// A table of the SQLite file.
#[derive(Debug, Clone)]
pub(crate) struct SourceTable {
    pub name: String,
    pub columns: Vec<SourceColumn>,
    /// Whether rows have a `rowid` (not a `WITHOUT ROWID` table).
    pub has_rowid: bool,
}

/// A column of a SQLite table.
#[derive(Debug, Clone)]
pub(crate) struct SourceColumn {
    pub name: String,
    /// The declared type, as written (SQLite enforces none of it).
    pub declared: String,
}

/// Why the SQLite file could not be read.
#[derive(Debug)]
pub(crate) struct SourceError {
    pub file: PathBuf,
    pub message: String,
}

/// Open `path` read-only: it must exist, and is never written.
pub(crate) fn open(path: &Path) -> Result<Connection, SourceError> {
    let error = |message: String| SourceError {
        file: path.to_owned(),
        message,
    };
    if !path.is_file() {
        return Err(error("no such file".to_owned()));
    }
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| error(e.to_string()))?;
    // Opening does not read the file: this does, and says "file is not a
    // database" for one that is not.
    connection
        .query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
        .map_err(|e| error(e.to_string()))?;
    Ok(connection)
}

/// The file's tables (not SQLite's own, not views or virtual tables), in
/// name order.
pub(crate) fn tables(
    connection: &Connection,
    path: &Path,
) -> Result<Vec<SourceTable>, SourceError> {
    let error = |e: rusqlite::Error| SourceError {
        file: path.to_owned(),
        message: e.to_string(),
    };
    let mut statement = connection
        .prepare(
            "SELECT name, wr FROM pragma_table_list WHERE schema = 'main' AND type = 'table' \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
        )
        .map_err(error)?;
    let list: Vec<(String, bool)> = statement
        .query_map([], |row| Ok((row.get(0)?, row.get::<_, i64>(1)? == 0)))
        .map_err(error)?
        .collect::<Result<_, _>>()
        .map_err(error)?;
    let mut columns = connection
        .prepare("SELECT name, type FROM pragma_table_info(?1) ORDER BY cid")
        .map_err(error)?;
    list.into_iter()
        .map(|(name, has_rowid)| {
            let list = columns
                .query_map([&name], |row| {
                    Ok(SourceColumn {
                        name: row.get(0)?,
                        declared: row.get(1)?,
                    })
                })
                .map_err(error)?
                .collect::<Result<_, _>>()
                .map_err(error)?;
            Ok(SourceTable {
                name,
                columns: list,
                has_rowid,
            })
        })
        .collect()
}

/// A name quoted for SQLite.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// What to read of one table, and how to write each column.
#[derive(Debug, Clone)]
pub(crate) struct TableCopy {
    /// The SQLite table.
    pub source: String,
    pub has_rowid: bool,
    pub columns: Vec<CopyColumn>,
}

/// A SQLite column and the target column it goes into.
#[derive(Debug, Clone)]
pub(crate) struct CopyColumn {
    /// The SQLite column.
    pub source: String,
    /// How its values are written.
    pub target: Target,
    /// The target column's name.
    pub name: String,
    /// The target column's type, for messages.
    pub type_name: String,
}

/// What the reading thread sends.
pub(crate) enum Message {
    /// COPY text of some rows, and the `rowid` of each line (its number
    /// in the table when it has none).
    Chunk { text: Vec<u8>, rowids: Vec<i64> },
    /// The table is done: how many rows were read.
    End { rows: u64 },
    /// A value that cannot convert, or a read that failed.
    Failed(ValueError),
}

/// A value that cannot be written, or a failed read.
#[derive(Debug)]
pub(crate) struct ValueError {
    pub table: String,
    pub rowid: Option<i64>,
    pub column: Option<String>,
    pub message: String,
}

/// Read `tables` of the file at `path` in order, on a thread of its own,
/// sending chunks of about `chunk_bytes` to the returned channel; a full
/// channel holds the thread back, so at most a few chunks wait.
pub(crate) fn read(
    path: PathBuf,
    tables: Vec<TableCopy>,
    context: Context,
    chunk_bytes: usize,
) -> mpsc::Receiver<Message> {
    let (sender, receiver) = mpsc::channel(4);
    std::thread::spawn(move || {
        let failed = |table: &str, message: String| {
            Message::Failed(ValueError {
                table: table.to_owned(),
                rowid: None,
                column: None,
                message,
            })
        };
        let connection = match open(&path) {
            Ok(c) => c,
            Err(e) => {
                let _ = sender.blocking_send(failed("", e.message));
                return;
            }
        };
        for table in &tables {
            if let Err(message) = read_table(&connection, table, context, chunk_bytes, &sender) {
                // The receiver may be gone (the import failed on its side).
                let _ = sender.blocking_send(message);
                return;
            }
        }
    });
    receiver
}

/// One table's rows, chunk by chunk; `Err` carries the failure to send.
fn read_table(
    connection: &Connection,
    table: &TableCopy,
    context: Context,
    chunk_bytes: usize,
    sender: &mpsc::Sender<Message>,
) -> Result<(), Message> {
    let read_error = |e: rusqlite::Error| {
        Message::Failed(ValueError {
            table: table.source.clone(),
            rowid: None,
            column: None,
            message: format!("cannot read it from SQLite: {e}"),
        })
    };
    let list: Vec<String> = table.columns.iter().map(|c| quote(&c.source)).collect();
    let rowid = if table.has_rowid { "rowid" } else { "NULL" };
    let order = if table.has_rowid {
        " ORDER BY rowid"
    } else {
        ""
    };
    let sql = format!(
        "SELECT {rowid}, {} FROM {}{order}",
        list.join(", "),
        quote(&table.source)
    );
    let mut statement = connection.prepare(&sql).map_err(read_error)?;
    let mut rows = statement.query([]).map_err(read_error)?;
    let (mut text, mut rowids) = (Vec::with_capacity(chunk_bytes + 4096), Vec::new());
    let mut count: u64 = 0;
    while let Some(row) = rows.next().map_err(read_error)? {
        count += 1;
        let rowid = row.get::<_, Option<i64>>(0).map_err(read_error)?;
        let rowid = rowid.unwrap_or(count as i64);
        for (i, column) in table.columns.iter().enumerate() {
            let value = row.get_ref(i + 1).map_err(read_error)?;
            let converted = convert(value, column.target, context).map_err(|reason| {
                Message::Failed(ValueError {
                    table: table.source.clone(),
                    rowid: Some(rowid),
                    column: Some(column.source.clone()),
                    message: format!(
                        "{} cannot become {}: {reason}",
                        shown(value),
                        column.type_name
                    ),
                })
            })?;
            if i > 0 {
                text.push(b'\t');
            }
            push_field(&mut text, converted.as_deref());
        }
        text.push(b'\n');
        rowids.push(rowid);
        if text.len() >= chunk_bytes {
            let chunk = Message::Chunk {
                text: std::mem::replace(&mut text, Vec::with_capacity(chunk_bytes + 4096)),
                rowids: std::mem::take(&mut rowids),
            };
            if sender.blocking_send(chunk).is_err() {
                return Ok(());
            }
        }
    }
    if !text.is_empty() {
        let _ = sender.blocking_send(Message::Chunk { text, rowids });
    }
    let _ = sender.blocking_send(Message::End { rows: count });
    Ok(())
}

/// A value as a message shows it: text quoted and cut at 60 characters.
pub(crate) fn shown(value: ValueRef<'_>) -> String {
    match value {
        ValueRef::Null => "NULL".to_owned(),
        ValueRef::Integer(i) => format!("the integer {i}"),
        ValueRef::Real(r) => format!("the real {r}"),
        ValueRef::Text(bytes) => {
            let text = String::from_utf8_lossy(bytes);
            let cut: String = text.chars().take(60).collect();
            if cut.len() < text.len() {
                format!("the text {cut:?}…")
            } else {
                format!("the text {cut:?}")
            }
        }
        ValueRef::Blob(bytes) => format!("a blob of {} bytes", bytes.len()),
    }
}
