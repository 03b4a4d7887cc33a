static FIXTURES: dbprep_runtime::Fixtures = dbprep_macros::embed_fixtures!("tests/cases/fixture_not_an_array");

fn main() {
    let _ = &FIXTURES;
}
