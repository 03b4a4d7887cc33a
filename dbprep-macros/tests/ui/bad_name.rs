static MIGRATIONS: dbprep_runtime::Migrations = dbprep_macros::embed_migrations!("tests/cases/bad_name");

fn main() {
    let _ = &MIGRATIONS;
}
