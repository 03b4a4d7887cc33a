//! `dbprep.toml`: the settings a team shares, kept beside the migrations.
//!
//! ```toml
//! history_schema = "ops"
//! lock_timeout = "5s"
//! lock_wait = 120        # seconds
//! out_of_order = "warn"
//! ```
//!
//! Each key is a global option of the command line with its name written
//! in snake case, and the file's value becomes that option's default: a
//! flag wins over the environment variable (`DBPREP_LOCK_TIMEOUT`), which
//! wins over the file, which wins over dbprep's default. The values are
//! checked by the option's own parser, so the file accepts exactly what the
//! flag does. Connection settings are not among them: they hold secrets,
//! and libpq's files and variables already carry them.

use std::path::{Path, PathBuf};

/// The options a file may set (their clap ids, which are the keys).
const SHARED: &[&str] = &[
    "history_schema",
    "history_table",
    "lock_mode",
    "lock_wait",
    "lock_timeout",
    "lock_retries",
    "wait",
    "out_of_order",
    "on_edited",
    "on_unknown",
    "on_schema_drift",
];

/// The name of the file found beside the migrations folder.
const FILE_NAME: &str = "dbprep.toml";

/// Where the settings are read from: the file `--config` names (which
/// must exist), else `dbprep.toml` beside `migrations` when there is one.
pub(super) fn locate(given: Option<&Path>, migrations: Option<&Path>) -> Option<PathBuf> {
    if let Some(given) = given {
        return Some(given.to_owned());
    }
    let beside = migrations?.parent()?.join(FILE_NAME);
    beside.is_file().then_some(beside)
}

/// `command` with the settings of `file` as the defaults of its options.
///
/// # Errors
///
/// A message naming the file (and the line, for a bad value or key): a
/// file that cannot be read or is not TOML, a key that is not a shared
/// setting, or a value its option refuses.
pub(super) fn apply(mut command: clap::Command, file: &Path) -> Result<clap::Command, String> {
    let shown = file.display();
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read the settings file {shown}: {e}"))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("the settings file {shown} is not valid TOML: {e}"))?;
    for (key, value) in &table {
        let at = format!("{shown}:{}", line_of(&text, key));
        if !SHARED.contains(&key.as_str()) {
            return Err(format!(
                "{at}: `{key}` is not a setting of {FILE_NAME}; it may set {}",
                SHARED.join(", ")
            ));
        }
        let value = match value {
            toml::Value::String(text) => text.clone(),
            toml::Value::Integer(number) => number.to_string(),
            toml::Value::Boolean(flag) => flag.to_string(),
            other => {
                return Err(format!(
                    "{at}: `{key}` takes a string or a number, not {}",
                    other.type_str()
                ))
            }
        };
        check(&command, key, &value).map_err(|reason| {
            format!("{at}: `{key} = {value:?}` is not a valid setting: {reason}")
        })?;
        command = command.mut_arg(key, |arg| arg.default_value(value));
    }
    Ok(command)
}

/// Run `value` through the option's own parser: a command line of that
/// option alone.
fn check(command: &clap::Command, id: &str, value: &str) -> Result<(), String> {
    let arg = command
        .get_arguments()
        .find(|arg| arg.get_id() == id)
        .expect("every shared setting is an option of the command line");
    let long = arg.get_long().expect("a shared setting is a long option");
    clap::Command::new(FILE_NAME)
        .no_binary_name(true)
        .arg(arg.clone().global(false))
        .try_get_matches_from([format!("--{long}={value}")])
        .map(drop)
        .map_err(|e| {
            // clap's message, without its "error: " and usage lines.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            first.trim_start_matches("error: ").to_owned()
        })
}

/// The line (1-based) where `key` is set, for messages; 1 when not found.
fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|line| {
            line.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map_or(1, |i| i + 1)
}
