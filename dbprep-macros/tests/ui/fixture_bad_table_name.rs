static FIXTURES: dbprep_runtime::Fixtures = dbprep_macros::embed_fixtures!("tests/cases/fixture_bad_table_name");

fn main() {
    let _ = &FIXTURES;
}
