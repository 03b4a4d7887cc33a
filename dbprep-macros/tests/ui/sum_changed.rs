static MIGRATIONS: dbprep_runtime::Migrations = dbprep_macros::embed_migrations!("tests/cases/sum_changed");

fn main() {
    let _ = &MIGRATIONS;
}
