// A file of comments alone (as `sqlx migrate add` starts one) is a
// migration that changes nothing, embedded like any other.
static MIGRATIONS: dbprep_runtime::Migrations = dbprep_macros::embed_migrations!("tests/cases/comments_only");

fn main() {
    let versions: Vec<i64> = MIGRATIONS.iter().map(|m| m.version()).collect();
    assert_eq!(versions, [1, 2]);
    assert_eq!(MIGRATIONS.get(1).unwrap().sql(), "-- only a comment\n\n");
    assert!(MIGRATIONS.get(1).unwrap().statements().is_empty());
}
