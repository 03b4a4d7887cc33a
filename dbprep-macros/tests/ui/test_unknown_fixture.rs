static MIGRATIONS: dbprep_runtime::Migrations = dbprep_macros::embed_migrations!("tests/cases/ok");

#[dbprep_macros::test(migrations = MIGRATIONS, fixtures("seed", "admins"), fixtures_dir = "tests/cases/fixtures_ok")]
async fn unknown_fixture(pool: deadpool_postgres::Pool) {
    let _ = pool;
}

fn main() {}
