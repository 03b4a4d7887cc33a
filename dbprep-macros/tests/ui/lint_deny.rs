static MIGRATIONS: dbprep_runtime::Migrations =
    dbprep_macros::embed_migrations!("tests/cases/lint_findings", lint = "deny");

fn main() {}
