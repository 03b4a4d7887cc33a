static FIXTURES: dbprep_runtime::Fixtures = dbprep_macros::embed_fixtures!("tests/cases/fixture_unknown_directive");

fn main() {
    let _ = &FIXTURES;
}
