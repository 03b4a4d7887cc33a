static MIGRATIONS: dbprep_runtime::Migrations = dbprep_macros::embed_migrations!("tests/cases/not_a_folder.sql");

fn main() {
    let _ = &MIGRATIONS;
}
