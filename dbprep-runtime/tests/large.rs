//! A migration of 100 MB on a single line: read, checked and split into
//! its one statement, in time and memory proportional to its size. Behind
//! `--ignored` (it writes 100 MB):
//!
//! ```sh
//! cargo test --release -p dbprep-runtime --test large -- --ignored
//! ```

#[test]
#[ignore = "writes and reads a 100 MB file"]
fn a_hundred_megabyte_line_is_one_statement() {
    let dir = tempfile::tempdir().unwrap();
    let value = "x".repeat(100 * 1024 * 1024);
    let sql = format!("INSERT INTO t VALUES ('{value}; not the end'), ($$;$$);");
    std::fs::write(dir.path().join("V1__big.sql"), &sql).unwrap();
    let migrations = dbprep_runtime::Migrations::from_dir(dir.path()).unwrap();
    let m = migrations.get(1).unwrap();
    assert_eq!(m.sql().len(), sql.len());
    assert_eq!(m.statements().len(), 1);
}
