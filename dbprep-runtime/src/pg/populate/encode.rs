//! Fixture rows as the server takes them: COPY's text format, or a JSON
//! array for `json_populate_recordset`, written straight from the JSON text
//! of the file (no tree of values in between).

use std::borrow::Cow;

use serde_json::value::RawValue;

use crate::model::fixture::Row;

/// How a column's values are written in COPY's text format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ColumnKind {
    /// `json`/`jsonb`: any JSON value, as JSON text.
    Json,
    /// An array type: a JSON array becomes an array literal.
    Array,
    /// Anything else: a JSON scalar, as the text of its value.
    Scalar,
}

/// A value of the file, told apart by its first byte.
enum Raw<'a> {
    Null,
    String(Cow<'a, str>),
    /// A number or a boolean: its text is its value.
    Scalar(&'a str),
    Array(&'a str),
    Object,
}

impl<'a> Raw<'a> {
    fn of(value: &'a RawValue) -> Raw<'a> {
        let text = value.get();
        match text.as_bytes().first() {
            Some(b'n') => Raw::Null,
            Some(b'"') => Raw::String(unquote(text)),
            Some(b'[') => Raw::Array(text),
            Some(b'{') => Raw::Object,
            _ => Raw::Scalar(text),
        }
    }
}

/// The content of a JSON string literal, borrowed when it has no escapes.
fn unquote(literal: &str) -> Cow<'_, str> {
    let inner = &literal[1..literal.len() - 1];
    if inner.contains('\\') {
        // The fixture was checked when it was made: the literal is valid.
        Cow::Owned(serde_json::from_str(literal).unwrap_or_default())
    } else {
        Cow::Borrowed(inner)
    }
}

/// The value of `row` under `key`, looked up first where the group's first
/// row had it (rows of a group usually list their keys in one order).
fn value_of<'a>(row: &Row<'a>, key: &str, at: usize) -> Option<&'a RawValue> {
    match row.get(at) {
        Some((k, v)) if k == key => Some(*v),
        _ => row.iter().find(|(k, _)| k == key).map(|(_, v)| *v),
    }
}

/// Where each of `keys` sits in `row`.
fn positions(row: &Row<'_>, keys: &[String]) -> Vec<usize> {
    keys.iter()
        .map(|key| row.iter().position(|(k, _)| k == key).unwrap_or(0))
        .collect()
}

/// The rows `indices` of `rows`, columns `keys` of the kinds `kinds`, in
/// COPY's text format; `None` when a value can only be built by
/// `json_populate_recordset` (a composite, or an object or array where a
/// scalar is expected).
pub(super) fn copy_text(
    rows: &[Row<'_>],
    keys: &[String],
    kinds: &[ColumnKind],
    indices: &[usize],
) -> Option<Vec<u8>> {
    let first = rows.get(*indices.first()?)?;
    let at = positions(first, keys);
    let mut out = String::with_capacity(indices.len() * 64);
    let mut literal = String::new();
    for &i in indices {
        let row = &rows[i];
        for (n, (key, kind)) in keys.iter().zip(kinds).enumerate() {
            if n > 0 {
                out.push('\t');
            }
            let value = value_of(row, key, at[n])?;
            if *kind == ColumnKind::Json {
                push_escaped(&mut out, value.get());
                continue;
            }
            match (Raw::of(value), kind) {
                (Raw::Null, _) => out.push_str("\\N"),
                (Raw::String(s), _) => push_escaped(&mut out, &s),
                (Raw::Scalar(s), ColumnKind::Scalar) => push_escaped(&mut out, s),
                (Raw::Array(text), ColumnKind::Array) => {
                    literal.clear();
                    array_literal(text, &mut literal)?;
                    push_escaped(&mut out, &literal);
                }
                _ => return None,
            }
        }
        out.push('\n');
    }
    Some(out.into_bytes())
}

/// `text` with COPY's text-format escapes.
fn push_escaped(out: &mut String, text: &str) {
    if !text
        .bytes()
        .any(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r'))
    {
        return out.push_str(text);
    }
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// A JSON array as a PostgreSQL array literal: `["a", null, 1]` becomes
/// `{"a",NULL,"1"}`; `None` for an object inside.
fn array_literal(text: &str, out: &mut String) -> Option<()> {
    let items: Vec<&RawValue> = serde_json::from_str(text).ok()?;
    out.push('{');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let element = match Raw::of(item) {
            Raw::Null => {
                out.push_str("NULL");
                continue;
            }
            Raw::Array(inner) => {
                array_literal(inner, out)?;
                continue;
            }
            Raw::Object => return None,
            Raw::String(s) => s,
            Raw::Scalar(s) => Cow::Borrowed(s),
        };
        out.push('"');
        for c in element.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    }
    out.push('}');
    Some(())
}

/// The rows `indices` of `rows` as one JSON array of objects, for
/// `json_populate_recordset`.
pub(super) fn json_rows(rows: &[Row<'_>], indices: &[usize]) -> String {
    let mut out = String::from("[");
    for (n, &i) in indices.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        push_object(&mut out, rows[i].iter().map(|(k, v)| (k.as_ref(), *v)));
    }
    out.push(']');
    out
}

/// One JSON object from `(key, value)` pairs.
pub(super) fn push_object<'a>(
    out: &mut String,
    pairs: impl Iterator<Item = (&'a str, &'a RawValue)>,
) {
    out.push('{');
    for (n, (key, value)) in pairs.enumerate() {
        if n > 0 {
            out.push(',');
        }
        // A key is a string: serializing it cannot fail.
        out.push_str(&serde_json::to_string(key).unwrap_or_default());
        out.push(':');
        out.push_str(value.get());
    }
    out.push('}');
}

/// A value as PostgreSQL sees it in a key: `"1"` and `1` are the same
/// bigint or text.
pub(super) fn key_part(value: &RawValue) -> Cow<'_, str> {
    match Raw::of(value) {
        Raw::String(s) => s,
        _ => Cow::Borrowed(value.get()),
    }
}

/// Rows grouped by their set of keys, groups in order of first appearance.
pub(super) fn groups(rows: &[Row<'_>]) -> Vec<(Vec<String>, Vec<usize>)> {
    let mut groups: Vec<(Vec<String>, Vec<usize>)> = Vec::new();
    let mut last: Option<(usize, usize)> = None; // (group, a row of it)
    for (i, row) in rows.iter().enumerate() {
        // Most rows name the same keys in the same order as the row before.
        if let Some((group, previous)) = last {
            let same = rows[previous].len() == row.len()
                && rows[previous]
                    .iter()
                    .zip(row)
                    .all(|((a, _), (b, _))| a == b);
            if same {
                groups[group].1.push(i);
                last = Some((group, i));
                continue;
            }
        }
        let mut keys: Vec<String> = row.iter().map(|(k, _)| k.to_string()).collect();
        keys.sort();
        let group = match groups.iter().position(|(k, _)| *k == keys) {
            Some(group) => {
                groups[group].1.push(i);
                group
            }
            None => {
                groups.push((keys, vec![i]));
                groups.len() - 1
            }
        };
        last = Some((group, i));
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixture::parse;

    fn copy(json: &str, keys: &[&str], kinds: &[ColumnKind]) -> Option<String> {
        let content = parse("f.json", json).unwrap();
        let rows = &content.tables[0].rows;
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let indices: Vec<usize> = (0..rows.len()).collect();
        copy_text(rows, &keys, kinds, &indices).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn copy_text_escapes_and_converts() {
        use ColumnKind::*;
        let json = r#"{"t": [
            {"a": "tab\there\\", "n": 12345678901234567890.5, "l": ["x", null, "q\"", 2, [1]], "j": {"k": [1, 2]}},
            {"j": null, "l": null, "n": true, "a": null}
        ]}"#;
        assert_eq!(
            copy(json, &["a", "n", "l", "j"], &[Scalar, Scalar, Array, Json]).as_deref(),
            Some(
                "tab\\there\\\\\t12345678901234567890.5\t{\"x\",NULL,\"q\\\\\"\",\"2\",{\"1\"}}\t{\"k\": [1, 2]}\n\
                 \\N\ttrue\t\\N\tnull\n"
            )
        );
    }

    #[test]
    fn objects_where_a_scalar_is_expected_go_the_slow_way() {
        use ColumnKind::*;
        assert_eq!(copy(r#"{"t": [{"a": {"x": 1}}]}"#, &["a"], &[Scalar]), None);
        assert_eq!(
            copy(r#"{"t": [{"a": [{"x": 1}]}]}"#, &["a"], &[Array]),
            None
        );
    }

    #[test]
    fn json_rows_keep_the_file_text() {
        let content = parse(
            "f.json",
            r#"{"t": [{"a\"b": 1.50, "c": {"d": "é"}}, {"a\"b": 2}]}"#,
        )
        .unwrap();
        assert_eq!(
            json_rows(&content.tables[0].rows, &[0, 1]),
            r#"[{"a\"b":1.50,"c":{"d": "é"}},{"a\"b":2}]"#
        );
    }

    #[test]
    fn key_parts_see_strings_and_numbers_alike() {
        let content = parse("f.json", r#"{"t": [{"a": "1", "b": 1, "c": "\u0031"}]}"#).unwrap();
        let row = &content.tables[0].rows[0];
        let parts: Vec<_> = row.iter().map(|(_, v)| key_part(v)).collect();
        assert_eq!(parts, ["1", "1", "1"]);
    }
}
