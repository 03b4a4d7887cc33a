static FIXTURES: dbprep_runtime::Fixtures = dbprep_macros::embed_fixtures!("tests/cases/fixture_invalid_json");

fn main() {
    let _ = &FIXTURES;
}
