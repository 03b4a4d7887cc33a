static MIGRATIONS: dbprep_runtime::Migrations = dbprep_macros::embed_migrations!("tests/cases/meta_command");

fn main() {
    let _ = &MIGRATIONS;
}
