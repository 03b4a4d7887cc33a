//! Migration file and folder names.
//!
//! dbprep reads the names of the tools teams switch from, so a folder can be
//! adopted as it is:
//!
//! | scheme | example |
//! |---|---|
//! | Flyway / refinery | `V3__add_users.sql`, undo `U3__add_users.sql` |
//! | sqlx | `20240101120000_add_users.sql`, `…_add_users.up.sql` + `….down.sql` |
//! | diesel | folder `2019-02-26-002946_add_users/` with `up.sql`, `down.sql` |
//! | baseline | `B100__baseline.sql`: the whole schema at version 100 |
//! | repeatable | `R__views.sql`: applied again whenever it changes |

/// Whether a file holds a forward or a reverting migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Applies a change (`V3__x.sql`, `…_x.sql`, `….up.sql`, `up.sql`).
    Up,
    /// Reverts it (`U3__x.sql`, `….down.sql`, `down.sql`).
    Down,
    /// The whole schema at a version, for fresh databases (`B100__x.sql`).
    Baseline,
    /// Flyway's repeatable migration (`R__views.sql`): no version, applied
    /// again whenever its text changes, after the versioned ones.
    Repeatable,
}

/// What a migration file's name says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedName {
    /// The version: the leading number (diesel's dashes dropped); 0 for a
    /// repeatable migration, which has none.
    pub version: i64,
    /// The description after the version, e.g. `add_users`.
    pub name: String,
    /// Up, down or baseline.
    pub direction: Direction,
}

/// Why a `.sql` name is not a migration name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Flyway's dotted versions (`V1.1__x.sql`).
    #[error("dotted versions like {0} are not supported: versions are whole numbers; renumber, e.g. V11__…")]
    DottedVersion(String),
    /// A version that does not fit a signed 64-bit integer.
    #[error("version {0} is too large (at most 9223372036854775807)")]
    VersionTooLarge(String),
    /// Anything else.
    #[error("not a migration name: expected V<version>__<name>.sql, U<version>__<name>.sql, B<version>__<name>.sql, R__<name>.sql, <version>_<name>.sql or <version>_<name>.up.sql/.down.sql")]
    Unrecognized,
}

fn parse_version(digits: &str) -> Result<i64, NameError> {
    digits
        .parse::<i64>()
        .map_err(|_| NameError::VersionTooLarge(digits.to_owned()))
}

fn split_digits(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s.split_at(end)
}

/// Parse the name of a `.sql` file that sits directly in the migrations
/// folder. Returns `Ok(None)` for files that are not SQL (README, `.keep`,
/// `dbprep.sum`), which the folder may hold.
pub fn parse_file_name(file_name: &str) -> Result<Option<ParsedName>, NameError> {
    let Some(stem) = file_name.strip_suffix(".sql") else {
        return Ok(None);
    };
    if let Some(name) = stem.strip_prefix("R__") {
        if name.is_empty() {
            return Err(NameError::Unrecognized);
        }
        return Ok(Some(ParsedName {
            version: 0,
            name: name.to_owned(),
            direction: Direction::Repeatable,
        }));
    }
    // Flyway / refinery / baseline: a letter, digits, two underscores.
    let mut chars = stem.chars();
    let prefix = chars.next();
    let direction = match prefix {
        Some('V') => Some(Direction::Up),
        Some('U') => Some(Direction::Down),
        Some('B') => Some(Direction::Baseline),
        _ => None,
    };
    if let Some(direction) = direction {
        let (digits, rest) = split_digits(&stem[1..]);
        if !digits.is_empty() {
            if rest.starts_with('.') || rest.starts_with('_') && !rest.starts_with("__") {
                let dotted = rest.split("__").next().unwrap_or(rest);
                return Err(NameError::DottedVersion(format!(
                    "{}{digits}{dotted}",
                    prefix.unwrap_or('V')
                )));
            }
            if let Some(name) = rest.strip_prefix("__").filter(|n| !n.is_empty()) {
                return Ok(Some(ParsedName {
                    version: parse_version(digits)?,
                    name: name.to_owned(),
                    direction,
                }));
            }
        }
        return Err(NameError::Unrecognized);
    }
    // sqlx: digits, one underscore, a name, optionally .up/.down.
    let (digits, rest) = split_digits(stem);
    let Some(rest) = rest
        .strip_prefix('_')
        .filter(|r| !r.is_empty() && !digits.is_empty())
    else {
        return Err(NameError::Unrecognized);
    };
    let (name, direction) = if let Some(name) = rest.strip_suffix(".up") {
        (name, Direction::Up)
    } else if let Some(name) = rest.strip_suffix(".down") {
        (name, Direction::Down)
    } else {
        (rest, Direction::Up)
    };
    if name.is_empty() || name.contains('.') {
        return Err(NameError::Unrecognized);
    }
    Ok(Some(ParsedName {
        version: parse_version(digits)?,
        name: name.to_owned(),
        direction,
    }))
}

/// Parse a diesel migration folder name, `2019-02-26-002946_add_users`.
/// Returns `None` for folders that do not look like one (they are ignored).
pub fn parse_folder_name(folder: &str) -> Option<Result<(i64, String), NameError>> {
    let (stamp, name) = folder.split_once('_')?;
    if stamp.is_empty()
        || name.is_empty()
        || !stamp.starts_with(|c: char| c.is_ascii_digit())
        || !stamp.chars().all(|c| c.is_ascii_digit() || c == '-')
    {
        return None;
    }
    let digits: String = stamp.chars().filter(char::is_ascii_digit).collect();
    Some(parse_version(&digits).map(|v| (v, name.to_owned())))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_flyway_name_gives_version_name_and_direction() {
        let v = parse_file_name("V3__add_users.sql").unwrap().unwrap();
        assert_eq!(
            (v.version, v.name.as_str(), v.direction),
            (3, "add_users", Direction::Up)
        );
        let d = parse_file_name("20240101120000_add_users.down.sql")
            .unwrap()
            .unwrap();
        assert_eq!((d.version, d.direction), (20240101120000, Direction::Down));
        assert!(parse_file_name("README.md").unwrap().is_none());
    }

    #[test]
    fn a_diesel_folder_drops_the_dashes_of_its_version() {
        let (version, name) = parse_folder_name("2019-02-26-002946_add_users")
            .unwrap()
            .unwrap();
        assert_eq!((version, name.as_str()), (20190226002946, "add_users"));
    }

    use super::*;

    fn parsed(name: &str) -> ParsedName {
        parse_file_name(name).unwrap().unwrap()
    }

    #[test]
    fn flyway_names() {
        assert_eq!(parsed("V1__init.sql").direction, Direction::Up);
        assert_eq!(parsed("U1__init.sql").direction, Direction::Down);
        assert_eq!(parsed("B100__baseline.sql").version, 100);
        assert_eq!(parsed("V007__x_y.sql").name, "x_y");
    }

    #[test]
    fn sqlx_names() {
        assert_eq!(
            parsed("20240101120000_add_users.sql").version,
            20240101120000
        );
        assert_eq!(parsed("1_a.up.sql").direction, Direction::Up);
        assert_eq!(parsed("1_a.down.sql").name, "a");
    }

    #[test]
    fn unsupported_flyway_forms() {
        assert_eq!(parsed("R__views.sql").direction, Direction::Repeatable);
        assert_eq!(parsed("R__views.sql").name, "views");
        assert_eq!(parse_file_name("R__.sql"), Err(NameError::Unrecognized));
        assert_eq!(
            parse_file_name("V1.1__x.sql"),
            Err(NameError::DottedVersion("V1.1".into()))
        );
        assert_eq!(
            parse_file_name("V1_1__x.sql"),
            Err(NameError::DottedVersion("V1_1".into()))
        );
    }

    #[test]
    fn bad_names() {
        for name in [
            "V__x.sql",
            "V1__.sql",
            "init.sql",
            "1.sql",
            "1_.sql",
            "x1_a.sql",
            "1_a.b.sql",
        ] {
            assert_eq!(
                parse_file_name(name),
                Err(NameError::Unrecognized),
                "{name}"
            );
        }
        assert!(matches!(
            parse_file_name("99999999999999999999_a.sql"),
            Err(NameError::VersionTooLarge(_))
        ));
    }

    #[test]
    fn folders() {
        assert!(parse_folder_name("docs").is_none());
        assert!(parse_folder_name("00000000000000_diesel_initial_setup").is_some());
    }
}
