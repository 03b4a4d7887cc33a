// Flyway's repeatable migrations (R__name.sql) are embedded beside the
// versioned ones, in name order, normalized like any file.
static MIGRATIONS: dbprep_runtime::Migrations = dbprep_macros::embed_migrations!("tests/cases/repeatables");

fn main() {
    let versions: Vec<i64> = MIGRATIONS.iter().map(|m| m.version()).collect();
    assert_eq!(versions, [1]);
    let names: Vec<&str> = MIGRATIONS.repeatables().iter().map(|m| m.name()).collect();
    assert_eq!(names, ["functions", "views"]);
    let functions = MIGRATIONS.repeatable("functions").unwrap();
    assert!(functions.is_repeatable());
    assert!(functions.sql().ends_with("$$ SELECT 1 $$;\n"));
    assert_eq!(functions.file(), "tests/cases/repeatables/R__functions.sql");
}
