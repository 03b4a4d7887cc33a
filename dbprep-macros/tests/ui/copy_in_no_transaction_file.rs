static MIGRATIONS: dbprep_runtime::Migrations = dbprep_macros::embed_migrations!("tests/cases/copy_in_no_transaction_file");

fn main() {
    let _ = &MIGRATIONS;
}
