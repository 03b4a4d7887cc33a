//! `dbprep`: the command line on migration and fixture folders read at run
//! time, with the same checks and checksums as `embed_migrations!`.
//!
//! ```sh
//! dbprep --migrations migrations --fixtures fixtures upgrade
//! ```

use std::ffi::OsString;
use std::process::ExitCode;

use dbprep_runtime::{Fixtures, Migrations};

/// Take `--migrations DIR` and `--fixtures DIR` out of the arguments (the
/// rest goes to the shared command line).
fn folder(args: &mut Vec<OsString>, flag: &str, default: &str) -> (String, bool) {
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].to_string_lossy().into_owned();
        if arg == flag && i + 1 < args.len() {
            let value = args.remove(i + 1).to_string_lossy().into_owned();
            args.remove(i);
            return (value, true);
        }
        if let Some(value) = arg.strip_prefix(&format!("{flag}=")) {
            let value = value.to_owned();
            args.remove(i);
            return (value, true);
        }
        i += 1;
    }
    (default.to_owned(), false)
}

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let (migrations_dir, migrations_given) = folder(&mut args, "--migrations", "migrations");
    let (fixtures_dir, fixtures_given) = folder(&mut args, "--fixtures", "fixtures");
    let missing = |dir: &str| !std::path::Path::new(dir).exists();
    let migrations = match Migrations::from_dir(&migrations_dir) {
        Ok(m) => m,
        // Provisioning commands (and --help) need no migrations folder.
        Err(_) if !migrations_given && missing(&migrations_dir) => Migrations::empty(),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let fixtures = match Fixtures::from_dir(&fixtures_dir) {
        Ok(f) => f,
        Err(_) if !fixtures_given && missing(&fixtures_dir) => Fixtures::__embedded(&[]),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    dbprep_runtime::cli::run_from(args, &migrations, &fixtures)
}
