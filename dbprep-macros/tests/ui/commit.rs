static MIGRATIONS: dbprep_runtime::Migrations = dbprep_macros::embed_migrations!("tests/cases/commit");

fn main() {
    let _ = &MIGRATIONS;
}
