//! A migrator in a process of its own, for the tests that kill it or start
//! many at once: `dbprep-test-migrate <migrations folder> [session |
//! transaction]` (the lock mode, `session` by default), connecting as the
//! libpq variables say.
//!
//! With `DBPREP_TEST_BARRIER` set, it first reads its standard input to the
//! end: a test starts every process, then closes their inputs together, so
//! that they all connect at the same moment. It prints the run's report,
//! then three lines a test reads: `applied: 1,2,3` (the versions this
//! process applied), `lock tries: N` (how many times it tried the lock)
//! and `done by peer: true|false` (whether it found the work done while it
//! waited, without taking the lock).
//!
//! `--each-schema PATTERN --jobs N` after them walks the schemas matching
//! the pattern instead (`Migrator::run_each`) and prints the walk's report,
//! one line per tenant.

use std::io::Read;
use std::process::ExitCode;

use dbprep_runtime::{LockMode, Migrations, Migrator, Tenants};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let Some(folder) = std::env::args().nth(1) else {
        eprintln!("usage: dbprep-test-migrate <migrations folder> [session | transaction]");
        return ExitCode::from(2);
    };
    let mode = match std::env::args().nth(2).map(|m| m.parse::<LockMode>()) {
        None => LockMode::Session,
        Some(Ok(mode)) => mode,
        Some(Err(e)) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let jobs: usize = flag("--jobs").and_then(|j| j.parse().ok()).unwrap_or(1);
    if std::env::var_os("DBPREP_TEST_BARRIER").is_some() {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
    }
    let result = async {
        let migrations = Migrations::from_dir(&folder)?;
        let config = dbprep_runtime::pg::connect::config::from_env()?;
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager).max_size(jobs).build().map_err(|e| {
            dbprep_runtime::Error::Connect {
                reason: e.to_string(),
                source: None,
            }
        })?;
        if let Some(pattern) = flag("--each-schema") {
            let tenants = Tenants::schemas_like(&pool, &pattern).await?;
            let report = Migrator::new(&migrations)
                .lock_mode(mode)
                .run_each(&tenants, jobs)
                .await?;
            println!("{report}");
            return match report.failed().next() {
                None => Ok(()),
                Some(failed) => Err(dbprep_runtime::Error::Connect {
                    reason: format!("tenant {} failed", failed.tenant),
                    source: None,
                }),
            };
        }
        let report = Migrator::new(&migrations)
            .lock_mode(mode)
            .run(&pool)
            .await?;
        println!("{report}");
        let applied: Vec<String> = report
            .applied
            .iter()
            .map(|a| a.version.to_string())
            .collect();
        println!("applied: {}", applied.join(","));
        println!("lock tries: {}", report.lock.map_or(0, |l| l.tries));
        println!(
            "done by peer: {}",
            report.lock.is_some_and(|l| l.done_by_peer)
        );
        Ok::<_, dbprep_runtime::Error>(())
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
