static MIGRATIONS: dbprep_runtime::Migrations = dbprep_macros::embed_migrations!("tests/cases/prepare_transaction");

fn main() {
    let _ = &MIGRATIONS;
}
