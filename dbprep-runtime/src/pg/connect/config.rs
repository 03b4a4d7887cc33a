//! Connection settings from the environment, as libpq reads them.
//!
//! tokio-postgres reads no environment variable; applications and the CLI
//! expect `DATABASE_URL`, then the service it or `PGSERVICE` names in
//! libpq's service file, then the libpq variables (`PGHOST`, `PGPORT`,
//! `PGUSER`, `PGPASSWORD`, `PGDATABASE`, `PGAPPNAME`, `PGCONNECT_TIMEOUT`,
//! `PGOPTIONS`, `PGTARGETSESSIONATTRS`), which fill in whatever the URL
//! leaves out, and last the password file
//! (`PGPASSFILE`, else `~/.pgpass`). A password given in `PGPASSWORD`
//! needs no URL escaping.

use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::TargetSessionAttrs;
use tokio_postgres::Config;

use crate::pg::error::{Error, Result};

/// The connection settings of the environment.
///
/// # Errors
///
/// A `DATABASE_URL` that does not parse, a service that no service file
/// defines, or a `PGPORT` or `PGCONNECT_TIMEOUT` that is not a number. The message never shows the
/// URL, which may hold a password.
///
/// # Example
///
/// ```no_run
/// let config = dbprep_runtime::pg::connect::config::from_env()?;
/// # Ok::<(), dbprep_runtime::Error>(())
/// ```
pub fn from_env() -> Result<Config> {
    from_vars(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
}

/// [`from_env`] with the variables read through `var` (for tests).
pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Config> {
    let (url, var) = super::service::overlay(var("DATABASE_URL"), var)?;
    let mut config = match &url {
        Some(url) => Config::from_str(url).map_err(|e| {
            // The driver's reason is in its source ("invalid value for
            // option `port`"); the URL itself is never shown (a password).
            Error::config_caused(format!(
                "the connection URL (DATABASE_URL or --url) is not a valid PostgreSQL connection string: {}",
                crate::pg::error::describe(&e)
            ), e)
        })?,
        None => Config::new(),
    };
    // tokio-postgres gives every host of a URL a port, 5432 when none is
    // written; libpq lets PGPORT fill it in then.
    if var("PGPORT").is_some() && !url.as_deref().is_some_and(names_a_port) {
        config = without_ports(config);
    }
    if config.get_hosts().is_empty() {
        match var("PGHOST") {
            Some(hosts) => hosts.split(',').for_each(|h| {
                config.host(h);
            }),
            None => {
                config.host("localhost");
            }
        }
    }
    if config.get_ports().is_empty() {
        if let Some(port) = var("PGPORT") {
            let port = port
                .parse()
                .map_err(|_| Error::config(format!("PGPORT is not a port number: {port:?}")))?;
            config.port(port);
        }
    }
    if config.get_user().is_none() {
        if let Some(user) = var("PGUSER").or_else(|| var("USER")) {
            config.user(user);
        }
    }
    if config.get_password().is_none() {
        if let Some(password) = var("PGPASSWORD") {
            config.password(password);
        }
    }
    if config.get_dbname().is_none() {
        if let Some(dbname) = var("PGDATABASE") {
            config.dbname(dbname);
        }
    }
    if config.get_application_name().is_none() {
        if let Some(name) = var("PGAPPNAME") {
            config.application_name(name);
        }
    }
    if config.get_connect_timeout().is_none() {
        if let Some(seconds) = var("PGCONNECT_TIMEOUT") {
            let seconds: u64 = seconds.parse().map_err(|_| {
                Error::config(format!(
                    "PGCONNECT_TIMEOUT is not a number of seconds: {seconds:?}"
                ))
            })?;
            config.connect_timeout(Duration::from_secs(seconds));
        }
    }
    // Server settings for the session (`-c lock_timeout=5s`), as libpq
    // sends them: they are the session's defaults, which `RESET ALL` keeps.
    if config.get_options().is_none() {
        if let Some(options) = var("PGOPTIONS") {
            config.options(options);
        }
    }
    if let Some(attrs) =
        var("PGTARGETSESSIONATTRS").filter(|_| !url_names(&url, "target_session_attrs"))
    {
        config.target_session_attrs(match attrs.as_str() {
            "read-write" => TargetSessionAttrs::ReadWrite,
            "any" => TargetSessionAttrs::Any,
            other => {
                return Err(Error::config(format!(
                    "PGTARGETSESSIONATTRS must be read-write or any, not {other:?}"
                )))
            }
        });
    }
    // Last, as libpq: the password file, for the host, port, database and
    // user settled above.
    if config.get_password().is_none() {
        if let Some(password) = super::passfile::password_for(&config, &var) {
            config.password(password);
        }
    }
    Ok(config)
}

/// Whether a connection string sets the parameter `name` (in a URL's query
/// or as a key=value word).
fn url_names(url: &Option<String>, name: &str) -> bool {
    url.as_deref()
        .is_some_and(|url| take_params(url, &[name]).1[0].is_some())
}

/// Remove `names` from a connection string (URL query or key=value
/// words), returning what is left and the values taken, in `names` order.
pub(crate) fn take_params(url: &str, names: &[&str]) -> (String, Vec<Option<String>>) {
    let mut values = vec![None; names.len()];
    let mut take = |pair: &str| -> bool {
        let Some((key, value)) = pair.split_once('=') else {
            return false;
        };
        match names.iter().position(|n| *n == key) {
            Some(i) => {
                values[i] = Some(value.to_owned());
                true
            }
            None => false,
        }
    };
    if url.contains("://") {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_owned(), values);
        };
        let kept: Vec<&str> = query.split('&').filter(|pair| !take(pair)).collect();
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        (rest, values)
    } else {
        let kept: Vec<&str> = url.split_whitespace().filter(|pair| !take(pair)).collect();
        (kept.join(" "), values)
    }
}

/// Whether a connection URL writes a port (`host:5433` or `?port=`).
fn names_a_port(url: &str) -> bool {
    let Some(rest) = url.split_once("://").map(|(_, rest)| rest) else {
        // A key=value string: only an explicit `port=` counts.
        return url.split_whitespace().any(|kv| kv.starts_with("port="));
    };
    let (authority, query) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let hosts = authority
        .rsplit_once('@')
        .map_or(authority, |(_, hosts)| hosts);
    let in_authority = hosts.split(',').any(|host| {
        let after_bracket = host.rsplit_once(']').map_or(host, |(_, rest)| rest);
        after_bracket
            .rsplit_once(':')
            .is_some_and(|(_, port)| !port.is_empty())
    });
    in_authority || query.contains("port=")
}

/// `config` with the ports it was given removed (a `Config` has no setter
/// for that, so the settings a URL can hold are copied over).
fn without_ports(config: Config) -> Config {
    let mut copy = Config::new();
    for host in config.get_hosts() {
        match host {
            tokio_postgres::config::Host::Tcp(h) => copy.host(h),
            tokio_postgres::config::Host::Unix(path) => copy.host_path(path),
        };
    }
    if let Some(user) = config.get_user() {
        copy.user(user);
    }
    if let Some(password) = config.get_password() {
        copy.password(password);
    }
    if let Some(dbname) = config.get_dbname() {
        copy.dbname(dbname);
    }
    if let Some(options) = config.get_options() {
        copy.options(options);
    }
    if let Some(name) = config.get_application_name() {
        copy.application_name(name);
    }
    if let Some(timeout) = config.get_connect_timeout() {
        copy.connect_timeout(*timeout);
    }
    copy.ssl_mode(config.get_ssl_mode());
    copy.target_session_attrs(config.get_target_session_attrs());
    copy
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A variable lookup over fixed pairs, for tests of settings.
    pub(crate) fn vars<'a>(
        pairs: &'a [(&'a str, &'a str)],
    ) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn libpq_variables_fill_what_the_url_leaves_out() {
        let c = from_vars(vars(&[
            ("DATABASE_URL", "postgres://app@db.example/manager"),
            ("PGPASSWORD", "p@ss:w/rd%"),
            ("PGPORT", "6432"),
        ]))
        .unwrap();
        assert_eq!(c.get_user(), Some("app"));
        assert_eq!(c.get_password(), Some(&b"p@ss:w/rd%"[..]));
        assert_eq!(c.get_ports(), [6432]);
        assert_eq!(c.get_dbname(), Some("manager"));
    }

    #[test]
    fn pgoptions_and_target_session_attrs_unless_the_url_says() {
        let c = from_vars(vars(&[
            ("DATABASE_URL", "postgres://app@a,b/manager"),
            ("PGOPTIONS", "-c lock_timeout=5s"),
            ("PGTARGETSESSIONATTRS", "read-write"),
        ]))
        .unwrap();
        assert_eq!(c.get_options(), Some("-c lock_timeout=5s"));
        assert_eq!(c.get_target_session_attrs(), TargetSessionAttrs::ReadWrite);
        let c = from_vars(vars(&[
            (
                "DATABASE_URL",
                "host=a,b dbname=m target_session_attrs=any options='-c x=1'",
            ),
            ("PGOPTIONS", "-c lock_timeout=5s"),
            ("PGTARGETSESSIONATTRS", "read-write"),
        ]))
        .unwrap();
        assert_eq!(c.get_options(), Some("-c x=1"));
        assert_eq!(c.get_target_session_attrs(), TargetSessionAttrs::Any);
        let e = from_vars(vars(&[("PGTARGETSESSIONATTRS", "primary")])).unwrap_err();
        assert!(e.to_string().contains("read-write or any"), "{e}");
    }

    #[test]
    fn a_written_port_wins_over_pgport() {
        let c = from_vars(vars(&[
            ("DATABASE_URL", "postgres://app@db:7000/manager"),
            ("PGPORT", "6432"),
        ]))
        .unwrap();
        assert_eq!(c.get_ports(), [7000]);
        assert!(names_a_port("postgresql://[::1]:5433/db"));
        assert!(!names_a_port("postgresql://u:p@[::1]/db"));
        assert!(names_a_port("postgresql:///db?host=/tmp&port=5433"));
    }

    #[test]
    fn a_bad_url_is_refused_without_showing_it() {
        let e = from_vars(vars(&[(
            "DATABASE_URL",
            "postgres://u:secret@host:notaport/db",
        )]))
        .unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        assert!(!format!("{e:?}").contains("secret"), "{e:?}");
        // The driver's parse error is kept as the source, for callers
        // that walk the chain.
        let source = std::error::Error::source(&e).expect("the driver's error");
        assert!(
            source.downcast_ref::<tokio_postgres::Error>().is_some(),
            "{source:?}"
        );
    }
}
