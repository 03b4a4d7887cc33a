//! The demo application's start-up: prepare the database, then go on.
//!
//! ```sh
//! cargo run --example quickstart                               # throwaway local PostgreSQL
//! DATABASE_URL=postgres://app@db/manager cargo run --example quickstart
//! ```
//!
//! With `DATABASE_URL` the database is created if missing; without it a
//! throwaway cluster is started from the system's PostgreSQL binaries and
//! removed when the program ends.

use std::error::Error;
use std::str::FromStr;

use dbprep_runtime::testing::Cluster;
use dbprep_runtime::{ensure_database, Fixtures, Migrations, Migrator};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

static MIGRATIONS: Migrations = dbprep_macros::embed_migrations!("../migrations");
static FIXTURES: Fixtures = dbprep_macros::embed_fixtures!("../fixtures");

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // Keep the cluster alive until the end of main.
    let (config, _cluster) = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => (tokio_postgres::Config::from_str(&url)?, None),
        _ => {
            println!("DATABASE_URL is not set: starting a throwaway PostgreSQL from the system's binaries (removed on exit)");
            let cluster = Cluster::start()?;
            println!(
                "  listening on 127.0.0.1:{}, files in {}",
                cluster.port(),
                cluster.socket_dir().display()
            );
            (cluster.config("manager"), Some(cluster))
        }
    };
    let database = config.get_dbname().unwrap_or("postgres").to_owned();
    if ensure_database(&config).await? {
        println!("created database {database}");
    }

    // The application's pool; dbprep takes one connection out of it for the
    // run and gives the pool nothing back.
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager).max_size(8).build()?;

    let migrator = Migrator::new(&MIGRATIONS);
    let report = migrator.run(&pool).await?;
    println!("{report}");

    // Seed data: the admin keypairs, in one transaction, once.
    if let Some(keypairs) = FIXTURES.get("example-keypairs") {
        println!("{}", migrator.populate(&pool, keypairs, None).await?);
    }

    let status = migrator.status(&pool).await?;
    println!("\n{:>7}  {:<26} state", "version", "name");
    for entry in &status.entries {
        println!("{:>7}  {:<26} {}", entry.version, entry.name, entry.state);
    }

    // A second start-up finds nothing to do, in one round trip.
    let again = migrator.run(&pool).await?;
    println!("\nsecond start-up: {again} in {:?}", again.elapsed);
    Ok(())
}
