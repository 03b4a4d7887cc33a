//! A migrator in a process of its own, for the tests that kill it:
//! `dbprep-test-migrate <migrations folder>`, connecting as the libpq
//! variables say.

use std::process::ExitCode;

use dbprep_runtime::{Migrations, Migrator};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let Some(folder) = std::env::args().nth(1) else {
        eprintln!("usage: dbprep-test-migrate <migrations folder>");
        return ExitCode::from(2);
    };
    let result = async {
        let migrations = Migrations::from_dir(&folder)?;
        let config = dbprep_runtime::pg::config::from_env()?;
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(1)
            .build()
            .map_err(|e| dbprep_runtime::Error::Connect(e.to_string()))?;
        let report = Migrator::new(&migrations).run(&pool).await?;
        println!("{report}");
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
