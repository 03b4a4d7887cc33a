//! Reading a migrations folder: names, normalization, directives, checks and
//! checksums, with every problem found reported at once.
//!
//! `embed_migrations!` reads a folder through
//! [`read_migrations`](super::folder::read_migrations) at compile time and
//! [`Migrations::from_dir`](crate::Migrations::from_dir) at run time, so
//! both refuse the same files with the same messages.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use super::check::{check_script, SqlProblem};
use super::checksum::{history_row_hash, Checksum};
use super::directive;
use super::lexer::{line_column, split};
use super::name::{parse_file_name, parse_folder_name, Direction, NameError};
use super::normalize::normalize;

/// One migration read from a folder, with everything the embedding needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationSource {
    /// The version.
    pub version: i64,
    /// The description, e.g. `add_users`.
    pub name: String,
    /// Whether it is a baseline (`B100__x.sql`).
    pub baseline: bool,
    /// Whether it is a repeatable migration (`R__x.sql`, version 0).
    pub repeatable: bool,
    /// The up file as shown in messages, e.g. `migrations/V1__init.sql`.
    pub file: String,
    /// The normalized up SQL.
    pub sql: String,
    /// Its checksum.
    pub checksum: Checksum,
    /// The hash of the history row it leaves once applied
    /// (`history_row_hash`).
    pub history_hash: i64,
    /// `-- dbprep:no-transaction`.
    pub no_transaction: bool,
    /// The normalized down SQL, if a down file exists.
    pub down: Option<String>,
    /// Every file read for this migration, as real paths (the expansion
    /// `include_bytes!`s them so that editing one rebuilds the crate).
    pub paths: Vec<PathBuf>,
    /// For each of [`paths`](Self::paths): whether the file's bytes are
    /// already its normalized text (no byte-order mark, no CRLF), so that
    /// the expansion can `include_str!` it as it is.
    pub verbatim: Vec<bool>,
}

/// A problem with a migrations folder or one of its files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The folder does not exist.
    #[error("{dir}: migrations folder not found; create it or fix the path (embed_migrations! reads it relative to the crate's Cargo.toml, the command line relative to the current directory)")]
    DirMissing {
        /// The folder as given.
        dir: String,
    },
    /// The path exists but is not a folder.
    #[error("{dir}: not a folder; give the folder that holds the migration files")]
    NotADirectory {
        /// The path as given.
        dir: String,
    },
    /// Reading failed.
    #[error("{path}: cannot read: {message}")]
    Io {
        /// The file or folder.
        path: String,
        /// The operating system's message.
        message: String,
    },
    /// A `.sql` file whose name is not a migration name.
    #[error("{file}: {reason}")]
    BadName {
        /// The file.
        file: String,
        /// Why the name is refused.
        reason: NameError,
    },
    /// Two files with one version.
    #[error("{second}: version {version} is also used by {first}; versions must be unique: renumber one of them")]
    DuplicateVersion {
        /// The version.
        version: i64,
        /// The file that came first (by name).
        first: String,
        /// The other file.
        second: String,
    },
    /// A repeatable migration that asks to run outside a transaction.
    #[error("{file}: a repeatable migration runs in a transaction, with its history row: remove -- dbprep:no-transaction, or make it a versioned migration")]
    RepeatableWithoutTransaction {
        /// The file.
        file: String,
    },
    /// A down (undo) file with no up file of its version.
    #[error("{file}: down migration without an up migration of version {version}; add the up file or delete this one")]
    DownWithoutUp {
        /// The down file.
        file: String,
        /// Its version.
        version: i64,
    },
    /// A folder named like a migration file.
    #[error("{file}: a folder where a migration file is expected; a migration is a .sql file (diesel's migration folders are named <version>_<name>, without .sql)")]
    FolderNamedSql {
        /// The folder.
        file: String,
    },
    /// A diesel folder without `up.sql`.
    #[error("{folder}: migration folder without up.sql")]
    FolderWithoutUp {
        /// The folder.
        folder: String,
    },
    /// A file that is not UTF-8.
    #[error("{file}:{line}: not valid UTF-8 (byte {offset}); save the file as UTF-8")]
    NotUtf8 {
        /// The file.
        file: String,
        /// Line of the first invalid byte.
        line: usize,
        /// Byte offset of the first invalid byte.
        offset: usize,
    },
    /// A file with a NUL character, which PostgreSQL refuses in SQL text.
    #[error("{file}:{line}:{column}: a NUL character, which PostgreSQL refuses in SQL; remove it")]
    NulCharacter {
        /// The file.
        file: String,
        /// Line of the first NUL.
        line: usize,
        /// Column of the first NUL.
        column: usize,
    },
    /// A symbolic link that points outside the migrations folder.
    #[error("{file}: symbolic link to {target}, outside the migrations folder; copy the file in instead")]
    SymlinkOutside {
        /// The link.
        file: String,
        /// Where it points.
        target: String,
    },
    /// A `-- dbprep:…` directive that does not exist.
    #[error("{file}:{line}: unknown directive `-- {directive}`; the directives are `-- dbprep:no-transaction` and `-- dbprep:lock-timeout DURATION`")]
    UnknownDirective {
        /// The file.
        file: String,
        /// Its line.
        line: usize,
        /// The directive as written.
        directive: String,
    },
    /// A known directive with a value it cannot take.
    #[error("{file}:{line}: `-- {directive}`: {reason}")]
    BadDirective {
        /// The file.
        file: String,
        /// Its line.
        line: usize,
        /// The directive.
        directive: String,
        /// What is wrong with its value.
        reason: String,
    },
    /// A migration listed in `dbprep.sum` whose content changed.
    #[error("{file}: changed since it was recorded in {sum} (recorded {recorded}, now {actual}); an applied migration must not change: restore the file, or, if it was never applied anywhere, regenerate the sum file")]
    SumChanged {
        /// The migration file.
        file: String,
        /// The checksum in the sum file.
        recorded: String,
        /// The file's checksum now.
        actual: String,
        /// The sum file.
        sum: String,
    },
    /// A migration listed in `dbprep.sum` that is gone.
    #[error("{sum}: lists {file}, which is no longer in the folder; restore it, or regenerate the sum file if its removal is intended")]
    SumMissing {
        /// The file as listed.
        file: String,
        /// The sum file.
        sum: String,
    },
    /// A migration that `dbprep.sum` does not list.
    #[error("{file}: not listed in {sum}; {how}")]
    SumUnlisted {
        /// The migration file.
        file: String,
        /// The sum file.
        sum: String,
        /// How to update it.
        how: String,
    },
    /// A sum file whose own hash does not match its lines.
    #[error("{sum}: its hash does not match its lines (edited or merged by hand); {how}")]
    SumCorrupt {
        /// The sum file.
        sum: String,
        /// How to update it.
        how: String,
    },
    /// SQL refused by the checks of the compile-time checks.
    #[error("{}", problem.in_file(file))]
    Sql {
        /// The file.
        file: String,
        /// What was found where.
        problem: SqlProblem,
    },
}

impl SourceError {
    /// The file (or folder) the problem is about, as shown in messages.
    pub fn file(&self) -> &str {
        match self {
            SourceError::DirMissing { dir } | SourceError::NotADirectory { dir } => dir,
            SourceError::Io { path, .. } => path,
            SourceError::DuplicateVersion { second, .. } => second,
            SourceError::FolderWithoutUp { folder } => folder,
            SourceError::BadName { file, .. }
            | SourceError::DownWithoutUp { file, .. }
            | SourceError::FolderNamedSql { file }
            | SourceError::RepeatableWithoutTransaction { file }
            | SourceError::NotUtf8 { file, .. }
            | SourceError::NulCharacter { file, .. }
            | SourceError::SymlinkOutside { file, .. }
            | SourceError::UnknownDirective { file, .. }
            | SourceError::BadDirective { file, .. }
            | SourceError::Sql { file, .. }
            | SourceError::SumChanged { file, .. }
            | SourceError::SumUnlisted { file, .. } => file,
            SourceError::SumMissing { sum, .. } | SourceError::SumCorrupt { sum, .. } => sum,
        }
    }
}

/// Every problem found in a folder, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SourceErrors(pub Vec<SourceError>);

impl fmt::Display for SourceErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// A file found in the folder, before its text is read.
struct Candidate {
    version: i64,
    name: String,
    direction: Direction,
    file: String,
    path: PathBuf,
}

/// Read every migration of `dir`, each file checked, without the
/// `dbprep.sum` check ([`read_migrations`](super::folder::read_migrations)
/// adds it). `shown_as` is how the folder appears in messages and in
/// [`MigrationSource::file`] (e.g. `migrations`).
///
/// Files that are not `.sql` (README, `.keep`, `dbprep.sum`) are ignored;
/// every `.sql` file must be a valid migration.
pub fn read_migrations_unchecked(
    dir: &Path,
    shown_as: &str,
) -> Result<Vec<MigrationSource>, SourceErrors> {
    let shown_as = shown_as.trim_end_matches('/');
    let single = |e| Err(SourceErrors(vec![e]));
    let meta = match fs::metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return single(SourceError::DirMissing {
                dir: shown_as.to_owned(),
            })
        }
        Err(e) => {
            return single(SourceError::Io {
                path: shown_as.to_owned(),
                message: e.to_string(),
            })
        }
    };
    if !meta.is_dir() {
        return single(SourceError::NotADirectory {
            dir: shown_as.to_owned(),
        });
    }
    let mut errors = Vec::new();
    let candidates = find_candidates(dir, shown_as, &mut errors);

    // Pair up and down files by version, refusing duplicates.
    let mut ups: BTreeMap<i64, Candidate> = BTreeMap::new();
    let mut baselines: BTreeMap<i64, Candidate> = BTreeMap::new();
    let mut downs: BTreeMap<i64, Candidate> = BTreeMap::new();
    // By name: the order they run in (file names are unique).
    let mut repeatables: BTreeMap<String, Candidate> = BTreeMap::new();
    for candidate in candidates {
        let slot = match candidate.direction {
            Direction::Up => &mut ups,
            Direction::Down => &mut downs,
            Direction::Baseline => &mut baselines,
            Direction::Repeatable => {
                repeatables.insert(candidate.name.clone(), candidate);
                continue;
            }
        };
        if let Some(first) = slot.get(&candidate.version) {
            errors.push(SourceError::DuplicateVersion {
                version: candidate.version,
                first: first.file.clone(),
                second: candidate.file,
            });
        } else {
            slot.insert(candidate.version, candidate);
        }
    }
    for (version, down) in &downs {
        if !ups.contains_key(version) {
            errors.push(SourceError::DownWithoutUp {
                file: down.file.clone(),
                version: *version,
            });
        }
    }

    let work: Vec<_> = ups
        .into_values()
        .map(|c| (c, UpKind::Versioned))
        .chain(baselines.into_values().map(|c| (c, UpKind::Baseline)))
        .chain(repeatables.into_values().map(|c| (c, UpKind::Repeatable)))
        .map(|(up, kind)| {
            let down = match kind {
                UpKind::Versioned => downs.remove(&up.version),
                UpKind::Baseline | UpKind::Repeatable => None,
            };
            (up, down, kind)
        })
        .collect();
    let mut migrations = Vec::with_capacity(work.len());
    for result in map_in_parallel(work, |(up, down, kind)| read_one(up, down, kind)) {
        match result {
            Ok(migration) => migrations.push(migration),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(migrations)
    } else {
        errors.sort_by(|a, b| a.file().cmp(b.file()));
        Err(SourceErrors(errors))
    }
}

/// `f` over `items` on the machine's cores, results in order: reading,
/// checking and hashing a thousand files is most of what
/// `embed_migrations!` costs a build.
fn map_in_parallel<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    if threads < 2 || items.len() < 32 {
        return items.into_iter().map(f).collect();
    }
    let per_thread = items.len().div_ceil(threads);
    let mut chunks: Vec<Vec<T>> = Vec::with_capacity(threads);
    let mut items = items.into_iter();
    loop {
        let chunk: Vec<T> = items.by_ref().take(per_thread).collect();
        if chunk.is_empty() {
            break;
        }
        chunks.push(chunk);
    }
    let f = &f;
    std::thread::scope(|scope| {
        let workers: Vec<_> = chunks
            .into_iter()
            .map(|chunk| scope.spawn(move || chunk.into_iter().map(f).collect::<Vec<R>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

fn io_error(path: &str, e: std::io::Error) -> SourceError {
    SourceError::Io {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// List the folder's migration files (and diesel folders' files), sorted by
/// name so that messages come in a stable order.
fn find_candidates(dir: &Path, shown_as: &str, errors: &mut Vec<SourceError>) -> Vec<Candidate> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            errors.push(io_error(shown_as, e));
            return Vec::new();
        }
    };
    // (name, whether it is a symbolic link, whether it is a folder)
    let mut names: Vec<(String, bool, bool)> = Vec::new();
    for entry in entries {
        match entry.and_then(|e| Ok((e.file_name(), e.file_type()?))) {
            Ok((name, kind)) => names.push((
                name.to_string_lossy().into_owned(),
                kind.is_symlink(),
                kind.is_dir(),
            )),
            Err(e) => errors.push(io_error(shown_as, e)),
        }
    }
    names.sort();
    let real_dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());

    let mut candidates = Vec::new();
    for (file_name, symlink, mut is_dir) in names {
        let file = format!("{shown_as}/{file_name}");
        // Only a link needs resolving (one system call per path component):
        // anything else is in the folder.
        let real_path = if symlink {
            let Some(real) = resolve_inside(&dir.join(&file_name), &real_dir, &file, errors) else {
                continue;
            };
            is_dir = real.is_dir();
            real
        } else {
            real_dir.join(&file_name)
        };
        if is_dir {
            if file_name.ends_with(".sql") {
                errors.push(SourceError::FolderNamedSql { file });
                continue;
            }
            if let Some(parsed) = parse_folder_name(&file_name) {
                match parsed {
                    Ok((version, name)) => {
                        diesel_folder(&real_path, version, &name, &file, errors, &mut candidates)
                    }
                    Err(reason) => errors.push(SourceError::BadName { file, reason }),
                }
            }
            continue;
        }
        match parse_file_name(&file_name) {
            Ok(Some(parsed)) => candidates.push(Candidate {
                version: parsed.version,
                name: parsed.name,
                direction: parsed.direction,
                file,
                path: real_path,
            }),
            Ok(None) => {}
            Err(reason) => errors.push(SourceError::BadName { file, reason }),
        }
    }
    candidates
}

/// The real path of `path`, or `None` (with an error) when it is a symbolic
/// link leading out of the folder.
fn resolve_inside(
    path: &Path,
    real_dir: &Path,
    file: &str,
    errors: &mut Vec<SourceError>,
) -> Option<PathBuf> {
    match path.canonicalize() {
        Ok(real) if real.starts_with(real_dir) => Some(real),
        Ok(real) => {
            // Show the link as written: the real path is machine-specific.
            let target = fs::read_link(path).unwrap_or(real);
            errors.push(SourceError::SymlinkOutside {
                file: file.to_owned(),
                target: target.display().to_string(),
            });
            None
        }
        Err(e) => {
            errors.push(io_error(file, e));
            None
        }
    }
}

fn diesel_folder(
    folder_path: &Path,
    version: i64,
    name: &str,
    folder: &str,
    errors: &mut Vec<SourceError>,
    candidates: &mut Vec<Candidate>,
) {
    let real_dir = folder_path.to_path_buf();
    for (file_name, direction) in [("up.sql", Direction::Up), ("down.sql", Direction::Down)] {
        let path = folder_path.join(file_name);
        let file = format!("{folder}/{file_name}");
        if path.symlink_metadata().is_err() {
            if direction == Direction::Up {
                errors.push(SourceError::FolderWithoutUp {
                    folder: folder.to_owned(),
                });
            }
            continue;
        }
        if let Some(real_path) = resolve_inside(&path, &real_dir, &file, errors) {
            candidates.push(Candidate {
                version,
                name: name.to_owned(),
                direction,
                file,
                path: real_path,
            });
        }
    }
}

/// The file's normalized text, and whether it is the file's bytes as they
/// are (normalizing only ever removes bytes).
fn read_text(candidate: &Candidate) -> Result<(String, bool), SourceError> {
    let bytes = fs::read(&candidate.path).map_err(|e| io_error(&candidate.file, e))?;
    let text = normalize(&bytes).map_err(|e| SourceError::NotUtf8 {
        file: candidate.file.clone(),
        line: e.line,
        offset: e.offset,
    })?;
    if let Some(offset) = text.find('\0') {
        let (line, column) = line_column(&text, offset);
        return Err(SourceError::NulCharacter {
            file: candidate.file.clone(),
            line,
            column,
        });
    }
    let verbatim = text.len() == bytes.len();
    Ok((text, verbatim))
}

/// What an up file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UpKind {
    Versioned,
    Baseline,
    Repeatable,
}

fn read_one(
    up: Candidate,
    down: Option<Candidate>,
    kind: UpKind,
) -> Result<MigrationSource, Vec<SourceError>> {
    let mut errors = Vec::new();
    let (sql, up_verbatim) = read_text(&up).map_err(|e| vec![e])?;
    let directives = directive::parse(&sql).unwrap_or_else(|e| {
        errors.push(match e.bad_value {
            None => SourceError::UnknownDirective {
                file: up.file.clone(),
                line: e.line,
                directive: e.directive,
            },
            Some(reason) => SourceError::BadDirective {
                file: up.file.clone(),
                line: e.line,
                directive: e.directive,
                reason,
            },
        });
        Default::default()
    });
    // A file with no statement (comments alone, as `sqlx migrate add` and
    // `diesel migration generate` start one) is a migration that changes
    // nothing, recorded like any other, as sqlx, refinery and Flyway do.
    let script = split(&sql);
    if kind == UpKind::Repeatable && directives.no_transaction {
        errors.push(SourceError::RepeatableWithoutTransaction {
            file: up.file.clone(),
        });
    }
    for problem in check_script(&sql, &script, directives.no_transaction) {
        errors.push(SourceError::Sql {
            file: up.file.clone(),
            problem,
        });
    }
    let mut paths = vec![up.path.clone()];
    let mut verbatim = vec![up_verbatim];
    let down_sql = match &down {
        Some(down) => {
            paths.push(down.path.clone());
            match read_text(down) {
                Ok((text, down_verbatim)) => {
                    verbatim.push(down_verbatim);
                    Some(text)
                }
                Err(e) => {
                    errors.push(e);
                    None
                }
            }
        }
        None => None,
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let checksum = Checksum::of(sql.as_bytes());
    Ok(MigrationSource {
        history_hash: history_row_hash(up.version, &checksum.to_string(), true),
        version: up.version,
        name: up.name,
        baseline: kind == UpKind::Baseline,
        repeatable: kind == UpKind::Repeatable,
        checksum,
        file: up.file,
        sql,
        no_transaction: directives.no_transaction,
        down: down_sql,
        paths,
        verbatim,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::folder::read_migrations;

    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        dir
    }

    fn errors(files: &[(&str, &str)]) -> Vec<String> {
        let dir = folder(files);
        read_migrations(dir.path(), "m")
            .unwrap_err()
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn mixes_schemes_in_version_order() {
        let dir = folder(&[
            ("V3__c.sql", "SELECT 3;"),
            ("1_a.up.sql", "SELECT 1;"),
            ("1_a.down.sql", "SELECT -1;"),
            ("0002-01-01-000000_b/up.sql", "SELECT 2;"),
            ("B3__base.sql", "SELECT 3;"),
            ("README.md", "not sql"),
        ]);
        let m = read_migrations(dir.path(), "m").unwrap();
        let shown: Vec<_> = m
            .iter()
            .map(|m| (m.version, m.file.as_str(), m.baseline))
            .collect();
        assert_eq!(
            shown,
            [
                (1, "m/1_a.up.sql", false),
                (3, "m/V3__c.sql", false),
                (20101000000, "m/0002-01-01-000000_b/up.sql", false),
                (3, "m/B3__base.sql", true),
            ]
        );
        assert_eq!(m[0].down.as_deref(), Some("SELECT -1;"));
    }

    #[test]
    fn duplicate_versions_name_both_files() {
        assert_eq!(
            errors(&[("V1__a.sql", "SELECT 1;"), ("1_b.sql", "SELECT 1;")]),
            ["m/V1__a.sql: version 1 is also used by m/1_b.sql; versions must be unique: renumber one of them"]
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let found = errors(&[
            ("V1__comments_only.sql", "-- nothing here\n"),
            ("U2__orphan.sql", "SELECT 1;"),
            ("init.sql", "SELECT 1;"),
        ]);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("m/U2__orphan.sql: down migration without an up migration"));
        assert!(found[1].starts_with("m/init.sql: not a migration name"));
    }

    #[test]
    fn non_utf8_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("V1__a.sql"), b"SELECT 1;\nSELECT '\xff';").unwrap();
        let e = read_migrations(dir.path(), "m").unwrap_err();
        assert_eq!(
            e.to_string(),
            "m/V1__a.sql:2: not valid UTF-8 (byte 18); save the file as UTF-8"
        );
    }

    #[test]
    fn a_nul_character_is_refused_with_its_place() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("V1__a.sql"), "SELECT 1;\nSELECT 'a\0b';").unwrap();
        let e = read_migrations(dir.path(), "m").unwrap_err();
        assert_eq!(
            e.to_string(),
            "m/V1__a.sql:2:10: a NUL character, which PostgreSQL refuses in SQL; remove it"
        );
    }

    #[test]
    fn symlinks_out_of_the_folder_are_refused() {
        let outside = folder(&[("x.sql", "SELECT 1;")]);
        let dir = folder(&[]);
        std::os::unix::fs::symlink(outside.path().join("x.sql"), dir.path().join("V1__x.sql"))
            .unwrap();
        let e = read_migrations(dir.path(), "m").unwrap_err().to_string();
        assert!(e.starts_with("m/V1__x.sql: symbolic link to "), "{e}");
    }
}
