static MIGRATIONS: dbprep_runtime::Migrations = dbprep_macros::embed_migrations!("tests/cases/create_database");

fn main() {
    let _ = &MIGRATIONS;
}
