//! Write or update the `dbprep.sum` of a migrations folder.
//!
//! ```sh
//! cargo run --example sum -- migrations
//! ```

use std::process::ExitCode;

fn main() -> ExitCode {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "migrations".to_owned());
    match dbprep_runtime::write_sum_file(&dir) {
        Ok(true) => {
            println!("{dir}/dbprep.sum updated");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("{dir}/dbprep.sum is current");
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}
