//! The embedded migrations: [`Migration`] and the set [`Migrations`].
//!
//! Both can live in a `static` (what `embed_migrations!` expands to) or be
//! built at run time from a folder ([`Migrations::from_dir`]).

use std::borrow::Cow;
use std::fmt;
use std::path::Path;
use std::sync::OnceLock;

use super::checksum::Checksum;
use super::folder::read_migrations;
use super::lexer::split;
use super::source::{MigrationSource, SourceErrors};

/// One migration: its version, name, normalized SQL and checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    version: i64,
    name: Cow<'static, str>,
    file: Cow<'static, str>,
    sql: Cow<'static, str>,
    checksum: Checksum,
    /// [`history_row_hash`](super::checksum::history_row_hash) of the row this migration leaves once applied.
    history_hash: i64,
    no_transaction: bool,
    baseline: bool,
    repeatable: bool,
    down: Option<Cow<'static, str>>,
}

impl Migration {
    fn from_source(source: MigrationSource) -> Self {
        Migration {
            version: source.version,
            name: source.name.into(),
            file: source.file.into(),
            sql: source.sql.into(),
            checksum: source.checksum,
            history_hash: source.history_hash,
            no_transaction: source.no_transaction,
            baseline: source.baseline,
            repeatable: source.repeatable,
            down: source.down.map(Cow::Owned),
        }
    }

    /// The version, e.g. `3` for `V3__add_users.sql`.
    pub fn version(&self) -> i64 {
        self.version
    }

    /// Whether a run to `target` applies it: its version is at most the
    /// target (none: the newest version, so every migration).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn within(&self, target: Option<i64>) -> bool {
        target.is_none_or(|t| self.version <= t)
    }

    /// The description, e.g. `add_users`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file it was read from, relative to the crate (e.g.
    /// `migrations/V3__add_users.sql`).
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The normalized up SQL (no byte-order mark, LF line ends).
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The SHA-256 of [`sql`](Self::sql).
    pub fn checksum(&self) -> Checksum {
        self.checksum
    }

    /// [`history_row_hash`](super::checksum::history_row_hash) of the history row this migration leaves once
    /// applied (computed at compile time for embedded migrations).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn history_hash(&self) -> i64 {
        self.history_hash
    }

    /// Whether the file starts with `-- dbprep:no-transaction`: it runs
    /// outside a transaction, one statement at a time.
    pub fn no_transaction(&self) -> bool {
        self.no_transaction
    }

    /// Whether this is a baseline (`B100__x.sql`): the whole schema at its
    /// version, applied only to a fresh database.
    pub fn is_baseline(&self) -> bool {
        self.baseline
    }

    /// Whether this is a repeatable migration (`R__views.sql`): it has no
    /// version (0), and runs again, after the versioned migrations,
    /// whenever its checksum differs from the one it last ran with.
    pub fn is_repeatable(&self) -> bool {
        self.repeatable
    }

    /// The normalized down SQL, when a down or undo file exists.
    pub fn down_sql(&self) -> Option<&str> {
        self.down.as_deref()
    }

    /// The file of the down SQL, as the folder's scheme names it beside
    /// [`file`](Self::file): `U3__x.sql` for `V3__x.sql`, `….down.sql`
    /// for `….up.sql`, `down.sql` for a diesel folder's `up.sql`; `None`
    /// without a down.
    pub fn down_file(&self) -> Option<String> {
        self.down.as_ref()?;
        let file: &str = &self.file;
        let (dir, base) = file.rsplit_once('/').map_or(("", file), |(d, b)| (d, b));
        let down = if base == "up.sql" {
            "down.sql".to_owned()
        } else if let Some(stem) = base.strip_suffix(".up.sql") {
            format!("{stem}.down.sql")
        } else if let Some(rest) = base.strip_prefix('V') {
            format!("U{rest}")
        } else {
            format!("{}.down.sql", base.strip_suffix(".sql").unwrap_or(base))
        };
        Some(if dir.is_empty() {
            down
        } else {
            format!("{dir}/{down}")
        })
    }

    /// The statements of the up SQL, split as psql would, without their
    /// terminating `;`.
    pub fn statements(&self) -> Vec<&str> {
        let sql = self.sql();
        split(sql).statements.iter().map(|s| s.text(sql)).collect()
    }
}

/// The set of migrations a binary carries, in version order.
///
/// # Example
///
/// ```ignore
/// use dbprep_runtime::Migrations;
///
/// static MIGRATIONS: Migrations = dbprep_macros::embed_migrations!("migrations");
///
/// for m in MIGRATIONS.iter() {
///     println!("{:>4} {:<24} {}", m.version(), m.name(), m.checksum().short());
/// }
/// ```
#[derive(Clone)]
pub struct Migrations {
    /// What `embed_migrations!` put in the binary, decoded on first use.
    embedded: Option<&'static EmbeddedColumns>,
    sets: OnceLock<Sets>,
}

/// The migrations, in version order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Sets {
    versioned: Vec<Migration>,
    baselines: Vec<Migration>,
    /// By name.
    repeatables: Vec<Migration>,
}

/// What `embed_migrations!` expands to: one array per field, in file order
/// (versioned migrations by version, then baselines by version, then
/// repeatable migrations by name). rustc
/// checks a few arrays of literals in a fraction of the time it takes for
/// a thousand struct expressions. Not a stable API.
#[doc(hidden)]
#[derive(Debug)]
pub struct EmbeddedColumns {
    pub versions: &'static [i64],
    /// Each migration's name then its file, back to back: one constant
    /// instead of two thousand small ones for the code generator.
    pub names_and_files: &'static str,
    /// The byte lengths of each name and file in `names_and_files`.
    pub lengths: &'static [u32],
    pub sql: &'static [&'static str],
    /// 32 bytes per migration.
    pub checksums: &'static [u8],
    pub history_hashes: &'static [i64],
    /// Per migration: [`EmbeddedColumns::NO_TRANSACTION`],
    /// [`EmbeddedColumns::BASELINE`], [`EmbeddedColumns::HAS_DOWN`],
    /// [`EmbeddedColumns::REPEATABLE`].
    pub flags: &'static [u8],
    /// The down SQL of each migration flagged `HAS_DOWN`, in order.
    pub downs: &'static [&'static str],
}

impl EmbeddedColumns {
    pub const NO_TRANSACTION: u8 = 1;
    pub const BASELINE: u8 = 2;
    pub const HAS_DOWN: u8 = 4;
    pub const REPEATABLE: u8 = 8;

    fn decode(&self) -> Sets {
        let mut sets = Sets::default();
        let mut downs = self.downs.iter();
        let mut text = self.names_and_files;
        let mut next = |n: u32| {
            let (head, rest) = text.split_at(n as usize);
            text = rest;
            head
        };
        for (i, &version) in self.versions.iter().enumerate() {
            let flags = self.flags[i];
            let mut checksum = [0; 32];
            checksum.copy_from_slice(&self.checksums[i * 32..i * 32 + 32]);
            let migration = Migration {
                version,
                name: Cow::Borrowed(next(self.lengths[2 * i])),
                file: Cow::Borrowed(next(self.lengths[2 * i + 1])),
                sql: Cow::Borrowed(self.sql[i]),
                checksum: Checksum::from_bytes(checksum),
                history_hash: self.history_hashes[i],
                no_transaction: flags & Self::NO_TRANSACTION != 0,
                baseline: flags & Self::BASELINE != 0,
                repeatable: flags & Self::REPEATABLE != 0,
                down: (flags & Self::HAS_DOWN != 0)
                    .then(|| downs.next().map(|d| Cow::Borrowed(*d)))
                    .flatten(),
            };
            if migration.repeatable {
                sets.repeatables.push(migration);
            } else if migration.baseline {
                sets.baselines.push(migration);
            } else {
                sets.versioned.push(migration);
            }
        }
        sets
    }
}

impl Migrations {
    /// Used by `embed_migrations!`; not a stable API.
    #[doc(hidden)]
    pub const fn __embedded(columns: &'static EmbeddedColumns) -> Self {
        Migrations {
            embedded: Some(columns),
            sets: OnceLock::new(),
        }
    }

    /// No migration at all (a tool that only loads fixtures, or a
    /// placeholder).
    ///
    /// ```
    /// static NONE: dbprep_runtime::Migrations = dbprep_runtime::Migrations::empty();
    /// assert!(NONE.is_empty());
    /// ```
    pub const fn empty() -> Self {
        Migrations {
            embedded: None,
            sets: OnceLock::new(),
        }
    }

    // Not inlined: the decoding stays compiled in this crate instead of in
    // every crate that embeds migrations.
    #[inline(never)]
    fn sets(&self) -> &Sets {
        self.sets.get_or_init(|| {
            self.embedded
                .map(EmbeddedColumns::decode)
                .unwrap_or_default()
        })
    }

    /// Read a migrations folder at run time, with the same names, checks and
    /// checksums as `embed_migrations!` (for a standalone CLI, or a folder
    /// shipped beside the binary). Files are shown in messages as
    /// `<dir>/<file>`.
    ///
    /// # Errors
    ///
    /// Every problem in the folder, each naming its file.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, SourceErrors> {
        let dir = dir.as_ref();
        let sources = read_migrations(dir, &dir.display().to_string())?;
        let (repeatables, others): (Vec<_>, Vec<_>) = sources
            .into_iter()
            .map(Migration::from_source)
            .partition(Migration::is_repeatable);
        let (baselines, versioned) = others.into_iter().partition(Migration::is_baseline);
        Ok(Migrations {
            embedded: None,
            sets: OnceLock::from(Sets {
                versioned,
                baselines,
                repeatables,
            }),
        })
    }

    /// The versioned migrations alone, without the baselines: what a
    /// database that replays every migration runs.
    pub fn without_baselines(&self) -> Migrations {
        Migrations {
            embedded: None,
            sets: OnceLock::from(Sets {
                versioned: self.iter().cloned().collect(),
                baselines: Vec::new(),
                repeatables: self.repeatables().to_vec(),
            }),
        }
    }

    /// The versioned migrations in version order (baselines excluded).
    pub fn iter(&self) -> std::slice::Iter<'_, Migration> {
        self.sets().versioned.iter()
    }

    /// The baselines in version order.
    pub fn baselines(&self) -> &[Migration] {
        &self.sets().baselines
    }

    /// The repeatable migrations (`R__x.sql`), in name order: the order
    /// they run in, after the versioned ones.
    pub fn repeatables(&self) -> &[Migration] {
        &self.sets().repeatables
    }

    /// The repeatable migration named `name` (`views` for `R__views.sql`).
    pub fn repeatable(&self, name: &str) -> Option<&Migration> {
        self.repeatables().iter().find(|m| m.name() == name)
    }

    /// The versioned migration of `version`.
    pub fn get(&self, version: i64) -> Option<&Migration> {
        let versioned = &self.sets().versioned;
        let i = versioned
            .binary_search_by_key(&version, |m| m.version)
            .ok()?;
        Some(&versioned[i])
    }

    /// The checksum of the versioned migration of `version`, to pin in a
    /// test.
    pub fn checksum_of(&self, version: i64) -> Option<Checksum> {
        self.get(version).map(Migration::checksum)
    }

    /// The highest version (of migrations and baselines).
    pub fn head(&self) -> Option<i64> {
        let last = |s: &[Migration]| s.last().map(|m| m.version);
        last(&self.sets().versioned).max(last(&self.sets().baselines))
    }

    /// The number of versioned migrations.
    pub fn len(&self) -> usize {
        self.sets().versioned.len()
    }

    /// Whether there is no migration at all.
    pub fn is_empty(&self) -> bool {
        let sets = self.sets();
        sets.versioned.is_empty() && sets.baselines.is_empty() && sets.repeatables.is_empty()
    }
}

impl PartialEq for Migrations {
    fn eq(&self, other: &Self) -> bool {
        self.sets() == other.sets()
    }
}

impl Eq for Migrations {}

impl fmt::Debug for Migrations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sets = self.sets();
        f.debug_struct("Migrations")
            .field("versioned", &sets.versioned)
            .field("baselines", &sets.baselines)
            .field("repeatables", &sets.repeatables)
            .finish()
    }
}

/// How the embedded set differs from a folder on disk, from
/// [`Migrations::diff_dir`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirMismatch {
    /// The folder.
    pub dir: String,
    /// Files on disk the binary does not embed (added since the build).
    pub not_embedded: Vec<String>,
    /// Files whose content differs from what the binary embeds.
    pub stale: Vec<String>,
    /// Migrations the binary embeds that the folder no longer holds.
    pub gone: Vec<String>,
    /// The folder's own problems (bad names, a stale `dbprep.sum`, …).
    pub invalid: Option<SourceErrors>,
}

impl std::fmt::Display for DirMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(errors) = &self.invalid {
            return write!(f, "{} cannot be read as migrations:\n{errors}", self.dir);
        }
        write!(
            f,
            "the binary embeds other migrations than {} holds now:",
            self.dir
        )?;
        for (what, files) in [
            (
                "not embedded (added since the last build)",
                &self.not_embedded,
            ),
            ("stale (edited since the last build)", &self.stale),
            ("embedded but gone from the folder", &self.gone),
        ] {
            if !files.is_empty() {
                write!(f, "\n  {what}: {}", files.join(", "))?;
            }
        }
        write!(
            f,
            "\nCargo rebuilds when a migration is edited, not when one is added: put `println!(\"cargo:rerun-if-changed={}\");` in build.rs",
            self.dir
        )
    }
}

impl std::error::Error for DirMismatch {}

impl Migrations {
    /// Compare what the binary embeds with what `dir` holds now (same
    /// files, same checksums, and a current `dbprep.sum` if there is one).
    /// `dir` is relative to the current directory, which is the package's
    /// root under `cargo test`.
    ///
    /// # Errors
    ///
    /// A [`DirMismatch`] listing what is missing, stale or gone.
    pub fn diff_dir(&self, dir: impl AsRef<Path>) -> Result<(), DirMismatch> {
        let dir = dir.as_ref();
        let mut mismatch = DirMismatch {
            dir: dir.display().to_string(),
            not_embedded: Vec::new(),
            stale: Vec::new(),
            gone: Vec::new(),
            invalid: None,
        };
        let on_disk = match Migrations::from_dir(dir) {
            Ok(m) => m,
            Err(errors) => {
                mismatch.invalid = Some(errors);
                return Err(mismatch);
            }
        };
        let all = |m: &Migrations| -> Vec<Migration> {
            m.iter()
                .chain(m.baselines())
                .chain(m.repeatables())
                .cloned()
                .collect()
        };
        let (embedded, disk) = (all(self), all(&on_disk));
        let same_slot = |a: &Migration, b: &Migration| {
            a.version == b.version
                && a.baseline == b.baseline
                && a.repeatable == b.repeatable
                && (!a.repeatable || a.name == b.name)
        };
        for d in &disk {
            match embedded.iter().find(|e| same_slot(e, d)) {
                None => mismatch.not_embedded.push(d.file().to_owned()),
                Some(e) if e.checksum != d.checksum => mismatch.stale.push(d.file().to_owned()),
                Some(_) => {}
            }
        }
        for e in &embedded {
            if !disk.iter().any(|d| same_slot(e, d)) {
                mismatch.gone.push(e.file().to_owned());
            }
        }
        if mismatch.not_embedded.is_empty() && mismatch.stale.is_empty() && mismatch.gone.is_empty()
        {
            Ok(())
        } else {
            Err(mismatch)
        }
    }

    /// Lint the migrations for DDL that blocks the application's traffic
    /// (see [`Rule`](crate::Rule)), skipping every version at or below
    /// `since` and below the newest baseline (applied long ago, or
    /// replaced by the baseline). Down files are not linted.
    pub fn lint_since(&self, since: Option<i64>) -> Vec<super::lint::LintFinding> {
        let floor = since.max(self.baselines().last().map(Migration::version));
        self.iter()
            .filter(|m| floor.is_none_or(|f| m.version() > f))
            .chain(self.repeatables())
            .flat_map(|m| super::lint::lint(m.file(), m.sql()))
            .collect()
    }

    /// [`lint_since`](Self::lint_since) of every version.
    pub fn lint(&self) -> Vec<super::lint::LintFinding> {
        self.lint_since(None)
    }

    /// Panic, listing each finding with what to do instead, when a
    /// migration newer than `since` holds DDL that blocks traffic: the
    /// one-line test that keeps such statements from shipping.
    ///
    /// ```ignore
    /// #[test]
    /// fn migrations_do_not_block_traffic() {
    ///     MIGRATIONS.assert_lint_clean();
    /// }
    /// ```
    #[track_caller]
    pub fn assert_lint_clean(&self) {
        let findings = self.lint();
        if !findings.is_empty() {
            let list: Vec<String> = findings.iter().map(ToString::to_string).collect();
            panic!(
                "{} statement(s) would block the application's traffic:\n{}",
                findings.len(),
                list.join("\n")
            );
        }
    }

    /// Panic unless the binary embeds exactly what `dir` holds now: the
    /// one-line test that catches a migration added without a rebuild.
    ///
    /// ```ignore
    /// #[test]
    /// fn embedded_migrations_are_current() {
    ///     MIGRATIONS.assert_matches_dir("migrations");
    /// }
    /// ```
    #[track_caller]
    pub fn assert_matches_dir(&self, dir: impl AsRef<Path>) {
        if let Err(mismatch) = self.diff_dir(dir) {
            panic!("{mismatch}");
        }
    }
}

impl<'a> IntoIterator for &'a Migrations {
    type Item = &'a Migration;
    type IntoIter = std::slice::Iter<'a, Migration>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_down_file_is_named_as_the_folder_scheme_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str| {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "SELECT 1;").unwrap();
        };
        for name in [
            "V1__a.sql",
            "U1__a.sql",
            "2_b.up.sql",
            "2_b.down.sql",
            "2024-01-01-000003_c/up.sql",
            "2024-01-01-000003_c/down.sql",
            "V4__no_down.sql",
        ] {
            write(name);
        }
        let m = Migrations::from_dir(dir.path()).unwrap();
        let downs: Vec<Option<String>> = m
            .iter()
            .map(|m| {
                let file = m.down_file()?;
                Some(file[dir.path().display().to_string().len()..].to_owned())
            })
            .collect();
        assert_eq!(
            downs,
            [
                Some("/U1__a.sql".to_owned()),
                Some("/2_b.down.sql".to_owned()),
                None,
                Some("/2024-01-01-000003_c/down.sql".to_owned()),
            ]
        );
    }

    // What `embed_migrations!` expands to.
    static CHECKSUMS: [u8; 96] = {
        let mut bytes = [0; 96];
        let mut i = 32;
        while i < 96 {
            bytes[i] = (i / 32) as u8;
            i += 1;
        }
        bytes
    };
    static COLUMNS: EmbeddedColumns = EmbeddedColumns {
        versions: &[1, 5, 7],
        names_and_files: "am/V1__a.sqlbm/V5__b.sqlbasem/B7__base.sql",
        lengths: &[1, 11, 1, 11, 4, 14],
        sql: &["SELECT 1;", "VACUUM; SELECT 2", "SELECT 7;"],
        checksums: &CHECKSUMS,
        history_hashes: &[0, 0, 0],
        flags: &[
            0,
            EmbeddedColumns::NO_TRANSACTION | EmbeddedColumns::HAS_DOWN,
            EmbeddedColumns::BASELINE,
        ],
        downs: &["SELECT 0;"],
    };
    static EMBEDDED: Migrations = Migrations::__embedded(&COLUMNS);

    #[test]
    fn lookup_and_order() {
        assert_eq!(
            EMBEDDED.iter().map(Migration::version).collect::<Vec<_>>(),
            [1, 5]
        );
        assert_eq!(
            EMBEDDED.get(5).unwrap().statements(),
            ["VACUUM", "SELECT 2"]
        );
        assert!(EMBEDDED.get(2).is_none());
        assert_eq!(EMBEDDED.head(), Some(7));
        assert_eq!(EMBEDDED.checksum_of(1), Some(Checksum::from_bytes([0; 32])));
        assert_eq!(EMBEDDED.checksum_of(5), Some(Checksum::from_bytes([1; 32])));
        assert_eq!(EMBEDDED.get(5).unwrap().down_sql(), Some("SELECT 0;"));
        assert!(EMBEDDED.get(5).unwrap().no_transaction());
        assert_eq!(EMBEDDED.get(1).unwrap().down_sql(), None);
        assert_eq!(EMBEDDED.baselines()[0].version(), 7);
        assert_eq!(
            (
                EMBEDDED.baselines()[0].name(),
                EMBEDDED.baselines()[0].file()
            ),
            ("base", "m/B7__base.sql")
        );
        assert_eq!(EMBEDDED.get(5).unwrap().file(), "m/V5__b.sql");
    }

    #[test]
    fn from_dir_matches_embedding_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("V2__b.sql"), "SELECT 2;").unwrap();
        std::fs::write(dir.path().join("V1__a.sql"), "SELECT 1;").unwrap();
        let m = Migrations::from_dir(dir.path()).unwrap();
        assert_eq!(
            m.iter().map(Migration::name).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(m.get(1).unwrap().checksum(), Checksum::of(b"SELECT 1;"));
    }
}
