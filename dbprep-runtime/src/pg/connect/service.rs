//! libpq's connection service file: named groups of settings, chosen with
//! `service=NAME` in the connection string or `PGSERVICE`.
//!
//! The groups are read from `PGSERVICEFILE`, else `~/.pg_service.conf`;
//! a service found in neither is looked for in `pg_service.conf` of
//! `PGSYSCONFDIR` (else the system's folder). The file is INI-like:
//!
//! ```text
//! # comments and blank lines are skipped
//! [billing]
//! host=db.internal
//! port=5433
//! dbname=billing
//! user=migrator
//! ```
//!
//! As in libpq, what the connection string says wins over the service, and
//! the service wins over the environment's `PG*` variables.

use std::path::{Path, PathBuf};

use crate::pg::error::{Error, Result};

/// The folder libpq's packages look in for the system-wide file when
/// `PGSYSCONFDIR` is not set (Debian's and Ubuntu's postgresql-common).
const SYSTEM_FOLDER: &str = "/etc/postgresql-common";

/// The service file's keywords dbprep follows, and the libpq variable
/// each stands for (the service fills in what the variable would).
const KEYWORDS: &[(&str, &str)] = &[
    ("host", "PGHOST"),
    ("port", "PGPORT"),
    ("dbname", "PGDATABASE"),
    ("user", "PGUSER"),
    ("password", "PGPASSWORD"),
    ("passfile", "PGPASSFILE"),
    ("application_name", "PGAPPNAME"),
    ("connect_timeout", "PGCONNECT_TIMEOUT"),
    ("options", "PGOPTIONS"),
    ("target_session_attrs", "PGTARGETSESSIONATTRS"),
    ("sslmode", "PGSSLMODE"),
    ("sslrootcert", "PGSSLROOTCERT"),
    ("sslcert", "PGSSLCERT"),
    ("sslkey", "PGSSLKEY"),
];

/// The environment as the rest of the settings should see it: `url`
/// without its `service=` word, and the named service's settings (from
/// `service=`, else `PGSERVICE`) in front of the `PG*` variables.
///
/// # Errors
///
/// A service named but found in no file, a file that cannot be read, or
/// a line that is not `[name]`, `key=value` or a comment (named by file
/// and line).
pub(crate) fn overlay(
    url: Option<String>,
    var: impl Fn(&str) -> Option<String>,
) -> Result<(Option<String>, impl Fn(&str) -> Option<String>)> {
    let (url, named) = match url {
        Some(url) => {
            let (rest, mut taken) = super::config::take_params(&url, &["service"]);
            (Some(rest), taken.remove(0))
        }
        None => (None, None),
    };
    let settings = match named.or_else(|| var("PGSERVICE")) {
        Some(name) => find(&name, &var)?,
        None => Vec::new(),
    };
    let url_seen = url.clone();
    let lookup = move |name: &str| -> Option<String> {
        match name {
            "DATABASE_URL" => url_seen.clone(),
            // Read once, here.
            "PGSERVICE" => None,
            _ => KEYWORDS
                .iter()
                .find(|(_, variable)| *variable == name)
                .and_then(|(keyword, _)| {
                    settings
                        .iter()
                        .find(|(k, _)| k == keyword)
                        .map(|(_, v)| v.clone())
                })
                .or_else(|| var(name)),
        }
    };
    Ok((url, lookup))
}

/// The settings of service `name`: from the user's file if it has the
/// service, else from the system's.
fn find(name: &str, var: &impl Fn(&str) -> Option<String>) -> Result<Vec<(String, String)>> {
    let user_file = var("PGSERVICEFILE")
        .map(PathBuf::from)
        .or_else(|| super::files::in_home(var, ".pg_service.conf"));
    let system_file = Path::new(&var("PGSYSCONFDIR").unwrap_or_else(|| SYSTEM_FOLDER.to_owned()))
        .join("pg_service.conf");
    let mut looked_in = Vec::new();
    for file in user_file.into_iter().chain([system_file]) {
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                looked_in.push(file.display().to_string());
                continue;
            }
            Err(e) => {
                return Err(Error::config_caused(
                    format!("cannot read the service file {}: {e}", file.display()),
                    e,
                ))
            }
        };
        if let Some(settings) = section(&text, name, &file)? {
            return Ok(settings);
        }
        looked_in.push(file.display().to_string());
    }
    Err(Error::config(format!(
        "definition of service {name:?} not found (looked in {})",
        looked_in.join(", ")
    )))
}

/// The `key=value` lines of section `[name]` of a service file, if it has
/// one.
fn section(text: &str, name: &str, file: &Path) -> Result<Option<Vec<(String, String)>>> {
    let mut found: Option<Vec<(String, String)>> = None;
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        let at = || format!("service file {}, line {}", file.display(), number + 1);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            let Some(section) = header.strip_suffix(']') else {
                return Err(Error::config(format!("{}: a section is `[name]`", at())));
            };
            if found.is_some() {
                // The service's section is over.
                return Ok(found);
            }
            if section.trim() == name {
                found = Some(Vec::new());
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(Error::config(format!(
                "{}: expected `key=value`, a `[section]` or a comment",
                at()
            )));
        };
        let Some(settings) = found.as_mut() else {
            continue;
        };
        let key = key.trim();
        match key {
            "service" => {
                return Err(Error::config(format!(
                    "{}: a service cannot name another (nested service specifications are not supported)",
                    at()
                )))
            }
            _ if KEYWORDS.iter().any(|(k, _)| *k == key) => {
                // The first setting of a key wins, as in libpq.
                if !settings.iter().any(|(k, _)| k == key) {
                    settings.push((key.to_owned(), value.trim().to_owned()));
                }
            }
            _ => tracing::warn!("{}: `{key}` is not a setting dbprep uses; ignored", at()),
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::connect::config::tests::vars;

    const FILE: &str = "\
# shared by the team
[billing]
host = db.internal
port=5433
dbname=billing
user=migrator
keepalives=1

[reports]
host=replica.internal
";

    fn with_file(text: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("services.conf");
        std::fs::write(&path, text).unwrap();
        let shown = path.display().to_string();
        (dir, shown)
    }

    #[test]
    fn the_url_wins_over_the_service_which_wins_over_the_environment() {
        let (_dir, file) = with_file(FILE);
        let env = [
            ("PGSERVICEFILE", file.as_str()),
            ("PGSYSCONFDIR", "/nonexistent"),
            ("PGUSER", "someone"),
            ("PGPASSWORD", "from-env"),
        ];
        let (url, var) = overlay(
            Some("postgres:///override?service=billing&application_name=x".into()),
            vars(&env),
        )
        .unwrap();
        assert_eq!(
            url.as_deref(),
            Some("postgres:///override?application_name=x")
        );
        assert_eq!(var("PGHOST").as_deref(), Some("db.internal"));
        assert_eq!(var("PGPORT").as_deref(), Some("5433"));
        assert_eq!(var("PGUSER").as_deref(), Some("migrator"));
        assert_eq!(var("PGPASSWORD").as_deref(), Some("from-env"));
        let config = crate::pg::connect::config::from_vars(var).unwrap();
        assert_eq!(config.get_dbname(), Some("override"));
        assert_eq!(config.get_user(), Some("migrator"));

        let env = [("PGSERVICEFILE", file.as_str()), ("PGSERVICE", "reports")];
        let (_, var) = overlay(Some("host=a.example dbname=x".into()), vars(&env)).unwrap();
        assert_eq!(var("PGHOST").as_deref(), Some("replica.internal"));
        assert_eq!(var("PGSERVICE"), None);
    }

    #[test]
    fn a_missing_service_and_a_bad_line_are_named() {
        let (_dir, file) = with_file(FILE);
        let env = [
            ("PGSERVICEFILE", file.as_str()),
            ("PGSYSCONFDIR", "/nonexistent"),
        ];
        let Err(e) = overlay(Some("service=payroll".into()), vars(&env)) else {
            panic!("a missing service was accepted");
        };
        let text = e.to_string();
        assert!(text.contains("service \"payroll\" not found"), "{text}");
        assert!(
            text.contains(&file) && text.contains("/nonexistent/pg_service.conf"),
            "{text}"
        );

        let (_dir, file) = with_file("[billing]\nhost=a\nthis line is wrong\n");
        let env = [("PGSERVICEFILE", file.as_str())];
        let Err(e) = overlay(None, vars(&[env[0], ("PGSERVICE", "billing")])) else {
            panic!("a bad line was accepted");
        };
        assert!(e.to_string().contains(&format!("{file}, line 3")), "{e}");

        let (_dir, file) = with_file("[billing]\nservice=other\n");
        let env = [("PGSERVICEFILE", file.as_str()), ("PGSERVICE", "billing")];
        let Err(e) = overlay(None, vars(&env)) else {
            panic!("a nested service was accepted");
        };
        assert!(e.to_string().contains("nested"), "{e}");
    }

    #[test]
    fn the_system_file_is_read_when_the_user_file_lacks_the_service() {
        let (dir, file) = with_file("[billing]\nhost=user-file\n");
        std::fs::write(
            dir.path().join("pg_service.conf"),
            "[audit]\nhost=system-file\n",
        )
        .unwrap();
        let folder = dir.path().display().to_string();
        let env = [
            ("PGSERVICEFILE", file.as_str()),
            ("PGSYSCONFDIR", folder.as_str()),
            ("PGSERVICE", "audit"),
        ];
        let (_, var) = overlay(None, vars(&env)).unwrap();
        assert_eq!(var("PGHOST").as_deref(), Some("system-file"));
        let env = [("HOME", folder.as_str()), ("PGSERVICE", "billing")];
        std::fs::rename(&file, dir.path().join(".pg_service.conf")).unwrap();
        let (_, var) = overlay(None, vars(&env)).unwrap();
        assert_eq!(var("PGHOST").as_deref(), Some("user-file"));
    }
}
