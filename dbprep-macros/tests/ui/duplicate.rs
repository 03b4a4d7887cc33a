static MIGRATIONS: dbprep_runtime::Migrations = dbprep_macros::embed_migrations!("tests/cases/duplicate");

fn main() {
    let _ = &MIGRATIONS;
}
