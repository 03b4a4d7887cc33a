static MIGRATIONS: dbprep_runtime::Migrations = dbprep_macros::embed_migrations!(migrations);

fn main() {
    let _ = &MIGRATIONS;
}
