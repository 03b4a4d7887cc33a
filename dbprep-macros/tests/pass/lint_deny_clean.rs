// With lint = "deny" a folder whose statements block no traffic embeds as
// usual (its index is on a table created in the same file).
static MIGRATIONS: dbprep_runtime::Migrations =
    dbprep_macros::embed_migrations!("tests/cases/repeatables", lint = "deny");

fn main() {
    assert_eq!(MIGRATIONS.len(), 1);
    assert!(MIGRATIONS.lint().is_empty());
}
