//! Fixtures: seed data as JSON, checked the same way at compile time
//! (`embed_fixtures!`) and at run time ([`Fixture::from_path`]).
//!
//! A fixture is a JSON object whose keys are table names (optionally
//! schema-qualified, loaded in file order: parents first) and whose values
//! are arrays of row objects. Keys starting with `__` are directives:
//! `"__mode": "insert"` (default: rows whose primary key exists are
//! skipped) or `"update"` (existing rows are updated by primary key, the
//! others inserted).
//!
//! ```json
//! {
//!   "__mode": "insert",
//!   "domains": [{"name": "default"}],
//!   "users": [{"email": "admin@example.com", "domain_name": "default"}]
//! }
//! ```

use std::borrow::Cow;
use std::fmt;
use std::path::Path;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

use super::checksum::Checksum;
use super::normalize::normalize;

/// How a fixture treats rows that already exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Insert; rows whose primary key exists are skipped.
    #[default]
    Insert,
    /// Update rows whose primary key exists, insert the others.
    Update,
}

/// One table of a fixture, with its rows in file order.
#[derive(Debug, Clone)]
pub struct FixtureTable<'a> {
    /// The schema, when the key was `schema.table`.
    pub schema: Option<String>,
    /// The table.
    pub table: String,
    /// The rows: column → JSON text of the value, in the order written.
    pub rows: Vec<Row<'a>>,
}

impl FixtureTable<'_> {
    /// `schema.table` or `table`, as written in the file.
    pub fn display_name(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{schema}.{}", self.table),
            None => self.table.clone(),
        }
    }
}

/// The content of a fixture file, checked.
#[derive(Debug, Clone)]
pub struct FixtureContent<'a> {
    /// `__mode`.
    pub mode: Mode,
    /// The tables, in file order, borrowing the fixture's text.
    pub tables: Vec<FixtureTable<'a>>,
}

/// A problem with a fixture file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct FixtureError {
    /// The file.
    pub file: String,
    /// What is wrong, with its JSON path or line and column.
    pub message: String,
}

/// A pass over a JSON document that only refuses duplicate keys, at any
/// depth: serde_json keeps the last of two equal keys silently, and a
/// fixture that names a table or a column twice is a mistake.
struct NoDuplicateKeys;

impl<'de> Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Check;
        impl<'de> Visitor<'de> for Check {
            type Value = NoDuplicateKeys;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoDuplicateKeys, A::Error> {
                let mut keys: Vec<Cow<str>> = Vec::new();
                while let Some(Key(key)) = map.next_key()? {
                    if keys.contains(&key) {
                        return Err(de::Error::custom(format!("duplicate key {key:?}")));
                    }
                    keys.push(key);
                    map.next_value::<NoDuplicateKeys>()?;
                }
                Ok(NoDuplicateKeys)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NoDuplicateKeys, A::Error> {
                while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
                Ok(NoDuplicateKeys)
            }
            fn visit_bool<E>(self, _: bool) -> Result<NoDuplicateKeys, E> {
                Ok(NoDuplicateKeys)
            }
            fn visit_i64<E>(self, _: i64) -> Result<NoDuplicateKeys, E> {
                Ok(NoDuplicateKeys)
            }
            fn visit_u64<E>(self, _: u64) -> Result<NoDuplicateKeys, E> {
                Ok(NoDuplicateKeys)
            }
            fn visit_f64<E>(self, _: f64) -> Result<NoDuplicateKeys, E> {
                Ok(NoDuplicateKeys)
            }
            fn visit_str<E>(self, _: &str) -> Result<NoDuplicateKeys, E> {
                Ok(NoDuplicateKeys)
            }
            fn visit_unit<E>(self) -> Result<NoDuplicateKeys, E> {
                Ok(NoDuplicateKeys)
            }
        }
        deserializer.deserialize_any(Check)
    }
}

/// Parse and check fixture text (already normalized). `file` names the
/// file in messages.
pub fn parse<'a>(file: &str, text: &'a str) -> Result<FixtureContent<'a>, FixtureError> {
    serde_json::from_str::<NoDuplicateKeys>(text).map_err(|e| FixtureError {
        file: file.to_owned(),
        message: format!("invalid JSON: {e}"),
    })?;
    parse_without_duplicate_check(file, text)
}

/// A JSON value read as one of the shapes a fixture expects, or the kind of
/// value found instead (`"a number"`), for the message.
enum Shape<T> {
    Expected(T),
    Found(&'static str),
}

/// The scalar arms of the shape visitors: each is the wrong shape.
macro_rules! wrong_shapes {
    () => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Shape::Found("a boolean"))
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Shape::Found("a number"))
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Shape::Found("a number"))
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Shape::Found("a number"))
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(Shape::Found("a string"))
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(Shape::Found("null"))
        }
    };
}

/// An object key, borrowed from the text unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(key)))
            }
            fn visit_str<E>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key.to_owned())))
            }
            fn visit_string<E>(self, key: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key)))
            }
        }
        deserializer.deserialize_str(V)
    }
}

/// A row as read: `(column, value)` pairs in file order, each value the
/// JSON text of the file. Rows go from the text to the database without a
/// tree of values in between: numbers keep every digit, JSON documents
/// their formatting.
pub type Row<'a> = Vec<(Cow<'a, str>, &'a RawValue)>;

/// A table as read: its rows, each of the expected shape or not.
type Rows<'a> = Shape<Vec<Shape<Row<'a>>>>;

/// A row: an object read straight into `(column, value)` pairs.
struct RowShape<'a>(Shape<Row<'a>>);

impl<'de> Deserialize<'de> for RowShape<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Shape<Row<'de>>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a row object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut row = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(Key(key)) = map.next_key()? {
                    row.push((key, map.next_value::<&RawValue>()?));
                }
                Ok(Shape::Expected(row))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(Shape::Found("an array"))
            }
            wrong_shapes!();
        }
        deserializer.deserialize_any(V).map(RowShape)
    }
}

/// A table: an array of rows.
struct TableShape<'a>(Rows<'a>);

impl<'de> Deserialize<'de> for TableShape<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Rows<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of rows")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut rows = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(row) = seq.next_element::<RowShape>()? {
                    rows.push(row.0);
                }
                Ok(Shape::Expected(rows))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                de::IgnoredAny.visit_map(map)?;
                Ok(Shape::Found("an object"))
            }
            wrong_shapes!();
        }
        deserializer.deserialize_any(V).map(TableShape)
    }
}

/// One top-level entry: a directive's value, or a table.
enum Entry<'a> {
    Directive(Value),
    Table(Rows<'a>),
}

/// The whole document: its entries in file order.
struct DocumentShape<'a>(Shape<Vec<(Cow<'a, str>, Entry<'a>)>>);

impl<'de> Deserialize<'de> for DocumentShape<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Shape<Vec<(Cow<'de, str>, Entry<'de>)>>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of tables")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(Key(key)) = map.next_key()? {
                    let entry = if key.starts_with("__") {
                        Entry::Directive(map.next_value::<Value>()?)
                    } else {
                        Entry::Table(map.next_value::<TableShape>()?.0)
                    };
                    entries.push((key, entry));
                }
                Ok(Shape::Expected(entries))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(Shape::Found("an array"))
            }
            wrong_shapes!();
        }
        deserializer.deserialize_any(V).map(DocumentShape)
    }
}

/// [`parse`] without the pass that refuses duplicate keys, for text that
/// already went through [`parse`] (a [`Fixture`] is checked when made).
fn parse_without_duplicate_check<'a>(
    file: &str,
    text: &'a str,
) -> Result<FixtureContent<'a>, FixtureError> {
    let error = |message: String| FixtureError {
        file: file.to_owned(),
        message,
    };
    let document = serde_json::from_str::<DocumentShape>(text)
        .map_err(|e| error(format!("invalid JSON: {e}")))?;
    let top = match document.0 {
        Shape::Expected(entries) => entries,
        Shape::Found(kind) => {
            return Err(error(format!(
                "$: expected an object of tables, found {kind}"
            )))
        }
    };
    let mut mode = Mode::Insert;
    let mut tables = Vec::new();
    for (key, entry) in top {
        let value = match entry {
            Entry::Directive(value) => value,
            Entry::Table(table) => {
                let (schema, name) =
                    split_table_name(&key).map_err(|reason| error(format!("$.{key}: {reason}")))?;
                let items = match table {
                    Shape::Expected(items) => items,
                    Shape::Found(kind) => {
                        return Err(error(format!(
                            "$.{key}: expected an array of rows, found {kind}"
                        )))
                    }
                };
                let mut rows = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    let row = match item {
                        Shape::Expected(row) => row,
                        Shape::Found(kind) => {
                            return Err(error(format!(
                                "$.{key}[{i}]: expected an object, found {kind}"
                            )))
                        }
                    };
                    for (column, _) in &row {
                        if column.is_empty() || column.len() > 63 || column.contains('\0') {
                            return Err(error(format!(
                                "$.{key}[{i}].{column}: not a valid column name"
                            )));
                        }
                    }
                    rows.push(row);
                }
                tables.push(FixtureTable {
                    schema,
                    table: name,
                    rows,
                });
                continue;
            }
        };
        let directive = key.trim_start_matches("__");
        match (directive, &value) {
            ("mode", Value::String(m)) if m == "insert" => mode = Mode::Insert,
            ("mode", Value::String(m)) if m == "update" => mode = Mode::Update,
            ("mode", other) => return Err(error(format!("$.__mode: expected \"insert\" or \"update\", found {other}"))),
            _ => {
                return Err(error(format!(
                    "$.{key}: unknown directive; the only directive is \"__mode\" (keys starting with \"__\" are directives, not tables)"
                )))
            }
        }
    }
    Ok(FixtureContent { mode, tables })
}

/// Split `schema.table` (or `table`); each part must be a valid PostgreSQL
/// name (1 to 63 bytes, no NUL). Names are always quoted when used, so any
/// other character is allowed.
fn split_table_name(key: &str) -> Result<(Option<String>, String), String> {
    let check = |part: &str| {
        if part.is_empty() {
            Err("empty table or schema name".to_owned())
        } else if part.len() > 63 {
            Err(format!("name longer than 63 bytes: {part:?}"))
        } else if part.contains('\0') {
            Err("name contains a NUL character".to_owned())
        } else {
            Ok(part.to_owned())
        }
    };
    match key.split_once('.') {
        Some((schema, table)) => Ok((Some(check(schema)?), check(table)?)),
        None => Ok((None, check(key)?)),
    }
}

/// A fixture: a named, checksummed JSON file, embedded by
/// `embed_fixtures!` or read by [`Fixture::from_path`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixture {
    name: Cow<'static, str>,
    file: Cow<'static, str>,
    text: Cow<'static, str>,
    checksum: Checksum,
}

impl Fixture {
    /// Used by `embed_fixtures!`; not a stable API.
    #[doc(hidden)]
    pub const fn __embedded(
        name: &'static str,
        file: &'static str,
        text: &'static str,
        checksum: [u8; 32],
    ) -> Self {
        Fixture {
            name: Cow::Borrowed(name),
            file: Cow::Borrowed(file),
            text: Cow::Borrowed(text),
            checksum: Checksum::from_bytes(checksum),
        }
    }

    /// Read and check a fixture file at run time, with the same checks and
    /// checksum as `embed_fixtures!`. Its name is the file stem.
    ///
    /// # Errors
    ///
    /// A [`FixtureError`] naming the file and what is wrong.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Fixture, FixtureError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| FixtureError {
            file: file.clone(),
            message: format!("cannot read: {e}"),
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Fixture::from_text(name, file, &bytes)
    }

    /// Check fixture bytes (normalized here) and name them.
    ///
    /// # Errors
    ///
    /// A [`FixtureError`] naming `file` and what is wrong.
    pub fn from_text(name: String, file: String, bytes: &[u8]) -> Result<Fixture, FixtureError> {
        let text = normalize(bytes).map_err(|e| FixtureError {
            file: file.clone(),
            message: format!(
                "line {}: not valid UTF-8 (byte {}); save the file as UTF-8",
                e.line, e.offset
            ),
        })?;
        parse(&file, &text)?;
        let checksum = Checksum::of(text.as_bytes());
        Ok(Fixture {
            name: name.into(),
            file: file.into(),
            text: text.into(),
            checksum,
        })
    }

    /// The name (the file stem, e.g. `example-keypairs`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file it came from.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The normalized JSON text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The SHA-256 of the normalized text.
    pub fn checksum(&self) -> Checksum {
        self.checksum
    }

    /// The checked content: mode and tables in file order.
    ///
    /// # Errors
    ///
    /// Never for a fixture built by this crate (it was checked when made).
    pub fn content(&self) -> Result<FixtureContent<'_>, FixtureError> {
        parse_without_duplicate_check(&self.file, &self.text)
    }
}

/// The fixtures a binary embeds, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixtures {
    items: Cow<'static, [Fixture]>,
}

impl Fixtures {
    /// Used by `embed_fixtures!`; not a stable API. Sorted by name.
    #[doc(hidden)]
    pub const fn __embedded(items: &'static [Fixture]) -> Self {
        Fixtures {
            items: Cow::Borrowed(items),
        }
    }

    /// Read every `*.json` of a folder at run time.
    ///
    /// # Errors
    ///
    /// The first bad file.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Fixtures, FixtureError> {
        let dir = dir.as_ref();
        let sources = read_fixtures(dir, &dir.display().to_string())?;
        let items = sources
            .into_iter()
            .map(|s| Fixture {
                name: s.name.into(),
                file: s.file.into(),
                text: s.text.into(),
                checksum: s.checksum,
            })
            .collect::<Vec<_>>();
        Ok(Fixtures {
            items: items.into(),
        })
    }

    /// The fixture called `name`.
    pub fn get(&self, name: &str) -> Option<&Fixture> {
        self.items.iter().find(|f| f.name == name)
    }

    /// All fixtures, by name.
    pub fn iter(&self) -> std::slice::Iter<'_, Fixture> {
        self.items.iter()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// A fixture file read from a folder, for the macro.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixtureSource {
    /// The file stem.
    pub name: String,
    /// The file as shown in messages.
    pub file: String,
    /// The normalized text.
    pub text: String,
    /// Its checksum.
    pub checksum: Checksum,
    /// The real path (for `include_bytes!`).
    pub path: std::path::PathBuf,
}

/// Read and check every `*.json` of `dir` (shown as `shown_as`), sorted by
/// name.
///
/// # Errors
///
/// A missing folder or the first bad file.
pub fn read_fixtures(dir: &Path, shown_as: &str) -> Result<Vec<FixtureSource>, FixtureError> {
    let shown_as = shown_as.trim_end_matches('/');
    let entries = std::fs::read_dir(dir).map_err(|e| FixtureError {
        file: shown_as.to_owned(),
        message: if e.kind() == std::io::ErrorKind::NotFound {
            "fixtures folder not found (paths are relative to the crate's Cargo.toml); create it or fix the path".to_owned()
        } else {
            format!("cannot read: {e}")
        },
    })?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    let mut sources = Vec::new();
    for file_name in names {
        let path = dir.join(&file_name);
        let file = format!("{shown_as}/{file_name}");
        let bytes = std::fs::read(&path).map_err(|e| FixtureError {
            file: file.clone(),
            message: format!("cannot read: {e}"),
        })?;
        let name = file_name.trim_end_matches(".json").to_owned();
        let fixture = Fixture::from_text(name.clone(), file.clone(), &bytes)?;
        sources.push(FixtureSource {
            name,
            file,
            text: fixture.text.into_owned(),
            checksum: fixture.checksum,
            path: path.canonicalize().unwrap_or(path),
        });
    }
    Ok(sources)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_fixture_reads_its_mode_and_tables_and_names_a_bad_row() {
        let content = parse("f.json", r#"{"__mode": "update", "users": [{"id": 1}]}"#).unwrap();
        assert_eq!(content.mode, Mode::Update);
        assert_eq!(content.tables[0].table, "users");
        let error = parse("f.json", r#"{"users": [{"id": 1}, 2]}"#).unwrap_err();
        assert_eq!(
            error.to_string(),
            "f.json: $.users[1]: expected an object, found a number"
        );
    }

    use super::*;

    fn message(text: &str) -> String {
        parse("f.json", text).unwrap_err().message
    }

    #[test]
    fn keeps_table_and_column_order() {
        let c = parse("f.json", r#"{"b": [{"z": 1, "a": 2}], "s.a": []}"#).unwrap();
        assert_eq!(c.tables[0].table, "b");
        assert_eq!(
            c.tables[0].rows[0]
                .iter()
                .map(|(k, _)| k.as_ref())
                .collect::<Vec<_>>(),
            ["z", "a"]
        );
        assert_eq!(
            (c.tables[1].schema.as_deref(), c.tables[1].table.as_str()),
            (Some("s"), "a")
        );
    }

    #[test]
    fn numbers_keep_their_precision() {
        let c = parse(
            "f.json",
            r#"{"t": [{"n": 12345678901234567890.123456789012345678}]}"#,
        )
        .unwrap();
        assert_eq!(
            c.tables[0].rows[0][0].1.to_string(),
            "12345678901234567890.123456789012345678"
        );
    }

    #[test]
    fn refuses_what_it_cannot_load() {
        assert!(message("{")
            .starts_with("invalid JSON: EOF while parsing an object at line 1 column 1"));
        assert_eq!(
            message("[1]"),
            "$: expected an object of tables, found an array"
        );
        assert_eq!(
            message(r#"{"t": {"a": 1}}"#),
            "$.t: expected an array of rows, found an object"
        );
        assert_eq!(
            message(r#"{"t": [], "t": []}"#),
            "invalid JSON: duplicate key \"t\" at line 1 column 13"
        );
        assert_eq!(
            message(r#"{"t": [{"a": 1, "a": 2}]}"#),
            "invalid JSON: duplicate key \"a\" at line 1 column 19"
        );
        assert_eq!(message(r#"{".t": []}"#), "$..t: empty table or schema name");
        assert!(message(r#"{"__modes": "x"}"#).starts_with("$.__modes: unknown directive"));
        assert_eq!(
            message(r#"{"__mode": "upsert"}"#),
            "$.__mode: expected \"insert\" or \"update\", found \"upsert\""
        );
    }
}
