//! dbprep next to sqlx and refinery (and `psql -1 -f`): the same generated
//! migrations applied by whole processes, each program embedding its set at
//! compile time as its users do (`examples/peers`, a crate outside the
//! workspace that this figure builds). Fresh apply at N = 10, 100 and 1,000,
//! then the no-op start-up: the same program run again on the database it
//! has just migrated.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::link::{self, Link};
use super::{migration_sql, ms, ratio_stats, stats, Bench};

/// The programs measured, as `examples/peers` builds them.
const TOOLS: [&str; 3] = ["dbprep", "sqlx", "refinery"];

/// The peers crate.
fn crate_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers")
}

/// Write the generated sets where the peers crate embeds them: Flyway's
/// names (`V1__m1.sql`, read by dbprep and refinery) and sqlx's
/// (`1_m1.sql`). A file is only written when it differs, so that an
/// unchanged set does not rebuild the programs. Returns the concatenation
/// of each set, for psql.
fn write_sets(sizes: &[usize]) -> Vec<PathBuf> {
    let sets = crate_dir().join("sets");
    let write = |path: PathBuf, text: &str| {
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
            std::fs::write(&path, text).expect("write a generated migration");
        }
    };
    sizes
        .iter()
        .map(|&n| {
            let flyway = sets.join("flyway").join(format!("n{n}"));
            let sqlx = sets.join("sqlx").join(format!("n{n}"));
            std::fs::create_dir_all(&flyway).expect("create the set's folder");
            std::fs::create_dir_all(&sqlx).expect("create the set's folder");
            let mut all = String::new();
            for i in 1..=n {
                let sql = migration_sql(i);
                write(flyway.join(format!("V{i}__m{i}.sql")), &sql);
                write(sqlx.join(format!("{i}_m{i}.sql")), &sql);
                all.push_str(&sql);
            }
            let file = sets.join(format!("all-{n}.sql.txt"));
            write(file.clone(), &all);
            file
        })
        .collect()
}

/// Build the peer programs (release); returns their folder.
fn build() -> PathBuf {
    let target = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/peers")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/peers"));
    println!("peers: building examples/peers (sqlx, refinery, dbprep) …");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(crate_dir().join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .expect("run cargo build");
    assert!(status.success(), "the peer programs did not build");
    target.join("release")
}

/// Timings of one program across runs.
#[derive(Default)]
struct Series {
    times: Vec<Duration>,
    /// Per run, this program's time over the baseline's in the same run.
    ratios: Vec<f64>,
}

impl Series {
    fn cell(self) -> String {
        let s = stats(self.times);
        let (r, rmin, rmax) = ratio_stats(self.ratios);
        format!("{} ({r:.2}×, {rmin:.2}–{rmax:.2})", ms(s.median))
    }
}

impl Bench {
    /// Run `program` (`apply-<tool>`) on a database reached on `port` (the
    /// cluster's, or a link's) and time the whole process.
    fn time_program(&self, program: &Path, n: usize, database: &str, port: u16) -> Duration {
        let url = format!("postgres://postgres@127.0.0.1:{port}/{database}");
        let started = Instant::now();
        let status = Command::new(program)
            .arg(n.to_string())
            .env("DATABASE_URL", url)
            .stdout(Stdio::null())
            .status()
            .expect("run a peer program");
        let elapsed = started.elapsed();
        assert!(status.success(), "{} failed", program.display());
        elapsed
    }

    /// `psql -c 'SELECT 1'` on `database`: the whole process, the baseline
    /// of a no-op start-up.
    fn psql_select_one(&self, database: &str) -> Duration {
        let started = Instant::now();
        let status = self
            .psql(database)
            .args(["-c", "SELECT 1"])
            .status()
            .expect("run psql");
        assert!(status.success(), "psql failed");
        started.elapsed()
    }

    /// The peers table: a row per set size for fresh apply and for the
    /// no-op start-up; each cell the median time and its ratio to psql.
    pub(super) async fn peers(&mut self, runs: usize, table: &mut String) {
        let sizes = [10, 100, 1000];
        let files = write_sets(&sizes);
        let bin = build();
        for (n, file) in sizes.iter().zip(&files) {
            let mut fresh: Vec<Series> = TOOLS.iter().map(|_| Series::default()).collect();
            let mut noop: Vec<Series> = TOOLS.iter().map(|_| Series::default()).collect();
            let (mut psql, mut select_one) = (Vec::new(), Vec::new());
            for run in 0..runs {
                // Each program takes each place in turn: the cluster slows
                // down as it fills with databases.
                let mut order: Vec<usize> = (0..=TOOLS.len()).collect();
                order.rotate_left(run % (TOOLS.len() + 1));
                let mut times = vec![Duration::ZERO; TOOLS.len()];
                let mut again = vec![Duration::ZERO; TOOLS.len()];
                let mut baseline = Duration::ZERO;
                for &i in &order {
                    if i == TOOLS.len() {
                        baseline = self.psql_apply(file, "template1").await;
                        continue;
                    }
                    let database = self.fresh_database().await;
                    let program = bin.join(format!("apply-{}", TOOLS[i]));
                    let port = self.cluster.port();
                    times[i] = self.time_program(&program, *n, &database, port);
                    again[i] = self.time_program(&program, *n, &database, port);
                }
                let database = self.fresh_database().await;
                let one = self.psql_select_one(&database);
                for i in 0..TOOLS.len() {
                    fresh[i].times.push(times[i]);
                    fresh[i]
                        .ratios
                        .push(times[i].as_secs_f64() / baseline.as_secs_f64());
                    noop[i].times.push(again[i]);
                    noop[i]
                        .ratios
                        .push(again[i].as_secs_f64() / one.as_secs_f64());
                }
                psql.push(baseline);
                select_one.push(one);
            }
            let cells = |series: Vec<Series>| {
                series
                    .into_iter()
                    .map(Series::cell)
                    .collect::<Vec<_>>()
                    .join(" | ")
            };
            let (p, s) = (stats(psql), stats(select_one));
            println!(
                "peers N={n}: psql -1 {}, SELECT 1 {}",
                ms(p.median),
                ms(s.median)
            );
            writeln!(
                table,
                "| fresh apply, N = {n} | {} | `psql -1 -f`: {} |",
                cells(fresh),
                ms(p.median)
            )
            .ok();
            writeln!(
                table,
                "| no-op start-up, N = {n} applied | {} | `psql -c 'SELECT 1'`: {} |",
                cells(noop),
                ms(s.median)
            )
            .ok();
        }
        self.peers_over_link(runs, &bin, &files[0], table).await;
    }

    /// Fresh apply of N = 10 by each program and by `psql -1 -f file`,
    /// over a link with [`link::ROUND_TRIP`]: what a database on another
    /// machine adds, the round trips each waits for.
    async fn peers_over_link(&mut self, runs: usize, bin: &Path, file: &Path, table: &mut String) {
        let link = Link::start(self.cluster.port(), link::ROUND_TRIP);
        let mut fresh: Vec<Series> = TOOLS.iter().map(|_| Series::default()).collect();
        let mut turns: Vec<Vec<usize>> = vec![Vec::new(); TOOLS.len() + 1];
        let mut psql = Vec::new();
        for run in 0..runs {
            let mut order: Vec<usize> = (0..=TOOLS.len()).collect();
            order.rotate_left(run % (TOOLS.len() + 1));
            let mut times = vec![Duration::ZERO; TOOLS.len()];
            let mut baseline = Duration::ZERO;
            for &i in &order {
                if i == TOOLS.len() {
                    let (time, count) = self.psql_over(&link, file, "template1").await;
                    baseline = time;
                    turns[i].push(count);
                    continue;
                }
                let database = self.fresh_database().await;
                let program = bin.join(format!("apply-{}", TOOLS[i]));
                let _ = link.take_turns();
                times[i] = self.time_program(&program, 10, &database, link.port());
                turns[i].push(link.take_turns());
            }
            for i in 0..TOOLS.len() {
                fresh[i].times.push(times[i]);
                fresh[i]
                    .ratios
                    .push(times[i].as_secs_f64() / baseline.as_secs_f64());
            }
            psql.push(baseline);
        }
        let ms_per_trip = link::ROUND_TRIP.as_secs_f64() * 1000.0;
        let cells = fresh
            .into_iter()
            .zip(&turns)
            .map(|(series, counts)| {
                format!("{}, {} turns", series.cell(), link::median(counts.clone()))
            })
            .collect::<Vec<_>>()
            .join(" | ");
        writeln!(
            table,
            "| fresh apply, N = 10, over a link with {ms_per_trip} ms round trips | {cells} | `psql -1 -f`: {}, {} turns |",
            ms(stats(psql).median),
            link::median(turns[TOOLS.len()].clone())
        )
        .ok();
    }
}

/// The heading and columns of the peers table in BENCHMARKS.md.
pub(super) const HEADING: &str = "## Peers";

/// The section of BENCHMARKS.md with the peers table `rows`.
pub(super) fn section(rows: &str, runs: usize, versions: &str) -> String {
    format!(
        "{HEADING}\n\n\
         Whole processes on the same generated migrations, each program embedding its set at compile time as its \
         users do (`examples/peers`: {versions}), built with `--release`; measured with `--peers`, {runs} runs, each \
         program taking each place in turn. A cell is the median time and, in brackets, the median per-run ratio to \
         the baseline with its range. The no-op start-up runs the same program again on the database it has just \
         migrated. The last row reaches the cluster through the link of the table above (see \"Over a link\"), \
         with the client turns of each program.\n\n\
         | figure | dbprep | sqlx | refinery | baseline |\n|---|---|---|---|---|\n{rows}"
    )
}

/// The versions of sqlx and refinery that the peers crate's lock file
/// holds, as `sqlx 0.9.1, refinery 0.10.0`.
pub(super) fn versions() -> String {
    let lock = std::fs::read_to_string(crate_dir().join("Cargo.lock")).unwrap_or_default();
    let version = |name: &str| {
        let mut lines = lock.lines();
        while let Some(line) = lines.next() {
            if line == format!("name = \"{name}\"") {
                return lines
                    .next()
                    .and_then(|l| l.strip_prefix("version = \""))
                    .map(|v| v.trim_end_matches('"').to_owned())
                    .unwrap_or_default();
            }
        }
        String::new()
    };
    format!("sqlx {}, refinery {}", version("sqlx"), version("refinery"))
}
