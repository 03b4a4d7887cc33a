static MIGRATIONS: dbprep_runtime::Migrations = dbprep_macros::embed_migrations!("tests/cases/sum_corrupt");

fn main() {
    let _ = &MIGRATIONS;
}
