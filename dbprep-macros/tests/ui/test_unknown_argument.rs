static MIGRATIONS: dbprep_runtime::Migrations = dbprep_macros::embed_migrations!("tests/cases/ok");

#[dbprep_macros::test(migrations = MIGRATIONS, template = "mine")]
async fn unknown_argument(pool: deadpool_postgres::Pool) {
    let _ = pool;
}

fn main() {}
