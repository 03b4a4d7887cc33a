//! Quoting for the SQL dbprep writes itself.
//!
//! `simple_query` takes no parameters, so history values travel as
//! literals: every one goes through [`literal`], every name through
//! [`ident`].

/// A string literal that reads the same whatever
/// `standard_conforming_strings` says: `E'…'` with `\` and `'` escaped.
pub(crate) fn literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 3);
    out.push_str("E'");
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A quoted identifier: `"name"` with `"` doubled.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The statement that sets `search_path` to `path` (for the transaction
/// alone with `local`). `SET search_path = '…'` would take the whole list
/// for one schema name: `set_config` takes the setting's text as it is.
pub(crate) fn set_search_path_sql(path: &str, local: bool) -> String {
    format!(
        "SELECT pg_catalog.set_config('search_path', {}, {local})",
        literal(path)
    )
}

/// A `bytea` literal from raw bytes (an `E''` string, read the same
/// whatever `standard_conforming_strings` says).
pub(crate) fn bytea(bytes: &[u8]) -> String {
    format!("E'\\\\x{}'::bytea", hex(bytes))
}

/// Bytes as lowercase hex digits.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = std::fmt::Write::write_fmt(&mut text, format_args!("{b:02x}"));
    }
    text
}

/// The statement that moves the sequence of `column` (serial or identity)
/// of the table `quoted` past the largest value the table holds, and
/// leaves it alone when the table is empty.
pub(crate) fn advance_sequence_sql(quoted: &str, column: &str) -> String {
    format!(
        "SELECT pg_catalog.setval(pg_catalog.pg_get_serial_sequence({}, {}), m) FROM (SELECT max({}) AS m FROM {quoted}) AS x WHERE m IS NOT NULL",
        literal(quoted),
        literal(column),
        ident(column),
    )
}

/// The value of a `simple_query` text column as an `Option<&str>`.
pub(crate) fn column(row: &tokio_postgres::SimpleQueryRow, index: usize) -> Option<&str> {
    row.try_get(index).ok().flatten()
}

/// The rows of a `simple_query` answer.
pub(crate) fn rows(
    messages: Vec<tokio_postgres::SimpleQueryMessage>,
) -> Vec<tokio_postgres::SimpleQueryRow> {
    messages
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_literal_escapes_quotes_and_backslashes() {
        assert_eq!(literal(r"it's a \ test"), r"E'it''s a \\ test'");
    }

    #[test]
    fn an_identifier_doubles_its_quotes() {
        assert_eq!(
            ident(r#"users"; DROP TABLE x; --"#),
            r#""users""; DROP TABLE x; --""#
        );
    }

    #[test]
    fn bytea_is_hex() {
        assert_eq!(bytea(&[0, 0xab]), r"E'\\x00ab'::bytea");
    }
}
