static FIXTURES: dbprep_runtime::Fixtures = dbprep_macros::embed_fixtures!("tests/cases/fixture_row_not_an_object");

fn main() {
    let _ = &FIXTURES;
}
