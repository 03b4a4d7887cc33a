//! dbprep's benchmarks, each figure next to its physical baseline measured
//! in the same run, on a local cluster that flushes to disk (`fsync=on`).
//!
//! ```sh
//! cargo run --release --example bench            # writes BENCHMARKS.md
//! cargo run --release --example bench -- --runs 3
//! cargo run --release --example bench -- --only fixture,compile   # prints some rows
//! cargo run --release --example bench -- --peers   # also sqlx and refinery (builds examples/peers)
//! ```
//!
//! Figures: median of the runs with min and max; the ratio is taken per
//! pair (dbprep and its baseline run back to back, in alternating order).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod baseline;
mod chart;
mod handout;
mod link;
mod peers;
mod sqlite;
mod tenants;

use dbprep_runtime::testing::{pool, Bouncer, Cluster, PoolMode};
use dbprep_runtime::{Migrations, Migrator, VerifyReport};

/// How many pairs the figures of a few milliseconds take (fresh apply at
/// N = 10, the start-up applying one migration): at that size one slow
/// moment of the machine moves the median of a few pairs, and more pairs
/// cost only seconds.
fn short_runs(runs: usize) -> usize {
    runs * 4
}

/// One realistic migration of a generated set: tables with constraints and
/// indexes, column changes, plpgsql functions, data, views and comments.
fn migration_sql(i: usize) -> String {
    let k = (i - 1) % 5;
    let base = i - k;
    match k {
        0 => format!(
            "CREATE TABLE t{i} (\n    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n    name text NOT NULL,\n    email text UNIQUE,\n    \
             created_at timestamptz NOT NULL DEFAULT now(),\n    CONSTRAINT t{i}_name_present CHECK (length(name) > 0)\n);\n\
             CREATE INDEX t{i}_name_ix ON t{i} (name);\nCOMMENT ON TABLE t{i} IS 'generated table {i}; holds people';\n"
        ),
        1 => format!(
            "ALTER TABLE t{base} ADD COLUMN note_{i} text;\nALTER TABLE t{base} ADD CONSTRAINT t{base}_note_{i}_check CHECK (note_{i} <> '');\n\
             COMMENT ON COLUMN t{base}.note_{i} IS 'free text';\n"
        ),
        2 => format!(
            "CREATE FUNCTION f{i}(a integer) RETURNS integer\nLANGUAGE plpgsql AS $$\nBEGIN\n    IF a IS NULL THEN\n        RETURN {i};\n    END IF;\n    \
             RETURN a + {i};\nEND;\n$$;\n"
        ),
        3 => format!(
            "INSERT INTO t{base} (name, email)\nSELECT 'name ' || g, 'user{i}_' || g || '@example.com' FROM generate_series(1, 20) AS g;\n"
        ),
        _ => format!(
            "CREATE VIEW v{i} AS SELECT id, name, email FROM t{base} WHERE name LIKE 'name %';\nCOMMENT ON VIEW v{i} IS 'people of t{base}';\n"
        ),
    }
}

/// Write `n` migrations (and their concatenation, for psql) to a folder.
fn generate(n: usize, sql: impl Fn(usize) -> String) -> (tempfile::TempDir, PathBuf, usize) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut all = String::new();
    for i in 1..=n {
        let text = sql(i);
        std::fs::write(dir.path().join(format!("V{i}__m{i}.sql")), &text)
            .expect("write a migration");
        all.push_str(&text);
    }
    let file = dir.path().join("all.sql.txt");
    std::fs::write(&file, &all).expect("write the concatenation");
    (dir, file, all.len())
}

struct Stats {
    median: Duration,
    min: Duration,
    max: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    Stats {
        median: samples[samples.len() / 2],
        min: samples[0],
        max: samples[samples.len() - 1],
    }
}

impl Stats {
    /// `median (min …, max …)`, for a table cell.
    fn cell(&self) -> String {
        format!(
            "{} (min {}, max {})",
            ms(self.median),
            ms(self.min),
            ms(self.max)
        )
    }
}

/// Timings of dbprep and of its baseline, taken in pairs back to back.
#[derive(Default)]
struct Pairs {
    ours: Vec<Duration>,
    theirs: Vec<Duration>,
    ratios: Vec<f64>,
}

impl Pairs {
    fn push(&mut self, ours: Duration, theirs: Duration) {
        self.ratios.push(ours.as_secs_f64() / theirs.as_secs_f64());
        self.ours.push(ours);
        self.theirs.push(theirs);
    }

    /// The median of each side.
    fn medians(&self) -> (Duration, Duration) {
        (
            stats(self.ours.clone()).median,
            stats(self.theirs.clone()).median,
        )
    }

    /// Print the figure and add its row to `table`: dbprep, the baseline
    /// named `baseline`, the median per-pair ratio with its range, and the
    /// target.
    fn report(self, table: &mut String, figure: &str, baseline: &str, target: &str) {
        let (ours, theirs) = (stats(self.ours), stats(self.theirs));
        let (r, rmin, rmax) = ratio_stats(self.ratios);
        let (r, rmin, rmax) = (ratio(r), ratio(rmin), ratio(rmax));
        println!(
            "{figure}: dbprep {} vs {baseline} {} → {r}×",
            ms(ours.median),
            ms(theirs.median)
        );
        writeln!(
            table,
            "| {figure} | {} | {baseline}: {} | **{r}×** ({rmin}–{rmax}) | {target} |",
            ours.cell(),
            theirs.cell()
        )
        .ok();
    }
}

/// A ratio with two significant digits at least: `0.0024` stays readable.
fn ratio(r: f64) -> String {
    if r >= 0.1 {
        format!("{r:.2}")
    } else {
        format!("{r:.2e}")
    }
}

fn ratio_stats(mut ratios: Vec<f64>) -> (f64, f64, f64) {
    ratios.sort_by(f64::total_cmp);
    (
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1],
    )
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.3} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

struct Bench {
    cluster: Cluster,
    admin: tokio_postgres::Client,
    databases: usize,
    /// Fresh apply's medians at each N, for the chart.
    fresh_curve: Vec<chart::Point>,
}

impl Bench {
    /// A new database, with every dirty page of the cluster on disk: a
    /// checkpoint (timed every five minutes, or forced by the WAL that
    /// `CREATE DATABASE` writes) would otherwise land in the middle of
    /// whichever figure runs at that moment.
    async fn fresh_database(&mut self) -> String {
        self.database_from("template1").await
    }

    /// A new database made as a copy of `template` (see
    /// [`fresh_database`](Self::fresh_database)).
    async fn database_from(&mut self, template: &str) -> String {
        self.databases += 1;
        let name = format!("bench_{}", self.databases);
        self.admin
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .await
            .expect("create a database");
        self.admin
            .batch_execute("CHECKPOINT")
            .await
            .expect("checkpoint");
        name
    }

    /// A connection to `database`, after running `sql` on it.
    async fn connect_with(&self, database: &str, sql: &str) -> tokio_postgres::Client {
        let (client, connection) = self
            .cluster
            .config(database)
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        client
            .batch_execute(sql)
            .await
            .expect("prepare the database");
        client
    }

    /// Peak RSS, in KiB, of this program applying `dir` to a fresh
    /// database in a process of its own.
    async fn peak_rss_kib(&mut self, dir: &Path) -> u64 {
        let name = self.fresh_database().await;
        let output = self.child("--apply-dir", dir, &name);
        parse_kib(&String::from_utf8_lossy(&output.stdout))
    }

    /// This program run as `program FLAG DIR` on `database`, pointed at it
    /// by the libpq variables; it must succeed.
    fn child(&self, flag: &str, dir: &Path, database: &str) -> std::process::Output {
        let output = Command::new(std::env::current_exe().expect("own path"))
            .arg(flag)
            .arg(dir)
            .env_remove("DATABASE_URL")
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", self.cluster.port().to_string())
            .env("PGUSER", "postgres")
            .env("PGDATABASE", database)
            .stderr(Stdio::inherit())
            .output()
            .expect("run a child of the bench");
        assert!(output.status.success(), "the child {flag} failed");
        output
    }

    /// `psql`'s options for `database` of the cluster, quiet, without
    /// `.psqlrc`, stopping at the first error.
    fn psql_options(&self, database: &str) -> Vec<String> {
        [
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-p",
            &self.cluster.port().to_string(),
            "-d",
            database,
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// `psql` on `database`, its output thrown away.
    fn psql(&self, database: &str) -> Command {
        let mut command = Command::new(self.cluster.bin_dir().join("psql"));
        command
            .args(self.psql_options(database))
            .stdout(Stdio::null());
        command
    }

    /// dbprep applying `migrations` to a new copy of `template`,
    /// connection included.
    async fn dbprep_apply(&mut self, migrations: &Migrations, template: &str) -> Duration {
        self.dbprep_apply_with(migrations, true, template).await
    }

    /// [`dbprep_apply`](Self::dbprep_apply) storing a full schema snapshot
    /// or, with `itemize` false, the fingerprint alone.
    async fn dbprep_apply_with(
        &mut self,
        migrations: &Migrations,
        itemize: bool,
        template: &str,
    ) -> Duration {
        let name = self.database_from(template).await;
        timed_apply(&pool(self.cluster.config(&name), 2), migrations, itemize).await
    }

    /// `psql -1 -f file` on a new copy of `template`, connection included.
    async fn psql_apply(&mut self, file: &Path, template: &str) -> Duration {
        let name = self.database_from(template).await;
        let started = Instant::now();
        let status = self
            .psql(&name)
            .args(["-1", "-f"])
            .arg(file)
            .status()
            .expect("run psql");
        let elapsed = started.elapsed();
        assert!(status.success(), "psql failed");
        elapsed
    }
}

/// Apply `migrations` through `pool`, storing a full schema snapshot or,
/// with `itemize` false, which objects exist: how long it took, connection
/// included. Checks that the set was applied to its newest version.
async fn timed_apply(
    pool: &deadpool_postgres::Pool,
    migrations: &Migrations,
    itemize: bool,
) -> Duration {
    let started = Instant::now();
    let report = Migrator::new(migrations)
        .schema_snapshot(itemize)
        .run(pool)
        .await
        .expect("dbprep applies the set");
    let elapsed = started.elapsed();
    let head = migrations.iter().last().map(|m| m.version());
    assert_eq!(report.version, head, "dbprep applies the set");
    elapsed
}

/// The child process of the memory figure: apply a folder, print the peak
/// resident set size.
async fn apply_dir_and_report_memory(folder: &str) {
    let migrations = Migrations::from_dir(folder).expect("read the folder");
    let config = dbprep_runtime::pg::connect::config::from_env().expect("libpq variables");
    let report = Migrator::new(&migrations)
        .run(&pool(config, 1))
        .await
        .expect("apply");
    assert_eq!(report.applied.len(), migrations.len());
    print_peak_rss();
}

/// Print this process's peak resident set size (`VmHWM: … kB`), which the
/// parent reads with [`parse_kib`].
fn print_peak_rss() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .unwrap_or("VmHWM: 0 kB");
    println!("{peak}");
}

/// Incremental release rebuild of a crate embedding 1,000 migrations after
/// one file is edited, next to the same crate with `include_str!`s.
fn compile_time(table: &mut String, runs: usize) {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("workspace");
    let root = tempfile::tempdir().expect("temporary directory");
    let target = root.path().join("target");
    let migrations = root.path().join("migrations");
    std::fs::create_dir(&migrations).expect("mkdir");
    for i in 1..=1000 {
        std::fs::write(migrations.join(format!("V{i}__m{i}.sql")), migration_sql(i))
            .expect("write");
    }
    let make = |name: &str, main: String| {
        let dir = root.path().join(name);
        std::fs::create_dir_all(dir.join("src")).expect("mkdir");
        std::fs::write(
            dir.join("Cargo.toml"),
            format!(
                "[package]\nname = \"{name}\"\nversion = \"0.0.0\"\nedition = \"2021\"\n[workspace]\n[dependencies]\n\
                 dbprep-runtime = {{ path = \"{w}/dbprep-runtime\", default-features = false }}\n\
                 dbprep-macros = {{ path = \"{w}/dbprep-macros\" }}\n",
                w = workspace.display()
            ),
        )
        .expect("write");
        std::fs::copy(workspace.join("Cargo.lock"), dir.join("Cargo.lock")).expect("lock");
        std::fs::write(dir.join("src/main.rs"), main).expect("write");
        dir
    };
    let embedded = make(
        "embedded",
        format!(
            "static M: dbprep_runtime::Migrations = dbprep_macros::embed_migrations!(\"{}\");\nfn main() {{ println!(\"{{}}\", M.len()); }}\n",
            migrations.display()
        ),
    );
    let includes: String = (1..=1000)
        .map(|i| format!("include_str!(\"{}/V{i}__m{i}.sql\"),", migrations.display()))
        .collect();
    // The same crate with the macro replaced: it still uses dbprep (here
    // an empty set), so both binaries link dbprep-runtime and the ratio is
    // the macro's. Also next to a crate that links nothing of dbprep, as
    // measured before (its link is 12-23 ms shorter in the runs measured).
    let linked = make(
        "linked",
        format!(
            "static M: [&str; 1000] = [{includes}];\n\
             fn main() {{ println!(\"{{}} {{}}\", M.len(), dbprep_runtime::Migrations::empty().len()); }}\n"
        ),
    );
    let plain = make(
        "plain",
        format!("static M: [&str; 1000] = [{includes}];\nfn main() {{ println!(\"{{}}\", M.len()); }}\n"),
    );
    let build = |dir: &Path| {
        let started = Instant::now();
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "--quiet", "--offline"])
            .current_dir(dir)
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .expect("cargo build");
        assert!(status.success(), "build of {} failed", dir.display());
        started.elapsed()
    };
    println!("compile time: first builds (not measured) …");
    build(&embedded);
    build(&linked);
    build(&plain);
    let (mut pairs, mut unlinked) = (Pairs::default(), Pairs::default());
    for run in 0..runs {
        let file = migrations.join("V500__m500.sql");
        std::fs::write(&file, format!("{}-- edit {run}\n", migration_sql(500))).expect("edit");
        let a = build(&embedded);
        pairs.push(a, build(&linked));
        unlinked.push(a, build(&plain));
    }
    pairs.report(
        table,
        "incremental release rebuild, 1,000 embedded files, one edited",
        "1,000 `include_str!` in a static array, dbprep-runtime linked",
        "≤ 1.5×",
    );
    unlinked.report(
        table,
        "the same, next to a crate that does not link dbprep-runtime",
        "1,000 `include_str!` in a static array",
        "—",
    );
}

fn parse_kib(line: &str) -> u64 {
    line.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The figures, in the order they run; `--only a,b` picks some of them.
const FIGURES: [&str; 13] = [
    "apply", "startup", "link", "noop", "verify", "fixture", "memory", "replicas", "sqlite",
    "handout", "baseline", "tenants", "compile",
];

/// The set of the replicas figure: transactional migrations, a
/// no-transaction `CREATE INDEX CONCURRENTLY` on a table with rows, and
/// more after it.
const REPLICA_SET: [(&str, &str); 5] = [
    (
        "V1__accounts.sql",
        "CREATE TABLE accounts (id bigint PRIMARY KEY, owner text NOT NULL);\n\
         INSERT INTO accounts SELECT g, 'owner ' || g % 997 FROM generate_series(1, 50000) AS g;",
    ),
    (
        "V2__events.sql",
        "CREATE TABLE events (id bigint PRIMARY KEY, account_id bigint REFERENCES accounts);",
    ),
    (
        "V3__index_accounts_by_owner.sql",
        "-- dbprep:no-transaction\n\
         CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_accounts_owner ON accounts (owner);",
    ),
    (
        "V4__events_at.sql",
        "ALTER TABLE events ADD COLUMN at timestamptz NOT NULL DEFAULT now();",
    ),
    (
        "V5__recent_events.sql",
        "CREATE VIEW recent_events AS SELECT * FROM events WHERE at > now() - interval '1 day';",
    ),
];

/// The child process of the replicas figure: wait for standard input to
/// close (the barrier that releases every replica at once), apply a
/// folder in a lock mode, print how many tries the lock took.
async fn migrate_after_barrier(folder: &str, mode: &str) {
    use std::io::Read as _;
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    let migrations = Migrations::from_dir(folder).expect("read the folder");
    let config = dbprep_runtime::pg::connect::config::from_env().expect("libpq variables");
    let report = Migrator::new(&migrations)
        .lock_mode(mode.parse().expect("a lock mode"))
        .run(&pool(config, 1))
        .await
        .expect("apply");
    println!("tries {}", report.lock.map_or(0, |l| l.tries));
}

impl Bench {
    /// Fresh apply of N = 10, 100, 1,000 migrations, next to `psql -1 -f`
    /// of the same SQL.
    async fn fresh_apply(&mut self, runs: usize, table: &mut String) {
        for n in [10, 100, 1000] {
            let (dir, file, bytes) = generate(n, migration_sql);
            let migrations =
                Migrations::from_dir(dir.path()).expect("generated migrations are valid");
            let mut pairs = Pairs::default();
            let runs = if n == 10 { short_runs(runs) } else { runs };
            // At N = 1,000 also the floor of the design: the same
            // migrations, one transaction each, pipelined, no bookkeeping.
            let (mut floors, mut floor_ratios, mut over_floor) =
                (Vec::new(), Vec::new(), Vec::new());
            for run in 0..runs {
                // The floor takes each of the three places in turn: the
                // cluster slows down as it fills with databases.
                let floor_at = |place: usize| n == 1000 && run % 3 == place;
                let mut floor = None;
                if floor_at(0) {
                    floor = Some(self.transactions_alone(&migrations).await);
                }
                let (a, b) = if run % 2 == 0 {
                    let a = self.dbprep_apply(&migrations, "template1").await;
                    if floor_at(1) {
                        floor = Some(self.transactions_alone(&migrations).await);
                    }
                    (a, self.psql_apply(&file, "template1").await)
                } else {
                    let b = self.psql_apply(&file, "template1").await;
                    if floor_at(1) {
                        floor = Some(self.transactions_alone(&migrations).await);
                    }
                    (self.dbprep_apply(&migrations, "template1").await, b)
                };
                if floor_at(2) {
                    floor = Some(self.transactions_alone(&migrations).await);
                }
                pairs.push(a, b);
                if let Some(f) = floor {
                    floor_ratios.push(f.as_secs_f64() / b.as_secs_f64());
                    over_floor.push(a.as_secs_f64() / f.as_secs_f64());
                    floors.push(f);
                }
            }
            let (dbprep, psql) = pairs.medians();
            self.fresh_curve.push(chart::Point { n, dbprep, psql });
            pairs.report(
                table,
                &format!("fresh apply, N = {n} ({} KB of SQL)", bytes / 1024),
                "`psql -1 -f`",
                match n {
                    10 => "≤ 1.15×",
                    1000 => "≤ 0.9×",
                    _ => "—",
                },
            );
            if n == 1000 {
                let (f, (r, rmin, rmax)) = (stats(floors), ratio_stats(floor_ratios));
                let (over, _, _) = ratio_stats(over_floor);
                println!("per-migration transactions alone N=1000: {} → {r:.2}× psql -1; dbprep {over:.2}× this floor", ms(f.median));
                writeln!(
                    table,
                    "| the floor of per-migration transactions, N = 1,000: each migration in `BEGIN; …; COMMIT`, pipelined, no bookkeeping (dbprep: **{over:.2}×** this) | {} | `psql -1 -f`, as above | **{r:.2}×** ({rmin:.2}–{rmax:.2}) | — |",
                    f.cell()
                )
                .ok();
            }
        }
    }

    /// The same migrations as dbprep applies them, without anything of
    /// dbprep's: one transaction each (committed asynchronously but the
    /// last), written ahead in one stream. Connection included, as for the
    /// others.
    async fn transactions_alone(&mut self, migrations: &Migrations) -> Duration {
        use futures_util::StreamExt;
        let name = self.fresh_database().await;
        let started = Instant::now();
        let client = self.connect_with(&name, "").await;
        let last = migrations.len() - 1;
        let mut replies = futures_util::stream::iter(migrations.iter().enumerate())
            .map(|(i, m)| {
                let asynchronous = if i < last {
                    "SET LOCAL synchronous_commit = off;\n"
                } else {
                    ""
                };
                let message = format!("BEGIN;\n{asynchronous}{}\n;\nCOMMIT;", m.sql());
                let client = &client;
                async move { client.simple_query(&message).await.map(drop) }
            })
            .buffered(64);
        while let Some(reply) = replies.next().await {
            reply.expect("a migration applies");
        }
        started.elapsed()
    }

    /// Start-up after a deploy: one new migration (a table with its
    /// indexes) on a database where the N = 1,000 set is applied (200
    /// tables), next to `psql -1 -f` of that one file. Connection included.
    /// The schema snapshot is refreshed for what the migration wrote.
    async fn startup(&mut self, runs: usize, table: &mut String) {
        let (dir, _file, _) = generate(1001, migration_sql);
        let migrations = Migrations::from_dir(dir.path()).expect("generated migrations are valid");
        let file = dir.path().join("V1001__m1001.sql");
        for (itemize, figure, target) in [
            (true, "start-up applying 1 new migration to the N = 1,000 database (200 tables)", "≤ 1.5×"),
            (false, "the same with `schema_snapshot(false)`: which objects exist, without definitions (verify then sees a change, not what)", "—"),
        ] {
            // Migrated the same way, so that the run refreshes its snapshot
            // rather than replacing one of the other kind.
            let template = self.fresh_database().await;
            let pool = pool(self.cluster.config(&template), 1);
            let _ = Migrator::new(&migrations)
                .schema_snapshot(itemize)
                .target(1000)
                .run(&pool)
                .await
                .expect("apply the first 1,000");
            // A template must have no connections left.
            drop(pool);
            let mut pairs = Pairs::default();
            for run in 0..short_runs(runs) {
                let (a, b) = if run % 2 == 0 {
                    let a = self.dbprep_apply_with(&migrations, itemize, &template).await;
                    (a, self.psql_apply(&file, &template).await)
                } else {
                    let b = self.psql_apply(&file, &template).await;
                    (self.dbprep_apply_with(&migrations, itemize, &template).await, b)
                };
                pairs.push(a, b);
            }
            pairs.report(table, figure, "`psql -1 -f` of that file", target);
        }
    }

    /// A database with the N = 1,000 set applied, and a client on it.
    async fn applied_thousand(&mut self) -> (Migrations, tokio_postgres::Client) {
        let (dir, _file, _) = generate(1000, migration_sql);
        let migrations = Migrations::from_dir(dir.path()).expect("generated migrations are valid");
        let name = self.fresh_database().await;
        let pool = pool(self.cluster.config(&name), 1);
        let _ = Migrator::new(&migrations).run(&pool).await.expect("apply");
        let (client, connection) = self
            .cluster
            .config(&name)
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        (migrations, client)
    }

    /// No-op start-up at N = 1,000, connection excluded, next to `SELECT 1`.
    async fn noop(&mut self, runs: usize, table: &mut String) {
        let (migrations, client) = self.applied_thousand().await;
        let migrator = Migrator::new(&migrations);
        let mut pairs = Pairs::default();
        for _ in 0..(runs * 10).max(20) {
            let started = Instant::now();
            let report = migrator.run_on(&client).await.expect("no-op run");
            let a = started.elapsed();
            assert!(report.was_up_to_date());
            let started = Instant::now();
            client.simple_query("SELECT 1").await.expect("SELECT 1");
            pairs.push(a, started.elapsed());
        }
        pairs.report(
            table,
            "no-op start-up, N = 1,000 applied, connection excluded (1 statement)",
            "one `SELECT 1` round trip",
            "1 round trip, ≤ 2×",
        );
    }

    /// `verify` at N = 1,000 applied and 200 tables, schema snapshot
    /// compared: on the schema as applied (no catalog row written since),
    /// then after a hand-made change (that table's objects compared, stored
    /// and live, to say what changed).
    async fn verify(&mut self, runs: usize, table: &mut String) {
        let (migrations, client) = self.applied_thousand().await;
        let migrator = Migrator::new(&migrations);
        let time = |count: usize, check: fn(&VerifyReport) -> bool| {
            let (migrator, client) = (&migrator, &client);
            async move {
                let mut samples = Vec::new();
                for _ in 0..count {
                    let started = Instant::now();
                    let report = migrator.verify_on(client).await.expect("verify");
                    samples.push(started.elapsed());
                    assert!(check(&report), "{report}");
                }
                stats(samples)
            }
        };
        let clean = time((runs * 4).max(10), |r| {
            r.findings.is_empty() && r.notes.is_empty()
        })
        .await;
        client
            .batch_execute("ALTER TABLE t1 ADD COLUMN hand_made text")
            .await
            .expect("a hand-made change");
        let changed = time(runs.max(5), |r| r.to_string().contains("hand_made")).await;
        println!(
            "verify N=1000, 200 tables: {}; after a hand-made change: {}",
            ms(clean.median),
            ms(changed.median)
        );
        writeln!(
            table,
            "| `verify` with schema snapshot, N = 1,000 applied, 200 tables | {} | — | — | ≤ 50 ms |\n\
             | `verify` after a hand-made `ADD COLUMN`, same database (the changed table's objects compared, the change itemized) | {} | — | — | — |",
            clean.cell(),
            changed.cell()
        )
        .ok();
    }

    /// Fixture populate, 100,000 rows in one table, next to `COPY FROM
    /// STDIN` of the same rows.
    async fn fixture(&mut self, runs: usize, table: &mut String) {
        let rows = 100_000;
        let items_table =
            "CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, price numeric(12, 2), \
                     tags text[], created_at timestamptz, doc jsonb)";
        let mut json = String::from("{\"items\": [");
        let mut csv = String::new();
        for i in 0..rows {
            if i > 0 {
                json.push(',');
            }
            write!(
                json,
                r#"{{"id": {i}, "name": "item {i}", "price": {}.{:02}, "tags": ["a", "b{i}"], "created_at": "2024-01-01 00:00:{:02}+00", "doc": {{"n": {i}}}}}"#,
                i % 1000, i % 100, i % 60
            )
            .ok();
            writeln!(
                csv,
                "{i},item {i},{}.{:02},\"{{a,b{i}}}\",2024-01-01 00:00:{:02}+00,\"{{\"\"n\"\": {i}}}\"",
                i % 1000,
                i % 100,
                i % 60
            )
            .ok();
        }
        json.push_str("]}");
        let fixture = dbprep_runtime::Fixture::from_text(
            "items".into(),
            "items.json".into(),
            json.as_bytes(),
        )
        .expect("valid fixture");
        let csv: &'static [u8] = Box::leak(csv.into_bytes().into_boxed_slice());
        let mut pairs = Pairs::default();
        for _ in 0..runs {
            let a_db = self.fresh_database().await;
            let b_db = self.fresh_database().await;
            // dbprep's side only needs the table; its client goes.
            drop(self.connect_with(&a_db, items_table).await);
            let b_client = self.connect_with(&b_db, items_table).await;
            self.admin
                .batch_execute("CHECKPOINT")
                .await
                .expect("checkpoint");
            let fixture_pool = dbprep_runtime::testing::pool(self.cluster.config(&a_db), 1);
            let started = Instant::now();
            static NO_MIGRATIONS: Migrations = Migrations::empty();
            let report = Migrator::new(&NO_MIGRATIONS)
                .populate(&fixture_pool, &fixture, None)
                .await
                .expect("populate");
            let a = started.elapsed();
            assert_eq!(report.rows, rows as u64);
            let started = Instant::now();
            let sink = b_client
                .copy_in::<_, &'static [u8]>("COPY items FROM STDIN (FORMAT csv)")
                .await
                .expect("copy");
            futures_util::pin_mut!(sink);
            futures_util::SinkExt::send(&mut sink, csv)
                .await
                .expect("send");
            let copied = sink.finish().await.expect("finish copy");
            let b = started.elapsed();
            assert_eq!(copied, rows as u64);
            pairs.push(a, b);
        }
        pairs.report(
            table,
            "fixture populate, 100,000 rows in one table",
            "`COPY … FROM STDIN` (CSV)",
            "≤ 2× COPY",
        );
    }

    /// Peak memory of a process applying 1,000 migrations of 10 MB in all.
    /// 32 replicas released together on a fresh database, next to one
    /// process alone on the same set: the wall time until the last one
    /// exits, directly (session lock) and through PgBouncer in
    /// transaction mode (the lease); and the tries of the waiting ones.
    async fn replicas(&mut self, runs: usize, table: &mut String) {
        const REPLICAS: usize = 32;
        let dir = tempfile::tempdir().expect("a temporary folder");
        for (name, sql) in REPLICA_SET {
            std::fs::write(dir.path().join(name), sql).expect("write the set");
        }
        let bouncer =
            Bouncer::start(&self.cluster, PoolMode::Transaction).expect("start PgBouncer");
        let routes = [
            ("directly", self.cluster.port(), "session"),
            (
                "through PgBouncer in transaction mode",
                bouncer.port(),
                "transaction",
            ),
        ];
        for (route, port, mode) in routes {
            let mut pairs = Pairs::default();
            let mut tries = Vec::new();
            for run in 0..runs {
                let (one_db, many_db) = (self.fresh_database().await, self.fresh_database().await);
                let alone_first = run % 2 == 0;
                let mut alone = Duration::ZERO;
                if alone_first {
                    alone = self.release(&one_db, port, dir.path(), mode, 1).0;
                }
                let (together, run_tries) =
                    self.release(&many_db, port, dir.path(), mode, REPLICAS);
                if !alone_first {
                    alone = self.release(&one_db, port, dir.path(), mode, 1).0;
                }
                tries.extend(run_tries.into_iter().filter(|t| *t > 1));
                pairs.push(together, alone);
            }
            pairs.report(
                table,
                &format!("{REPLICAS} processes started together {route} on a fresh database, 5 migrations with a `CREATE INDEX CONCURRENTLY` (until the last exits)"),
                "one process alone",
                "0 failures",
            );
            tries.sort();
            let (median, max) = (tries[tries.len() / 2], tries[tries.len() - 1]);
            println!(
                "{route}: a waiting process tried the lock {median} times (median; at most {max})"
            );
            writeln!(
                table,
                "| what a waiting process sends {route}: per try one `pg_try_advisory_lock` (or one short lease transaction) and, from the second on, one read of the history digest; one holder lookup | {median} tries (median; at most {max}) | — | — | — |"
            )
            .ok();
        }
    }

    /// Start `count` replica processes on `database` through `port`, each
    /// blocked on its input, release them together and wait for every
    /// one: the wall time, and each process's lock tries.
    fn release(
        &self,
        database: &str,
        port: u16,
        dir: &Path,
        mode: &str,
        count: usize,
    ) -> (Duration, Vec<u32>) {
        let mut children: Vec<_> = (0..count)
            .map(|_| {
                Command::new(std::env::current_exe().expect("own path"))
                    .arg("--replica")
                    .arg(dir)
                    .arg(mode)
                    .env_remove("DATABASE_URL")
                    .env("PGHOST", "127.0.0.1")
                    .env("PGPORT", port.to_string())
                    .env("PGUSER", "postgres")
                    .env("PGDATABASE", database)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("start a replica")
            })
            .collect();
        // Every process is started and connected to nothing yet.
        std::thread::sleep(Duration::from_millis(200));
        let inputs: Vec<_> = children.iter_mut().map(|c| c.stdin.take()).collect();
        let started = Instant::now();
        drop(inputs);
        let tries = children
            .into_iter()
            .map(|child| {
                let output = child.wait_with_output().expect("wait for a replica");
                assert!(output.status.success(), "a replica failed");
                String::from_utf8_lossy(&output.stdout)
                    .trim()
                    .strip_prefix("tries ")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0)
            })
            .collect();
        (started.elapsed(), tries)
    }

    async fn memory(&mut self, table: &mut String) {
        let payload = "x".repeat(10_000);
        let (dir, _file, bytes) = generate(1000, |i| {
            format!(
                "CREATE TABLE mem{i} (payload text);\nINSERT INTO mem{i} VALUES ('{payload}');\n"
            )
        });
        let peak_kib = self.peak_rss_kib(dir.path()).await;
        // The same process applying nothing: what the binary and runtime cost
        // before any SQL is read.
        let empty = tempfile::tempdir().expect("temporary directory");
        std::fs::write(empty.path().join("V1__x.sql"), "SELECT 1;").expect("write");
        let idle_kib = self.peak_rss_kib(empty.path()).await;
        let sql_kib = (bytes / 1024) as u64;
        let ratio = peak_kib as f64 / sql_kib as f64;
        let above_idle = peak_kib.saturating_sub(idle_kib) as f64 / sql_kib as f64;
        println!("peak memory: {peak_kib} KiB for {sql_kib} KiB of SQL → {ratio:.2}× ({above_idle:.2}× above an idle run's {idle_kib} KiB)");
        writeln!(
            table,
            "| peak RSS applying 1,000 migrations from a folder | {} MiB (an idle run: {} MiB) | SQL size: {} MiB | **{ratio:.2}×** ({above_idle:.2}× counting only what the SQL adds) | ≤ 3× |",
            peak_kib / 1024, idle_kib / 1024, sql_kib / 1024
        )
        .ok();
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--apply-dir") {
        return apply_dir_and_report_memory(&args[2]).await;
    }
    if args.get(1).map(String::as_str) == Some("--import-sqlite") {
        return sqlite::import_and_report_memory(&args[2]).await;
    }
    if args.get(1).map(String::as_str) == Some("--replica") {
        return migrate_after_barrier(&args[2], &args[3]).await;
    }
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
    };
    let runs: usize = value("--runs").and_then(|r| r.parse().ok()).unwrap_or(5);
    let with_peers = args.iter().any(|a| a == "--peers");
    let mut only: Vec<&str> = match value("--only") {
        Some(list) => list.split(',').collect(),
        None => FIGURES.to_vec(),
    };
    if let Some(unknown) = only.iter().find(|f| !FIGURES.contains(f) && **f != "peers") {
        eprintln!(
            "unknown figure '{unknown}'; the figures are {} and peers",
            FIGURES.join(", ")
        );
        std::process::exit(2);
    }
    if with_peers && !only.contains(&"peers") {
        only.push("peers");
    }
    let full = FIGURES.iter().all(|f| only.contains(f));
    let mut peer_rows = String::new();
    let mut table = String::new();

    println!("starting a local PostgreSQL with fsync=on …");
    let cluster = Cluster::start_durable().expect("start a cluster");
    let (admin, connection) = cluster
        .config("postgres")
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let version = admin
        .simple_query("SHOW server_version")
        .await
        .ok()
        .and_then(|messages| {
            messages.into_iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })
        });
    let mut bench = Bench {
        cluster,
        admin,
        databases: 0,
        fresh_curve: Vec::new(),
    };
    for figure in &only {
        match *figure {
            "apply" => bench.fresh_apply(runs, &mut table).await,
            "startup" => bench.startup(runs, &mut table).await,
            "link" => bench.link(runs, &mut table).await,
            "noop" => bench.noop(runs, &mut table).await,
            "verify" => bench.verify(runs, &mut table).await,
            "fixture" => bench.fixture(runs, &mut table).await,
            "memory" => bench.memory(&mut table).await,
            "replicas" => bench.replicas(runs, &mut table).await,
            "peers" => bench.peers(runs, &mut peer_rows).await,
            "sqlite" => bench.sqlite(runs, &mut table).await,
            "handout" => bench.handout(runs, &mut table).await,
            "baseline" => bench.baseline(runs, &mut table).await,
            "tenants" => bench.tenants(runs, &mut table).await,
            _ => compile_time(&mut table, runs),
        }
    }
    if !full {
        // A partial run prints its rows and leaves BENCHMARKS.md alone.
        return println!("{table}{peer_rows}");
    }

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().map(|l| parse_kib(l) / 1024 / 1024))
        .unwrap_or(0);
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../BENCHMARKS.md");
    // Without `--peers` the peers section measured before is kept.
    let peers = if with_peers {
        peers::section(&peer_rows, runs, &peers::versions())
    } else {
        std::fs::read_to_string(&path)
            .ok()
            .and_then(|old| old.find(peers::HEADING).map(|at| old[at..].to_owned()))
            .unwrap_or_default()
    };
    let chart_link = chart::link();
    let document = format!(
        "# Benchmarks\n\n\
         Measured {date} with `cargo run --release --example bench -- --runs {runs}` on {cores} cores and {memory} GiB, \
         PostgreSQL {version}, a local cluster with the server's default settings (`fsync=on`, no preloaded library), client and server on one machine.\n\
         Each figure is the median of {runs} runs (fresh apply at N = 10 and the start-up applying 1 new migration: {short} runs; no-op: {noop} runs) \
         with min and max; the ratio is taken per pair, \
         dbprep and its baseline back to back in alternating order.\n\n\
         | figure | dbprep | baseline | ratio (median, min–max) | target |\n|---|---|---|---|---|\n{table}\n\
         {link_note}\n\n{compile_note}\n\n{chart}{peers}",
        chart = chart_link,
        version = version.unwrap_or_default(),
        noop = (runs * 10).max(20),
        short = short_runs(runs),
        link_note = "Over a link: the client reaches the cluster through a relay on the same machine that holds every chunk \
             for half a round trip in each direction, as a network to a database on another machine does; a client turn \
             is a write that follows a reply, the round trips the network makes the client wait for.",
        compile_note = "Compile time: a crate of 1,000 migration files, `cargo build --release` after editing one file, \
             next to the same crate with the macro replaced by 1,000 `include_str!` in a static array. The baseline \
             still uses dbprep (an empty `Migrations`), so both link dbprep-runtime and the ratio is the macro's; \
             the row after it compares with a crate that links nothing of dbprep.",
    );
    std::fs::write(&path, document).expect("write BENCHMARKS.md");
    let picture = path.with_file_name(chart::FILE_NAME);
    std::fs::write(&picture, chart::svg(&bench.fresh_curve)).expect("write the chart");
    println!("wrote {}", picture.display());
    println!("wrote {}", path.display());
}
