//! The demo application's operator command line: the dbprep subcommands on
//! the migrations and fixtures it embeds.
//!
//! ```sh
//! cargo run --example manager -- --help
//! cargo run --example manager -- oneshot
//! cargo run --example manager -- fixture populate example-keypairs
//! ```

use std::process::ExitCode;

use dbprep_runtime::{Fixtures, Migrations};

static MIGRATIONS: Migrations = dbprep_macros::embed_migrations!("../migrations");
static FIXTURES: Fixtures = dbprep_macros::embed_fixtures!("../fixtures");

fn main() -> ExitCode {
    dbprep_runtime::cli::run(&MIGRATIONS, &FIXTURES)
}
