static MIGRATIONS: dbprep_runtime::Migrations = dbprep_macros::embed_migrations!("tests/cases/copy_stdout");

fn main() {
    let _ = &MIGRATIONS;
}
