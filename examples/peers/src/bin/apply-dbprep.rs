//! dbprep applying a generated set at start-up, as an application does.

use std::str::FromStr;

use dbprep_runtime::{Migrations, Migrator};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

static N10: Migrations = dbprep_macros::embed_migrations!("sets/flyway/n10");
static N100: Migrations = dbprep_macros::embed_migrations!("sets/flyway/n100");
static N1000: Migrations = dbprep_macros::embed_migrations!("sets/flyway/n1000");

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let migrations = match dbprep_peers::size_from_args() {
        10 => &N10,
        100 => &N100,
        _ => &N1000,
    };
    let config = tokio_postgres::Config::from_str(&dbprep_peers::database_url()).expect("URL");
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager).max_size(1).build().expect("pool");
    let report = Migrator::new(migrations)
        .run(&pool)
        .await
        .expect("dbprep applies the set");
    assert_eq!(report.version, migrations.head(), "dbprep applies the set");
}
