//! SQLite values as the target column's type takes them, in COPY's text
//! format. The *target* decides: SQLite stores whatever it is given (a
//! column declared `BOOLEAN` holds 0 and 1, one declared `DATETIME` holds
//! text, web frameworks keep UUIDs as 32 hex digits), so each value is
//! turned into text PostgreSQL reads as the column's type, or refused with
//! the reason.
//!
//! What the server can judge itself (a malformed date, an unknown enum
//! label) is passed through as text: its error is traced back to the row.

use std::borrow::Cow;

use rusqlite::types::ValueRef;

use crate::pg::sql::hex;

/// How a target column's values are written, from its type (a domain by
/// its base type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Boolean,
    /// `smallint`, `integer`, `bigint`, `oid`.
    Integer,
    /// `real`, `double precision`.
    Float,
    /// `numeric`, `money`.
    Numeric,
    /// `text`, `varchar`, `char`, `name`, `citext`.
    Text,
    Bytea,
    Uuid,
    /// `json`, `jsonb`.
    Json,
    TimestampTz,
    Timestamp,
    Date,
    /// `time`, `timetz`.
    Time,
    Interval,
    /// An array: JSON array text becomes an array literal.
    Array,
    /// Anything else (`inet`, `cidr`, `macaddr`, enums, …): the text as
    /// written, for the type's own input function.
    Other,
}

impl Target {
    /// The target of a column whose type (or domain's base type) is
    /// `type_name` in `pg_catalog`, of category `category` (`typcategory`).
    pub(crate) fn of(type_name: &str, category: &str) -> Target {
        if category == "A" {
            return Target::Array;
        }
        match type_name {
            "bool" => Target::Boolean,
            "int2" | "int4" | "int8" | "oid" => Target::Integer,
            "float4" | "float8" => Target::Float,
            "numeric" | "money" => Target::Numeric,
            "text" | "varchar" | "bpchar" | "name" | "citext" => Target::Text,
            "bytea" => Target::Bytea,
            "uuid" => Target::Uuid,
            "json" | "jsonb" => Target::Json,
            "timestamptz" => Target::TimestampTz,
            "timestamp" => Target::Timestamp,
            "date" => Target::Date,
            "time" | "timetz" => Target::Time,
            "interval" => Target::Interval,
            _ => Target::Other,
        }
    }
}

/// Settings of a conversion.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context {
    /// Whether naive date-times are read as UTC (the default); else in the
    /// `--timezone` the transaction sets, and a UTC mark (`Z`) on a value
    /// for a `timestamp` column cannot be dropped.
    pub naive_is_utc: bool,
}

/// `value` as the text PostgreSQL reads for `target`; `None` for NULL; an
/// error says why it cannot be.
pub(crate) fn convert<'a>(
    value: ValueRef<'a>,
    target: Target,
    context: Context,
) -> Result<Option<Cow<'a, str>>, String> {
    use Target as T;
    let text = match value {
        ValueRef::Null => return Ok(None),
        ValueRef::Integer(i) => integer(i, target)?,
        ValueRef::Real(r) => real(r, target)?,
        ValueRef::Text(bytes) => {
            let text =
                std::str::from_utf8(bytes).map_err(|_| "the text is not valid UTF-8".to_owned())?;
            match target {
                T::Uuid => Cow::Owned(uuid_text(text)?),
                T::Timestamp => timestamp_text(text, context)?,
                T::Array => array_text(text)?,
                T::Bytea => Cow::Owned(bytea_text(text.as_bytes())),
                _ => Cow::Borrowed(text),
            }
        }
        ValueRef::Blob(bytes) => match target {
            T::Bytea => Cow::Owned(bytea_text(bytes)),
            T::Uuid if bytes.len() == 16 => Cow::Owned(uuid_of_bytes(bytes)),
            T::Text | T::Json | T::Other => match std::str::from_utf8(bytes) {
                Ok(text) => Cow::Borrowed(text),
                Err(_) => return Err("a blob that is not UTF-8 text".to_owned()),
            },
            _ => return Err(format!("a blob of {} bytes", bytes.len())),
        },
    };
    Ok(Some(text))
}

/// An integer for `target`.
fn integer(i: i64, target: Target) -> Result<Cow<'static, str>, String> {
    use Target as T;
    Ok(Cow::Owned(match target {
        T::Boolean => match i {
            0 => "f".to_owned(),
            1 => "t".to_owned(),
            _ => return Err("an integer other than 0 or 1".to_owned()),
        },
        T::Integer | T::Float | T::Numeric | T::Text | T::Json | T::Other => i.to_string(),
        // Unix time: what `strftime('%s')` and most programs store.
        T::TimestampTz => format!("{}+00", civil_date_time(i)),
        T::Timestamp => civil_date_time(i),
        T::Date => civil_date_time(i)[..10].to_owned(),
        T::Interval => format!("{i} seconds"),
        T::Bytea | T::Uuid | T::Time | T::Array => return Err("an integer".to_owned()),
    }))
}

/// A floating-point number for `target`. Rust prints the shortest text
/// that reads back as the same double, so `numeric` gets every digit the
/// value has, and no invented ones.
fn real(r: f64, target: Target) -> Result<Cow<'static, str>, String> {
    use Target as T;
    let exact = || {
        if r.is_nan() {
            "NaN".to_owned()
        } else if r.is_infinite() {
            if r > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
        } else {
            r.to_string()
        }
    };
    Ok(Cow::Owned(match target {
        T::Float | T::Numeric | T::Text | T::Other => exact(),
        T::Json if r.is_finite() => exact(),
        T::Boolean if r == 0.0 || r == 1.0 => if r == 1.0 { "t" } else { "f" }.to_owned(),
        T::Integer if r.fract() == 0.0 && r.abs() < 9.2e18 => format!("{r:.0}"),
        T::Integer => return Err("a fraction, which an integer column would round".to_owned()),
        T::Interval if r.is_finite() => format!("{} seconds", exact()),
        _ => return Err("a real number".to_owned()),
    }))
}

/// 32 hex digits (no dashes, as Django and others store UUIDs in SQLite)
/// with their dashes; a UUID already written out as is.
fn uuid_text(text: &str) -> Result<String, String> {
    let t = text.trim();
    if t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(dashed(t))
    } else if t.len() == 36 || (t.len() == 38 && t.starts_with('{')) {
        Ok(t.to_owned())
    } else {
        Err("not a UUID (32 hex digits, or 36 characters with dashes)".to_owned())
    }
}

/// A 16-byte blob as a UUID.
fn uuid_of_bytes(bytes: &[u8]) -> String {
    dashed(&hex(bytes))
}

/// 32 hex digits in a UUID's groups: 8-4-4-4-12.
fn dashed(digits: &str) -> String {
    let d = digits;
    format!(
        "{}-{}-{}-{}-{}",
        &d[..8],
        &d[8..12],
        &d[12..16],
        &d[16..20],
        &d[20..]
    )
}

/// A date-time for a `timestamp without time zone` column. PostgreSQL
/// ignores a zone written on such a value without a word, which would
/// shift it silently: a UTC mark is dropped when naive values are UTC,
/// any other zone is refused.
fn timestamp_text(text: &str, context: Context) -> Result<Cow<'_, str>, String> {
    let t = text.trim_end();
    if let Some(naive) = t.strip_suffix(['Z', 'z']) {
        return if context.naive_is_utc {
            Ok(Cow::Borrowed(naive))
        } else {
            Err("a UTC time (Z) for a timestamp without time zone while --timezone is not UTC; use timestamptz, or import with UTC".to_owned())
        };
    }
    // An offset after the time of day: `…12:00:00+02:00`, `…12:00:00-0500`.
    if let Some(at) = t.rfind(['+', '-']) {
        let (time, offset) = t.split_at(at);
        let digits = &offset[1..];
        if time.contains(':')
            && !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit() || b == b':')
        {
            if digits.bytes().all(|b| b == b'0' || b == b':') && context.naive_is_utc {
                return Ok(Cow::Borrowed(time));
            }
            return Err(format!(
                "a time with the offset {offset}, for a timestamp without time zone (PostgreSQL would drop the offset); use timestamptz"
            ));
        }
    }
    Ok(Cow::Borrowed(text))
}

/// A JSON array as an array literal (`["a", null]` → `{"a",NULL}`); an
/// array literal as written.
fn array_text(text: &str) -> Result<Cow<'_, str>, String> {
    let t = text.trim();
    if t.starts_with('{') {
        return Ok(Cow::Borrowed(text));
    }
    let value: serde_json::Value = serde_json::from_str(t)
        .map_err(|_| "neither a JSON array nor an array literal".to_owned())?;
    if !value.is_array() {
        return Err("JSON that is not an array".to_owned());
    }
    let mut literal = String::new();
    array_literal(&value, &mut literal)?;
    Ok(Cow::Owned(literal))
}

fn array_literal(value: &serde_json::Value, out: &mut String) -> Result<(), String> {
    use serde_json::Value as V;
    match value {
        V::Array(items) => {
            out.push('{');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                array_literal(item, out)?;
            }
            out.push('}');
        }
        V::Null => out.push_str("NULL"),
        V::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        V::Number(n) => out.push_str(&n.to_string()),
        V::String(s) => {
            out.push('"');
            for c in s.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
        V::Object(_) => return Err("a JSON object inside the array".to_owned()),
    }
    Ok(())
}

/// `bytea`'s hex input: `\x0a1b…`.
fn bytea_text(bytes: &[u8]) -> String {
    format!("\\x{}", hex(bytes))
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` in UTC (the proleptic Gregorian
/// calendar, as PostgreSQL counts).
fn civil_date_time(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

/// Append `text` to a COPY line as one field, escaped for the text format.
pub(crate) fn push_field(line: &mut Vec<u8>, text: Option<&str>) {
    let Some(text) = text else {
        line.extend_from_slice(b"\\N");
        return;
    };
    for &b in text.as_bytes() {
        match b {
            b'\\' => line.extend_from_slice(b"\\\\"),
            b'\n' => line.extend_from_slice(b"\\n"),
            b'\r' => line.extend_from_slice(b"\\r"),
            b'\t' => line.extend_from_slice(b"\\t"),
            _ => line.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UTC: Context = Context { naive_is_utc: true };

    fn text(value: ValueRef<'_>, target: Target) -> Result<Option<String>, String> {
        convert(value, target, UTC).map(|v| v.map(Cow::into_owned))
    }

    fn ok(value: ValueRef<'_>, target: Target) -> String {
        text(value, target).unwrap().unwrap()
    }

    #[test]
    fn booleans_from_integers_reals_and_text() {
        assert_eq!(ok(ValueRef::Integer(0), Target::Boolean), "f");
        assert_eq!(ok(ValueRef::Integer(1), Target::Boolean), "t");
        assert_eq!(ok(ValueRef::Real(1.0), Target::Boolean), "t");
        assert_eq!(ok(ValueRef::Text(b"true"), Target::Boolean), "true");
        assert!(text(ValueRef::Integer(2), Target::Boolean).is_err());
    }

    #[test]
    fn numbers_keep_every_digit() {
        assert_eq!(ok(ValueRef::Real(0.1), Target::Numeric), "0.1");
        assert_eq!(
            ok(ValueRef::Integer(i64::MAX), Target::Numeric),
            "9223372036854775807"
        );
        assert_eq!(ok(ValueRef::Real(1e300), Target::Numeric).len(), 301);
        assert_eq!(ok(ValueRef::Real(f64::NAN), Target::Float), "NaN");
        assert_eq!(ok(ValueRef::Real(3.0), Target::Integer), "3");
        assert!(text(ValueRef::Real(3.5), Target::Integer).is_err());
    }

    #[test]
    fn uuids_with_and_without_dashes_and_as_blobs() {
        assert_eq!(
            ok(
                ValueRef::Text(b"0123456789abcdef0123456789ABCDEF"),
                Target::Uuid
            ),
            "01234567-89ab-cdef-0123-456789ABCDEF"
        );
        assert_eq!(
            ok(ValueRef::Blob(&[0xab; 16]), Target::Uuid),
            "abababab-abab-abab-abab-abababababab"
        );
        assert!(text(ValueRef::Text(b"not a uuid"), Target::Uuid).is_err());
    }

    #[test]
    fn unix_times_and_zones() {
        assert_eq!(
            ok(ValueRef::Integer(0), Target::Timestamp),
            "1970-01-01 00:00:00"
        );
        assert_eq!(
            ok(ValueRef::Integer(951_782_400), Target::TimestampTz),
            "2000-02-29 00:00:00+00"
        );
        assert_eq!(ok(ValueRef::Integer(-86_400), Target::Date), "1969-12-31");
        assert_eq!(
            ok(
                ValueRef::Text(b"2024-05-06T07:08:09.123Z"),
                Target::Timestamp
            ),
            "2024-05-06T07:08:09.123"
        );
        assert_eq!(
            ok(
                ValueRef::Text(b"2024-05-06 07:08:09+00:00"),
                Target::Timestamp
            ),
            "2024-05-06 07:08:09"
        );
        assert!(text(
            ValueRef::Text(b"2024-05-06 07:08:09+02:00"),
            Target::Timestamp
        )
        .is_err());
        // A date alone keeps its dashes.
        assert_eq!(
            ok(ValueRef::Text(b"2024-05-06"), Target::Timestamp),
            "2024-05-06"
        );
        let paris = Context {
            naive_is_utc: false,
        };
        assert!(convert(
            ValueRef::Text(b"2024-05-06 07:08:09Z"),
            Target::Timestamp,
            paris
        )
        .is_err());
    }

    #[test]
    fn arrays_from_json() {
        assert_eq!(
            ok(ValueRef::Text(br#"["a", "b\"c", null, 1]"#), Target::Array),
            r#"{"a","b\"c",NULL,1}"#
        );
        assert_eq!(
            ok(ValueRef::Text(b"[[1,2],[3,4]]"), Target::Array),
            "{{1,2},{3,4}}"
        );
        assert_eq!(ok(ValueRef::Text(b"{1,2}"), Target::Array), "{1,2}");
        assert!(text(ValueRef::Text(b"[{}]"), Target::Array).is_err());
    }

    #[test]
    fn blobs_into_bytea_and_text() {
        assert_eq!(ok(ValueRef::Blob(&[0, 255]), Target::Bytea), "\\x00ff");
        assert_eq!(ok(ValueRef::Blob(b"abc"), Target::Text), "abc");
        assert!(text(ValueRef::Blob(&[0xff]), Target::Text).is_err());
        assert!(text(ValueRef::Blob(&[1]), Target::Integer).is_err());
    }

    #[test]
    fn copy_fields_are_escaped() {
        let mut line = Vec::new();
        push_field(&mut line, Some("a\\b\tc\nd\re"));
        line.push(b'\t');
        push_field(&mut line, None);
        assert_eq!(line, b"a\\\\b\\tc\\nd\\re\t\\N");
    }
}
