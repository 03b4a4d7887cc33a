static MIGRATIONS: dbprep_runtime::Migrations = dbprep_macros::embed_migrations!("tests/cases/missing");

fn main() {
    let _ = &MIGRATIONS;
}
