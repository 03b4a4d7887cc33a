static FIXTURES: dbprep_runtime::Fixtures = dbprep_macros::embed_fixtures!("tests/cases/fixtures_ok");

fn main() {
    let seed = FIXTURES.get("seed").unwrap();
    assert_eq!(seed.file(), "tests/cases/fixtures_ok/seed.json");
    let content = seed.content().unwrap();
    assert_eq!(content.tables.len(), 2);
    assert_eq!(content.tables[0].rows[0][0].1.to_string(), "1.50");
}
