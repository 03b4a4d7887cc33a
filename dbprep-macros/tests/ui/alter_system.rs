static MIGRATIONS: dbprep_runtime::Migrations = dbprep_macros::embed_migrations!("tests/cases/alter_system");

fn main() {
    let _ = &MIGRATIONS;
}
