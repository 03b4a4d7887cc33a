static MIGRATIONS: dbprep_runtime::Migrations = dbprep_macros::embed_migrations!("tests/cases/ok");

#[dbprep_macros::test(migrations = MIGRATIONS)]
async fn no_pool() {}

fn main() {}
