static MIGRATIONS: dbprep_runtime::Migrations = dbprep_macros::embed_migrations!("tests/cases/folder_named_sql");

fn main() {
    let _ = &MIGRATIONS;
}
