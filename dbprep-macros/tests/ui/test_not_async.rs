static MIGRATIONS: dbprep_runtime::Migrations = dbprep_macros::embed_migrations!("tests/cases/ok");

#[dbprep_macros::test(migrations = MIGRATIONS)]
fn not_async(pool: deadpool_postgres::Pool) {
    let _ = pool;
}

fn main() {}
