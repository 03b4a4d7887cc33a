//! A migrations folder as `embed_migrations!` and
//! [`Migrations::from_dir`](crate::Migrations::from_dir) read it: every
//! file read and checked, then the folder's `dbprep.sum`, when it has one,
//! checked against them.

use std::fs;
use std::path::Path;

use super::source::{read_migrations_unchecked, MigrationSource, SourceError, SourceErrors};
use super::sum::{check as check_sum, SUM_FILE};

/// Read every migration of `dir`. `shown_as` is how the folder appears in
/// messages and in [`MigrationSource::file`] (e.g. `migrations`).
///
/// Files that are not `.sql` (README, `.keep`, `dbprep.sum`) are ignored;
/// every `.sql` file must be a valid migration.
pub fn read_migrations(dir: &Path, shown_as: &str) -> Result<Vec<MigrationSource>, SourceErrors> {
    let migrations = read_migrations_unchecked(dir, shown_as)?;
    match fs::read_to_string(dir.join(SUM_FILE)) {
        Ok(sum) => check_sum(&migrations, shown_as, &sum).map_err(SourceErrors)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            let path = format!("{}/{SUM_FILE}", shown_as.trim_end_matches('/'));
            return Err(SourceErrors(vec![SourceError::Io {
                path,
                message: e.to_string(),
            }]));
        }
    }
    Ok(migrations)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_reads_normalized_files_named_as_shown() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("V1__init.sql"),
            "CREATE TABLE t (id int);\r\n",
        )
        .unwrap();
        let migrations = read_migrations(dir.path(), "migrations").unwrap();
        assert_eq!(migrations[0].file, "migrations/V1__init.sql");
        assert_eq!(migrations[0].sql, "CREATE TABLE t (id int);\n");
    }
}
