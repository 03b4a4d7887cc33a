static MIGRATIONS: dbprep_runtime::Migrations = dbprep_macros::embed_migrations!("tests/cases/nul_character");

fn main() {
    let _ = &MIGRATIONS;
}
