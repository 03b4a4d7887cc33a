//! `dbprep`: the command line on migration and fixture folders read at run
//! time, with the same checks and checksums as `embed_migrations!`.
//!
//! ```sh
//! dbprep --migrations migrations --fixtures fixtures upgrade
//! ```

fn main() -> std::process::ExitCode {
    dbprep_runtime::cli::run_folders()
}
