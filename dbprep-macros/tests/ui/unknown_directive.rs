static MIGRATIONS: dbprep_runtime::Migrations = dbprep_macros::embed_migrations!("tests/cases/unknown_directive");

fn main() {
    let _ = &MIGRATIONS;
}
