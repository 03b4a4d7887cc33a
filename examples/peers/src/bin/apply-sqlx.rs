//! sqlx applying a generated set at start-up, as its README shows.

use sqlx::migrate::Migrator;
use sqlx::{Connection, PgConnection};

static N10: Migrator = sqlx::migrate!("sets/sqlx/n10");
static N100: Migrator = sqlx::migrate!("sets/sqlx/n100");
static N1000: Migrator = sqlx::migrate!("sets/sqlx/n1000");

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let migrator = match dbprep_peers::size_from_args() {
        10 => &N10,
        100 => &N100,
        _ => &N1000,
    };
    let mut connection = PgConnection::connect(&dbprep_peers::database_url())
        .await
        .expect("connect");
    migrator
        .run(&mut connection)
        .await
        .expect("sqlx applies the set");
}
