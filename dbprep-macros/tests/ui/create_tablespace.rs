static MIGRATIONS: dbprep_runtime::Migrations = dbprep_macros::embed_migrations!("tests/cases/create_tablespace");

fn main() {
    let _ = &MIGRATIONS;
}
