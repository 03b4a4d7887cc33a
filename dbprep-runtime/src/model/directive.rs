//! Directives in a migration's leading comment lines.

use std::time::Duration;

/// What the leading `--` comment lines of a migration ask for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Directives {
    /// `-- dbprep:no-transaction` (or sqlx's `-- no-transaction`): run the
    /// file outside a transaction, one statement at a time.
    pub no_transaction: bool,
    /// `-- dbprep:lock-timeout 5s`: how long a statement of this migration
    /// may wait for a lock before the attempt is given up and retried
    /// (`0`: as long as it takes), instead of the run's setting.
    pub lock_timeout: Option<Duration>,
}

/// A `-- dbprep:…` comment that dbprep does not know, most often a typo
/// that would otherwise silently change how a migration runs, or one with
/// a value it cannot read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownDirective {
    /// 1-based line.
    pub line: usize,
    /// The directive as written, e.g. `dbprep:no-transactions`.
    pub directive: String,
    /// Why its value is refused, for a known directive.
    pub bad_value: Option<String>,
}

/// A duration as a directive or the command line writes it: `0`, or a
/// whole number with `ms`, `s` or `min` (`250ms`, `5s`, `1min`).
///
/// # Errors
///
/// What is wrong with `text`, as a sentence.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().map_err(|_| {
        format!(
            "{text:?} is not a duration: write 0, or a whole number with ms, s or min (e.g. 5s)"
        )
    })?;
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(number)),
        "s" => Ok(Duration::from_secs(number)),
        "min" => Ok(Duration::from_secs(number.saturating_mul(60))),
        _ => Err(format!(
            "{text:?} is not a duration: write 0, or a whole number with ms, s or min (e.g. 5s)"
        )),
    }
}

/// Read the directives from the comment lines at the top of `sql` (blank
/// lines may separate them; the first other line ends the header).
pub fn parse(sql: &str) -> Result<Directives, UnknownDirective> {
    let mut directives = Directives::default();
    for (index, line) in sql.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some(comment) = line.strip_prefix("--") else {
            break;
        };
        let comment = comment.trim();
        match comment {
            "dbprep:no-transaction" | "no-transaction" => directives.no_transaction = true,
            other if other.starts_with("dbprep:lock-timeout") => {
                let value = other["dbprep:lock-timeout".len()..].trim();
                directives.lock_timeout =
                    Some(parse_duration(value).map_err(|reason| UnknownDirective {
                        line: index + 1,
                        directive: "dbprep:lock-timeout".to_owned(),
                        bad_value: Some(reason),
                    })?);
            }
            other if other.starts_with("dbprep:allow(") => {
                if let Some(Err(name)) = super::lint::allowed_in(other) {
                    let rules: Vec<&str> =
                        super::lint::Rule::ALL.iter().map(|r| r.name()).collect();
                    return Err(UnknownDirective {
                        line: index + 1,
                        directive: "dbprep:allow".to_owned(),
                        bad_value: Some(format!(
                            "no rule is named {name:?}; the rules are {}",
                            rules.join(", ")
                        )),
                    });
                }
            }
            other if other.starts_with("dbprep:") => {
                return Err(UnknownDirective {
                    line: index + 1,
                    directive: other.split_whitespace().next().unwrap_or(other).to_owned(),
                    bad_value: None,
                })
            }
            _ => {}
        }
    }
    Ok(directives)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_directive_may_follow_other_comment_lines() {
        let d = parse("-- Build the index without locking writers.\n-- dbprep:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (c);").unwrap();
        assert!(d.no_transaction);
    }

    use super::*;

    #[test]
    fn directive_after_sql_is_ignored() {
        assert!(
            !parse("SELECT 1;\n-- dbprep:no-transaction\n")
                .unwrap()
                .no_transaction
        );
    }

    #[test]
    fn sqlx_spelling_is_accepted() {
        assert!(parse("-- no-transaction\nVACUUM;").unwrap().no_transaction);
    }

    #[test]
    fn a_lock_timeout_is_read_with_its_unit() {
        let d = parse("-- dbprep:lock-timeout 250ms\nALTER TABLE t ADD c int;").unwrap();
        assert_eq!(d.lock_timeout, Some(Duration::from_millis(250)));
        assert_eq!(
            parse("-- dbprep:lock-timeout 0\n").unwrap().lock_timeout,
            Some(Duration::ZERO)
        );
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
        let e = parse("-- dbprep:lock-timeout 5 seconds\n").unwrap_err();
        assert_eq!(
            e.bad_value.as_deref(),
            Some("\"5 seconds\" is not a duration: write 0, or a whole number with ms, s or min (e.g. 5s)")
        );
    }

    #[test]
    fn typos_are_refused() {
        let e = parse("\n-- dbprep:no-transactions\n").unwrap_err();
        assert_eq!(
            (e.line, e.directive.as_str()),
            (2, "dbprep:no-transactions")
        );
    }
}
