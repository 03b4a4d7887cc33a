//! Directives in a migration's leading comment lines.

/// What the leading `--` comment lines of a migration ask for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Directives {
    /// `-- dbprep:no-transaction` (or sqlx's `-- no-transaction`): run the
    /// file outside a transaction, one statement at a time.
    pub no_transaction: bool,
}

/// A `-- dbprep:…` comment that dbprep does not know, most often a typo
/// that would otherwise silently change how a migration runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownDirective {
    /// 1-based line.
    pub line: usize,
    /// The directive as written, e.g. `dbprep:no-transactions`.
    pub directive: String,
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
            other if other.starts_with("dbprep:") => {
                return Err(UnknownDirective {
                    line: index + 1,
                    directive: other.split_whitespace().next().unwrap_or(other).to_owned(),
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
    fn typos_are_refused() {
        let e = parse("\n-- dbprep:no-transactions\n").unwrap_err();
        assert_eq!(
            (e.line, e.directive.as_str()),
            (2, "dbprep:no-transactions")
        );
    }
}
