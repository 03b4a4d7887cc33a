//! The command line describing itself: shell completions and the manual
//! page, both generated from the clap definition the process parsed with,
//! so that they list an application's own binary name and, for the
//! standalone binary, `--migrations` and `--fixtures`.

use std::process::ExitCode;

use super::stdout;

/// The name the command was run as (an application embedding the CLI
/// has its own), else the definition's: what help and hints call it.
pub(super) fn program_name(command: &clap::Command) -> String {
    command
        .get_bin_name()
        .and_then(|path| std::path::Path::new(path).file_stem())
        .and_then(|stem| stem.to_str())
        .unwrap_or_else(|| command.get_name())
        .to_owned()
}

/// Print the completion script of `shell`.
pub(super) fn completions(mut command: clap::Command, shell: clap_complete::Shell) -> ExitCode {
    let name = program_name(&command);
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut out);
    stdout::write_bytes(&out);
    stdout::exit_code(ExitCode::SUCCESS)
}

/// Print the manual page, in roff.
pub(super) fn man(command: clap::Command) -> ExitCode {
    let name = program_name(&command);
    let command = command.display_name(name.clone()).bin_name(name);
    let mut out = Vec::new();
    match clap_mangen::Man::new(command).render(&mut out) {
        Ok(()) => {
            stdout::write_bytes(&out);
            stdout::exit_code(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: cannot write the manual page: {e}");
            ExitCode::FAILURE
        }
    }
}
