static FIXTURES: dbprep_runtime::Fixtures = dbprep_macros::embed_fixtures!("tests/cases/no_such_fixtures");

fn main() {
    let _ = &FIXTURES;
}
