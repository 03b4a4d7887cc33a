static MIGRATIONS: dbprep_runtime::Migrations =
    dbprep_macros::embed_migrations!("tests/cases/normalized");

fn main() {
    // A byte-order mark and CRLF line ends are embedded normalized, quotes,
    // backslashes, tabs and non-ASCII text as they are.
    let sql = MIGRATIONS.get(1).unwrap().sql();
    assert_eq!(
        sql,
        "INSERT INTO t VALUES (E'a\\\\b \"q\"', 'caf\u{e9} \u{2014} \u{301}');\n-- tab\there\n"
    );
    let checksum = dbprep_runtime::Checksum::of(sql.as_bytes());
    assert_eq!(MIGRATIONS.get(1).unwrap().checksum(), checksum);
    assert_eq!(MIGRATIONS.get(2).unwrap().sql(), "SELECT 1;\n");
}
