//! The tools a database is adopted from: where each keeps its history, how
//! to read it, and how each checksums a migration file, recomputed from
//! the embedded text.
//!
//! dbprep embeds a file normalized (no byte-order mark, LF line ends); the
//! other tools hash the file as it was read. Where their hash sees line
//! ends or the mark, each form the file may have had on disk is tried:
//! LF or CRLF, with or without the mark.

use std::hash::{Hash, Hasher};

use sha2::{Digest, Sha384};

use crate::model::migration::Migration;
use crate::pg::sql::{column, hex, ident};

/// A migration tool whose history dbprep can take over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tool {
    /// sqlx (`_sqlx_migrations`: the SHA-384 of each file).
    Sqlx,
    /// refinery (`refinery_schema_history`: a SipHash-1-3 of name, version
    /// and SQL).
    Refinery,
    /// diesel (`__diesel_schema_migrations`: versions only, no checksum).
    Diesel,
    /// Flyway (`flyway_schema_history`: a CRC-32 of each file's lines).
    Flyway,
}

impl Tool {
    /// Every tool, in the order help texts list them.
    pub const ALL: [Tool; 4] = [Tool::Sqlx, Tool::Refinery, Tool::Diesel, Tool::Flyway];

    /// The tool's name as the command line spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Tool::Sqlx => "sqlx",
            Tool::Refinery => "refinery",
            Tool::Diesel => "diesel",
            Tool::Flyway => "flyway",
        }
    }

    /// The history table the tool creates unless configured otherwise.
    pub fn default_table(self) -> &'static str {
        match self {
            Tool::Sqlx => "_sqlx_migrations",
            Tool::Refinery => "refinery_schema_history",
            Tool::Diesel => "__diesel_schema_migrations",
            Tool::Flyway => "flyway_schema_history",
        }
    }

    /// The query that reads the table `qualified`, each value as text in
    /// the columns [`ForeignRow::read`] expects.
    pub(super) fn select_sql(self, qualified: &str) -> String {
        match self {
            Tool::Sqlx => format!(
                "SELECT version::text, version::text, description, success::text, \
                 pg_catalog.encode(checksum, 'hex'), installed_on::timestamptz::text, \
                 (execution_time / 1000000)::text, NULL, 'SQL' FROM {qualified} ORDER BY version"
            ),
            Tool::Refinery => format!(
                "SELECT version::text, version::text, name, 'true', checksum, NULL, '0', NULL, 'SQL' \
                 FROM {qualified} ORDER BY version"
            ),
            Tool::Diesel => format!(
                "SELECT version, version, '', 'true', NULL, run_on::timestamptz::text, '0', NULL, 'SQL' \
                 FROM {qualified} ORDER BY version"
            ),
            Tool::Flyway => format!(
                "SELECT installed_rank::text, version, description, success::text, checksum::text, \
                 installed_on::timestamptz::text, execution_time::text, installed_by, type \
                 FROM {qualified} ORDER BY installed_rank"
            ),
        }
    }
}

impl std::fmt::Display for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tool name that is not one of [`Tool::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tool {0:?}: expected sqlx, refinery, diesel or flyway")]
pub struct UnknownTool(pub String);

impl std::str::FromStr for Tool {
    type Err = UnknownTool;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tool::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownTool(s.to_owned()))
    }
}

/// What one row of another tool's history says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Entry {
    /// A migration that ran.
    Applied,
    /// Flyway's baseline: every version up to it counts as applied.
    Baseline,
    /// Flyway's undo, or a row `flyway repair` marked deleted: the version
    /// no longer counts.
    Undone,
    /// A row that records no migration (Flyway's schema creation marker).
    Marker,
    /// Flyway's repeatable migration (no version).
    Repeatable,
}

/// One row of another tool's history, as dbprep needs it.
#[derive(Debug, Clone)]
pub(super) struct ForeignRow {
    /// The version as the tool wrote it (`"3"`, `"1.1"`, `"20190226002946"`).
    pub label: String,
    /// The version as a dbprep version, when it is a whole number.
    pub version: Option<i64>,
    /// The tool's description of it.
    pub name: String,
    pub success: bool,
    /// The checksum as stored (sqlx: hex; refinery, Flyway: a number).
    pub checksum: Option<String>,
    /// When it was applied (`timestamptz` text), where the tool records it.
    pub applied_at: Option<String>,
    pub execution_ms: i64,
    /// Who applied it, where the tool records it.
    pub applied_by: Option<String>,
    pub entry: Entry,
}

impl ForeignRow {
    /// One row of [`Tool::select_sql`]'s answer.
    pub(super) fn read(tool: Tool, row: &tokio_postgres::SimpleQueryRow) -> ForeignRow {
        let text = |i| column(row, i).map(str::to_owned);
        let label = text(1).unwrap_or_default();
        let kind = text(8).unwrap_or_default();
        let entry = match (tool, kind.as_str()) {
            (Tool::Flyway, "BASELINE") => Entry::Baseline,
            (Tool::Flyway, "UNDO_SQL" | "UNDO_JDBC" | "UNDO_SCRIPT" | "DELETE") => Entry::Undone,
            (Tool::Flyway, "SCHEMA") => Entry::Marker,
            (Tool::Flyway, _) if text(1).is_none() => Entry::Repeatable,
            _ => Entry::Applied,
        };
        // diesel writes the folder's digits, dashes dropped, as dbprep does.
        let version = label.parse::<i64>().ok();
        ForeignRow {
            version,
            name: text(2).unwrap_or_default(),
            success: text(3).as_deref() == Some("t") || text(3).as_deref() == Some("true"),
            checksum: text(4),
            applied_at: text(5),
            execution_ms: text(6).and_then(|t| t.parse().ok()).unwrap_or(0),
            applied_by: text(7),
            entry,
            label,
        }
    }
}

/// Whether `stored`, the checksum `tool` recorded for `m`, is the one the
/// tool computes from the embedded file. `None` when the tool records no
/// checksum (diesel) or recorded none for the row.
pub(super) fn checksum_matches(tool: Tool, stored: Option<&str>, m: &Migration) -> Option<bool> {
    let stored = stored?.trim();
    let sql = m.sql();
    match tool {
        Tool::Sqlx => Some(
            forms_on_disk(sql)
                .iter()
                .any(|form| hex(&Sha384::digest(form.as_bytes())) == stored),
        ),
        Tool::Refinery => {
            let Ok(version) = i32::try_from(m.version()) else {
                return Some(false);
            };
            Some(
                forms_on_disk(sql)
                    .iter()
                    .any(|form| refinery_checksum(m.name(), version, form).to_string() == stored),
            )
        }
        Tool::Flyway => Some(flyway_checksum(sql).to_string() == stored),
        Tool::Diesel => None,
    }
}

/// The forms the file of the normalized `sql` may have had on disk: LF or
/// CRLF line ends, with or without a UTF-8 byte-order mark.
fn forms_on_disk(sql: &str) -> [String; 4] {
    let crlf = sql.replace('\n', "\r\n");
    [
        sql.to_owned(),
        format!("\u{feff}{sql}"),
        format!("\u{feff}{crlf}"),
        crlf,
    ]
}

/// refinery's checksum: SipHash-1-3 with zero keys over the name, the
/// version (an `i32`) and the SQL, each fed as Rust's `Hash` feeds it.
pub(super) fn refinery_checksum(name: &str, version: i32, sql: &str) -> u64 {
    let mut hasher = siphasher::sip::SipHasher13::new();
    name.hash(&mut hasher);
    version.hash(&mut hasher);
    sql.hash(&mut hasher);
    hasher.finish()
}

/// Flyway's checksum: the CRC-32 of the file's lines without their line
/// ends (Java's `readLine`: LF, CR or CRLF), the byte-order mark removed,
/// as a signed 32-bit number. Line ends do not change it, so the
/// normalized text gives the value of any form on disk.
pub(super) fn flyway_checksum(sql: &str) -> i32 {
    let mut crc = crc32fast::Hasher::new();
    for line in sql.split(['\n', '\r']) {
        crc.update(line.as_bytes());
    }
    crc.finalize() as i32
}

/// The table `table` in `schema`, quoted.
pub(super) fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", ident(schema), ident(table))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flyway_hashes_the_lines_without_their_ends() {
        // CRC-32's check value: the CRC of "123456789" is 0xCBF43926.
        let check = 0xCBF4_3926_u32 as i32;
        assert_eq!(flyway_checksum("123456789"), check);
        assert_eq!(flyway_checksum("12345\n6789\n"), check);
        assert_eq!(flyway_checksum("12345\r6789"), check);
    }

    #[test]
    fn refinery_checksums_are_refinerys_own() {
        // Computed by refinery-core 0.9's `Migration::unapplied`.
        assert_eq!(
            refinery_checksum(
                "initial",
                1,
                "CREATE TABLE persons (id int, name varchar(255), city varchar(255));\n"
            ),
            9435430460266820252
        );
        assert_eq!(
            refinery_checksum("noop", 7, "-- nothing to do\n"),
            7254888683568432655
        );
        // A file checked out with CRLF line ends hashes its CRs.
        assert_eq!(
            refinery_checksum("add_cars", 2, "-- cars\r\nCREATE TABLE cars (id int);\r\n"),
            16101529341878042924
        );
    }

    #[test]
    fn tools_parse_by_name() {
        assert_eq!("SQLx".parse::<Tool>(), Ok(Tool::Sqlx));
        assert_eq!(
            "liquibase".parse::<Tool>().unwrap_err().to_string(),
            "unknown tool \"liquibase\": expected sqlx, refinery, diesel or flyway"
        );
    }
}
