static MIGRATIONS: dbprep_runtime::Migrations = dbprep_macros::embed_migrations!("tests/cases/sum_ok");

fn main() {
    assert_eq!(MIGRATIONS.len(), 2);
}
