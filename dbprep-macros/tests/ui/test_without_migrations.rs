#[dbprep_macros::test(fixtures("seed"))]
async fn no_migrations(pool: deadpool_postgres::Pool) {
    let _ = pool;
}

fn main() {}
