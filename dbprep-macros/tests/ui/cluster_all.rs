static MIGRATIONS: dbprep_runtime::Migrations = dbprep_macros::embed_migrations!("tests/cases/cluster_all");

fn main() {
    let _ = &MIGRATIONS;
}
