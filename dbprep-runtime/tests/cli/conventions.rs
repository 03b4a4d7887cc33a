//! The conventions operators bring: shell completions, the manual page,
//! libpq's service file, a team's `dbprep.toml`.

use super::*;

/// `dbprep` alone, without a database.
fn dbprep_offline(args: &[&str]) -> Output {
    Command::new(DBPREP)
        .args(args)
        .output()
        .expect("run dbprep")
}

#[test]
fn bash_completes_subcommands_and_options_from_the_script_it_prints() {
    let script = dbprep_offline(&["completions", "bash"]);
    assert_success(&script);
    let script = String::from_utf8(script.stdout).unwrap();
    if Command::new("bash").arg("--version").output().is_err() {
        eprintln!("skipped the completion run: no bash");
        return;
    }
    // What bash does on TAB: the function the script registered, with the
    // words typed so far.
    let complete = |line: &str| -> Vec<String> {
        let words: Vec<&str> = line.split(' ').collect();
        let program = format!(
            "{script}\nCOMP_WORDS=({})\nCOMP_CWORD={}\n_dbprep dbprep '{}' '{}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"",
            words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" "),
            words.len() - 1,
            words[words.len() - 1],
            words.get(words.len().wrapping_sub(2)).copied().unwrap_or(""),
        );
        let out = Command::new("bash")
            .arg("-c")
            .arg(program)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(complete("dbprep upg"), ["upgrade"]);
    let options = complete("dbprep upgrade --");
    for option in ["--to", "--each-schema", "--migrations", "--lock-timeout"] {
        assert!(
            options.iter().any(|o| o == option),
            "{option} in {options:?}"
        );
    }
    let shells = complete("dbprep completions ");
    assert!(shells.iter().any(|s| s == "zsh"), "{shells:?}");

    let zsh = dbprep_offline(&["completions", "zsh"]);
    assert!(String::from_utf8_lossy(&zsh.stdout).starts_with("#compdef dbprep"));
    let bad = dbprep_offline(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("possible values"));
}

#[test]
fn the_manual_page_lists_every_subcommand_and_the_folder_options() {
    let out = dbprep_offline(&["man"]);
    assert_success(&out);
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH dbprep 1"), "{page}");
    for name in ["upgrade", "verify", "completions", "import\\-sqlite"] {
        assert!(page.contains(name), "{name} missing from the page");
    }
    assert!(page.contains("\\-\\-migrations"), "{page}");
    // Rendered as `man` would, when the machine has it.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dbprep.1");
    std::fs::write(&file, &page).unwrap();
    match Command::new("man")
        .arg("-l")
        .arg(&file)
        .env("MANWIDTH", "80")
        .output()
    {
        Ok(rendered) if rendered.status.success() => {
            let text = String::from_utf8_lossy(&rendered.stdout);
            assert!(text.contains("SUBCOMMANDS"), "{text}");
        }
        _ => eprintln!("skipped rendering the page: no man"),
    }
}
