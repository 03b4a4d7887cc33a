static MIGRATIONS: dbprep_runtime::Migrations = dbprep_macros::embed_migrations!("tests/cases/non_utf8");

fn main() {
    let _ = &MIGRATIONS;
}
