//! libpq's password file: `PGPASSFILE`, else `~/.pgpass`, read as libpq
//! reads it when no password was given otherwise.
//!
//! Each line is `hostname:port:database:username:password`; `*` in one of
//! the first four fields matches anything, `\:` and `\\` stand for `:` and
//! `\`, lines starting with `#` are comments, and the first line that
//! matches wins. A file that its group or others may read is ignored, with
//! a warning, as libpq does.

use std::path::{Path, PathBuf};

use tokio_postgres::config::Host;
use tokio_postgres::Config;

/// The password the file gives for `config`'s first host, if any.
pub(crate) fn password_for(
    config: &Config,
    var: &impl Fn(&str) -> Option<String>,
) -> Option<String> {
    let path = file(var)?;
    let text = read_private(&path)?;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        // libpq matches a Unix-domain socket as "localhost".
        #[cfg(unix)]
        Some(Host::Unix(_)) => "localhost".to_owned(),
        None => "localhost".to_owned(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config.get_user()?;
    let database = config.get_dbname().unwrap_or(user);
    lookup(&text, [&host, &port, database, user])
}

/// `PGPASSFILE`, else `.pgpass` in the home folder.
fn file(var: &impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    var("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| super::files::in_home(var, ".pgpass"))
}

/// The file's text, unless it is missing, not a file, or readable by its
/// group or others.
fn read_private(path: &Path) -> Option<String> {
    let metadata = std::fs::metadata(path).ok()?;
    if !metadata.is_file() {
        return None;
    }
    if super::files::shared_with_others(&metadata) {
        tracing::warn!(
            "password file {} has group or world access; permissions should be u=rw (0600) or less: it is ignored",
            path.display()
        );
        return None;
    }
    std::fs::read_to_string(path).ok()
}

/// The password of the first line of `text` whose four fields match
/// `wanted` (host, port, database, user).
fn lookup(text: &str, wanted: [&str; 4]) -> Option<String> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let fields = fields(line.trim_end_matches('\r'));
            if fields.len() < 5 {
                return None;
            }
            let matches = fields[..4]
                .iter()
                .zip(wanted)
                .all(|(field, wanted)| field == "*" || field == wanted);
            // The password is the rest of the line, colons included.
            matches.then(|| fields[4..].join(":"))
        })
}

/// A line split at its unescaped colons, escapes removed.
fn fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ':' => fields.push(String::new()),
            _ => {
                let c = if c == '\\' {
                    chars.next().unwrap_or(c)
                } else {
                    c
                };
                if let Some(field) = fields.last_mut() {
                    field.push(c);
                }
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# a comment\n\
        db.example:5432:manager:app:first\n\
        db.example:*:*:app:second\n\
        *:*:*:esc\\:aped:pa\\:ss\\\\word\n\
        *:*:*:colons:a:b:c\n";

    #[test]
    fn the_first_matching_line_wins_and_wildcards_match_anything() {
        assert_eq!(
            lookup(FILE, ["db.example", "5432", "manager", "app"]).as_deref(),
            Some("first")
        );
        assert_eq!(
            lookup(FILE, ["db.example", "6432", "other", "app"]).as_deref(),
            Some("second")
        );
        assert_eq!(lookup(FILE, ["elsewhere", "5432", "manager", "app"]), None);
    }

    #[test]
    fn escapes_and_colons_in_the_password() {
        assert_eq!(
            lookup(FILE, ["h", "1", "d", "esc:aped"]).as_deref(),
            Some("pa:ss\\word")
        );
        assert_eq!(
            lookup(FILE, ["h", "1", "d", "colons"]).as_deref(),
            Some("a:b:c")
        );
    }

    #[test]
    fn a_file_others_may_read_is_ignored() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        std::fs::write(&path, "*:*:*:app:secret\n").unwrap();
        let mut config = Config::new();
        config.host("db").user("app");
        let vars = |name: &str| (name == "PGPASSFILE").then(|| path.display().to_string());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(password_for(&config, &vars), None);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(password_for(&config, &vars).as_deref(), Some("secret"));
    }
}
