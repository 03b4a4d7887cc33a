static MIGRATIONS: dbprep_runtime::Migrations = dbprep_macros::embed_migrations!("tests/cases/ok");

#[dbprep_macros::test(migrations = MIGRATIONS)]
async fn a_string(url: String, extra: u32) {
    let _ = (url, extra);
}

fn main() {}
