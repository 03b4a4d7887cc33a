static MIGRATIONS: dbprep_runtime::Migrations = dbprep_macros::embed_migrations!("tests/cases/down_without_up");

fn main() {
    let _ = &MIGRATIONS;
}
