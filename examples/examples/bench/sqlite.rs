//! `import-sqlite` of a 1,000,000-row table next to `COPY` of the same
//! rows, already converted, from a CSV file (`psql`'s `\copy`); both as
//! whole processes, with their peak memory.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dbprep_runtime::{ImportOptions, Migrator};

use super::{ms, parse_kib, print_peak_rss, ratio_stats, stats, Bench, Pairs};

/// Rows in the table.
const ROWS: i64 = 1_000_000;

/// The target table, as the migration that the import applies makes it.
const SCHEMA: &str = "CREATE TABLE accounts (
    id bigint PRIMARY KEY,
    token uuid NOT NULL,
    active boolean NOT NULL,
    created_at timestamptz NOT NULL,
    balance numeric NOT NULL,
    note text
);";

/// Write the SQLite file (the shapes a legacy application leaves: UUIDs
/// as 32 hex digits, booleans as 0/1, naive date-times, reals) and the
/// same rows as PostgreSQL reads them, as CSV.
fn write_sources(dir: &Path) {
    let connection = rusqlite::Connection::open(dir.join("legacy.db")).expect("create SQLite file");
    connection
        .execute_batch(&format!(
            "CREATE TABLE accounts (id INTEGER PRIMARY KEY, token CHAR(32), active BOOLEAN, created_at DATETIME, balance REAL, note TEXT);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS})
             INSERT INTO accounts SELECT i, printf('%032x', i * 2654435761), i % 2,
                 strftime('%Y-%m-%d %H:%M:%S', 1700000000 + i, 'unixepoch'), i / 100.0,
                 CASE WHEN i % 10 = 0 THEN NULL ELSE 'account number ' || i END FROM n;"
        ))
        .expect("fill the SQLite file");
    let mut csv = String::with_capacity(80 * ROWS as usize);
    let mut statement = connection
        .prepare("SELECT id, token, active, created_at, balance, note FROM accounts ORDER BY id")
        .expect("read back");
    let mut rows = statement.query([]).expect("read back");
    while let Some(row) = rows.next().expect("read back") {
        let token: String = row.get(1).expect("token");
        let note: Option<String> = row.get(5).expect("note");
        let _ = writeln!(
            csv,
            "{},{}-{}-{}-{}-{},{},{}+00,{},{}",
            row.get::<_, i64>(0).expect("id"),
            &token[..8],
            &token[8..12],
            &token[12..16],
            &token[16..20],
            &token[20..],
            if row.get::<_, i64>(2).expect("active") == 1 {
                "t"
            } else {
                "f"
            },
            row.get::<_, String>(3).expect("created_at"),
            row.get::<_, f64>(4).expect("balance"),
            note.unwrap_or_default()
        );
    }
    std::fs::write(dir.join("accounts.csv"), csv).expect("write the CSV");
    std::fs::write(dir.join("V1__accounts.sql"), SCHEMA).expect("write the migration");
}

/// The child process of the figure: import the file into the database the
/// libpq variables name, print the peak resident set size.
pub(super) async fn import_and_report_memory(dir: &str) {
    let dir = Path::new(dir);
    let migrations =
        dbprep_runtime::Migrations::from_dir(dir.join("migrations")).expect("read the migration");
    let config = dbprep_runtime::pg::connect::config::from_env().expect("libpq variables");
    let report = Migrator::new(&migrations)
        .import_sqlite(
            &dbprep_runtime::testing::pool(config, 1),
            dir.join("legacy.db"),
            &ImportOptions::default(),
        )
        .await
        .expect("import");
    assert_eq!(report.rows, ROWS as u64);
    print_peak_rss();
}

impl Bench {
    /// The figure: import and `\copy`, in pairs, each on a new database.
    pub(super) async fn sqlite(&mut self, runs: usize, table: &mut String) {
        let dir = tempfile::tempdir().expect("temporary directory");
        write_sources(dir.path());
        std::fs::create_dir(dir.path().join("migrations")).expect("mkdir");
        std::fs::rename(
            dir.path().join("V1__accounts.sql"),
            dir.path().join("migrations/V1__accounts.sql"),
        )
        .expect("move the migration");
        let (mut pairs, mut memory, mut copy_memory) = (Pairs::default(), Vec::new(), Vec::new());
        for run in 0..runs {
            let (a, b) = if run % 2 == 0 {
                let a = self.import_child(dir.path()).await;
                (a, self.copy_csv(dir.path()).await)
            } else {
                let b = self.copy_csv(dir.path()).await;
                (self.import_child(dir.path()).await, b)
            };
            pairs.push(a.0, b.0);
            memory.push(a.1);
            copy_memory.push(b.1);
        }
        memory.sort_unstable();
        copy_memory.sort_unstable();
        let (ours, theirs) = (stats(pairs.ours), stats(pairs.theirs));
        let (r, rmin, rmax) = ratio_stats(pairs.ratios);
        println!(
            "sqlite import 1M rows: {} vs \\copy {} → {r:.2}×, peak RSS {} KiB",
            ms(ours.median),
            ms(theirs.median),
            memory[memory.len() / 2]
        );
        let _ = writeln!(
            table,
            "| `import-sqlite` of a 1,000,000-row table (6 columns: uuid, boolean, timestamptz, numeric converted), whole process; peak RSS {} MiB | {} | `psql \\copy` of the same rows, converted, from CSV: {}; peak RSS {} MiB | **{r:.2}×** ({rmin:.2}–{rmax:.2}) | — |",
            memory[memory.len() / 2] / 1024,
            ours.cell(),
            theirs.cell(),
            copy_memory[copy_memory.len() / 2] / 1024,
        );
    }

    /// This program importing the folder's SQLite file into a new
    /// database, in a process of its own: (time, peak RSS in KiB).
    async fn import_child(&mut self, dir: &Path) -> (Duration, u64) {
        let name = self.fresh_database().await;
        let started = Instant::now();
        let output = self.child("--import-sqlite", dir, &name);
        (
            started.elapsed(),
            parse_kib(&String::from_utf8_lossy(&output.stdout)),
        )
    }

    /// The baseline: the migration by psql, then `\copy` of the CSV, on a
    /// new database; (time of the copy, peak RSS of psql in KiB).
    async fn copy_csv(&mut self, dir: &Path) -> (Duration, u64) {
        let name = self.fresh_database().await;
        // GNU time gives psql's peak memory, where it is installed.
        let time = Path::new("/usr/bin/time");
        let psql = |args: &[&str]| {
            let mut command = if time.exists() {
                let mut c = Command::new(time);
                c.args(["-f", "VmHWM: %M kB"])
                    .arg(self.cluster.bin_dir().join("psql"))
                    .args(self.psql_options(&name))
                    .stdout(Stdio::null());
                c
            } else {
                self.psql(&name)
            };
            command.args(args);
            command
        };
        let status = psql(&["-c", SCHEMA])
            .stderr(Stdio::null())
            .status()
            .expect("run psql");
        assert!(status.success(), "psql failed");
        let copy = format!(
            "\\copy accounts FROM '{}' (FORMAT csv)",
            dir.join("accounts.csv").display()
        );
        let started = Instant::now();
        let output = psql(&["-c", &copy]).output().expect("run psql");
        let elapsed = started.elapsed();
        assert!(output.status.success(), "\\copy failed");
        (elapsed, parse_kib(&String::from_utf8_lossy(&output.stderr)))
    }
}
