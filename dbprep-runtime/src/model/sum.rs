//! The sum file, `dbprep.sum`: every migration file with its checksum, and
//! a hash of the whole list, in the spirit of Atlas's `atlas.sum`.
//!
//! When a migrations folder holds one, `embed_migrations!` (and
//! [`Migrations::from_dir`](crate::Migrations::from_dir)) refuses a listed
//! migration that changed or disappeared and a migration that is not
//! listed. Two branches that each add a migration then conflict in git on
//! this file, instead of both reaching production.
//!
//! ```text
//! dbprep-sum v1 3f1c…(SHA-256 of the lines below)
//! V1__domains_and_groups.sql 00656b42a5c8…
//! V2__users.sql e797fed2832d…
//! ```

use std::fs;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::source::{read_migrations_unchecked, MigrationSource, SourceError, SourceErrors};

/// The sum file's name, in the migrations folder.
pub const SUM_FILE: &str = "dbprep.sum";

const HEADER: &str = "dbprep-sum v1 ";

/// The file of `m`, relative to the folder shown as `shown_as`.
fn relative<'a>(m: &'a MigrationSource, shown_as: &str) -> &'a str {
    m.file
        .strip_prefix(shown_as.trim_end_matches('/'))
        .map_or(m.file.as_str(), |f| f.trim_start_matches('/'))
}

fn hash_of(lines: &str) -> String {
    Sha256::digest(lines.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The text of the sum file for `migrations`.
pub fn render(migrations: &[MigrationSource], shown_as: &str) -> String {
    let lines: String = migrations
        .iter()
        .map(|m| format!("{} {}\n", relative(m, shown_as), m.checksum))
        .collect();
    with_header(&lines)
}

/// A sum file of `lines`, with the header that holds their hash.
pub(crate) fn with_header(lines: &str) -> String {
    format!("{HEADER}{}\n{lines}", hash_of(lines))
}

/// Check `migrations` against the sum file text `sum` (shown in messages as
/// `<shown_as>/dbprep.sum`).
pub fn check(
    migrations: &[MigrationSource],
    shown_as: &str,
    sum: &str,
) -> Result<(), Vec<SourceError>> {
    let sum_file = format!("{}/{SUM_FILE}", shown_as.trim_end_matches('/'));
    let how = format!(
        "regenerate it with dbprep_runtime::write_sum_file(\"{}\")",
        shown_as.trim_end_matches('/')
    );
    let (header, lines) = sum.split_once('\n').unwrap_or((sum, ""));
    let recorded_hash = header.strip_prefix(HEADER).map(str::trim);
    if recorded_hash != Some(hash_of(lines).as_str()) {
        return Err(vec![SourceError::SumCorrupt { sum: sum_file, how }]);
    }
    let mut listed: Vec<(&str, &str)> = Vec::new();
    for line in lines.lines().filter(|l| !l.trim().is_empty()) {
        match line.rsplit_once(' ') {
            Some((file, checksum)) => listed.push((file, checksum)),
            None => return Err(vec![SourceError::SumCorrupt { sum: sum_file, how }]),
        }
    }
    let mut errors = Vec::new();
    for m in migrations {
        let file = relative(m, shown_as);
        match listed.iter().find(|(f, _)| *f == file) {
            None => errors.push(SourceError::SumUnlisted {
                file: m.file.clone(),
                sum: sum_file.clone(),
                how: how.clone(),
            }),
            Some((_, recorded)) if *recorded != m.checksum.to_string() => {
                errors.push(SourceError::SumChanged {
                    file: m.file.clone(),
                    recorded: recorded.to_string(),
                    actual: m.checksum.to_string(),
                    sum: sum_file.clone(),
                })
            }
            Some(_) => {}
        }
    }
    for (file, _) in &listed {
        if !migrations.iter().any(|m| relative(m, shown_as) == *file) {
            errors.push(SourceError::SumMissing {
                file: file.to_string(),
                sum: sum_file.clone(),
            });
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Write (or rewrite) `dir/dbprep.sum` from the migrations in `dir`.
/// Returns whether the file changed.
///
/// # Errors
///
/// The folder's problems (the sum file itself is not checked: this is how
/// it gets updated), or a write error.
///
/// # Example
///
/// ```no_run
/// dbprep_runtime::write_sum_file("migrations").unwrap();
/// ```
pub fn write_sum_file(dir: impl AsRef<Path>) -> Result<bool, SourceErrors> {
    let dir = dir.as_ref();
    let shown_as = dir.display().to_string();
    let migrations = read_migrations_unchecked(dir, &shown_as)?;
    let text = render(&migrations, &shown_as);
    let path = dir.join(SUM_FILE);
    if fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
        return Ok(false);
    }
    fs::write(&path, text).map_err(|e| {
        SourceErrors(vec![SourceError::Io {
            path: format!("{shown_as}/{SUM_FILE}"),
            message: e.to_string(),
        }])
    })?;
    Ok(true)
}
