static MIGRATIONS: dbprep_runtime::Migrations = dbprep_macros::embed_migrations!("tests/cases/sum_unlisted");

fn main() {
    let _ = &MIGRATIONS;
}
