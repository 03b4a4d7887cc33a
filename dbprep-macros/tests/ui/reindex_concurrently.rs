static MIGRATIONS: dbprep_runtime::Migrations = dbprep_macros::embed_migrations!("tests/cases/reindex_concurrently");

fn main() {
    let _ = &MIGRATIONS;
}
