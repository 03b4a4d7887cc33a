static MIGRATIONS: dbprep_runtime::Migrations = dbprep_macros::embed_migrations!("tests/cases/ok");

fn main() {
    let versions: Vec<i64> = MIGRATIONS.iter().map(|m| m.version()).collect();
    assert_eq!(versions, [1, 2]);
    let first = MIGRATIONS.get(1).unwrap();
    assert_eq!(first.file(), "tests/cases/ok/V1__a.sql");
    assert_eq!(first.sql(), "CREATE TABLE a (id int);\n");
    assert_eq!(first.down_sql(), Some("DROP TABLE a;\n"));
    assert_eq!(first.checksum(), dbprep_runtime::Checksum::of(first.sql().as_bytes()));
    assert!(MIGRATIONS.get(2).unwrap().no_transaction());
    assert_eq!(MIGRATIONS.baselines()[0].version(), 2);
    // The same folder read at run time gives the same set.
}
