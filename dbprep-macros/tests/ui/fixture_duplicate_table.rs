static FIXTURES: dbprep_runtime::Fixtures = dbprep_macros::embed_fixtures!("tests/cases/fixture_duplicate_table");

fn main() {
    let _ = &FIXTURES;
}
