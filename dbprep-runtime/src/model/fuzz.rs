//! Entry points for fuzzing the readers of untrusted text: each takes
//! arbitrary bytes and runs one reader to its end, with the result thrown
//! away. Any input must give an answer or an error, never a panic.

use super::checksum::Checksum;
use super::source::MigrationSource;
use super::{directive, fixture, lexer, name, normalize, sum};

/// A file or folder name, as a migrations folder's entry.
pub fn file_name(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let _ = name::parse_file_name(&text);
    let _ = name::parse_folder_name(&text);
}

/// A migration file: normalization, the directives, the lexer and
/// splitter, and every compile-time check.
pub fn migration(bytes: &[u8]) {
    let Ok(sql) = normalize::normalize(bytes) else {
        return;
    };
    if let Ok(directives) = directive::parse(&sql) {
        let _ = super::check::check_sql(&sql, directives.no_transaction);
    }
    for statement in lexer::split(&sql).statements {
        let _ = statement.text(&sql);
    }
}

/// A fixture file.
pub fn fixture(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let _ = fixture::parse("fuzz.json", &text);
}

/// A `dbprep.sum` file: checked as written (its hash line will rarely
/// hold), and with the hash line it should have, so that the lines
/// themselves are read, against one migration.
pub fn sum_file(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let migrations = [MigrationSource {
        version: 1,
        name: "a".into(),
        baseline: false,
        repeatable: false,
        file: "m/V1__a.sql".into(),
        sql: "SELECT 1;".into(),
        checksum: Checksum::of(b"SELECT 1;"),
        history_hash: 0,
        no_transaction: false,
        down: None,
        paths: Vec::new(),
        verbatim: Vec::new(),
    }];
    let _ = sum::check(&migrations, "m", &text);
    let body = text.split_once('\n').map_or("", |(_, lines)| lines);
    let _ = sum::check(&migrations, "m", &sum::with_header(body));
}
