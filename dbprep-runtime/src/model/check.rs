//! The compile-time checks: SQL that would break a migration's atomicity or
//! hang at run time is refused before anything runs.
//!
//! `embed_migrations!` runs them on every file, and so does reading a folder
//! at run time, with the same messages.

use std::fmt;

use super::lexer::{split, Script, Statement};

/// One refused construct in a migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlProblem {
    /// 1-based line in the file.
    pub line: usize,
    /// 1-based column in the file, in characters.
    pub column: usize,
    /// The first line of the offending statement (or meta-command).
    pub statement: String,
    /// What was found.
    pub kind: ProblemKind,
}

/// The kinds of SQL dbprep refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// `BEGIN`, `COMMIT`, `ROLLBACK`, `SAVEPOINT`… in a transactional file.
    TransactionControl {
        /// The command, e.g. `COMMIT` or `ROLLBACK TO SAVEPOINT`.
        command: String,
    },
    /// A statement PostgreSQL refuses inside a transaction block, in a file
    /// without `-- dbprep:no-transaction`.
    NeedsNoTransaction {
        /// The command, e.g. `CREATE INDEX CONCURRENTLY`.
        command: String,
    },
    /// A psql meta-command such as `\i` or `\set`.
    MetaCommand,
    /// `COPY … FROM STDIN`, whose data only psql can send.
    CopyFromStdin,
    /// `COPY … TO STDOUT`, whose rows only psql would read.
    CopyToStdout,
    /// A quote, comment or dollar-quoted body that is never closed.
    Unterminated {
        /// What is left open.
        what: String,
    },
}

impl SqlProblem {
    /// What is wrong, in one sentence.
    pub fn message(&self) -> String {
        match &self.kind {
            ProblemKind::TransactionControl { command } => {
                let effect = match command.split(' ').next().unwrap_or_default() {
                    "COMMIT" | "END" if command != "COMMIT PREPARED" => {
                        "commits part of the migration with no history row"
                    }
                    "ROLLBACK" | "ABORT" if !command.contains("SAVEPOINT") && command != "ROLLBACK PREPARED" => {
                        "undoes the migration's change while dbprep records it as applied"
                    }
                    "BEGIN" | "START" => "is redundant: dbprep runs each migration in its own transaction",
                    "PREPARE" | "COMMIT" | "ROLLBACK" if command.ends_with("PREPARED") || command.starts_with("PREPARE") => {
                        "hands the migration's transaction to two-phase commit, outside dbprep's control"
                    }
                    _ => "manages the transaction that dbprep owns for this migration",
                };
                format!("{command} inside a migration {effect}")
            }
            ProblemKind::NeedsNoTransaction { command } => {
                format!("{command} cannot run inside a transaction block, and this migration runs in one")
            }
            ProblemKind::MetaCommand => {
                "psql meta-command: the server does not understand it".to_owned()
            }
            ProblemKind::CopyFromStdin => {
                "COPY … FROM STDIN needs its data sent by psql; dbprep sends SQL only".to_owned()
            }
            ProblemKind::CopyToStdout => {
                "COPY … TO STDOUT sends its rows to psql; dbprep does not read them".to_owned()
            }
            ProblemKind::Unterminated { what } => format!("unterminated {what}"),
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match &self.kind {
            ProblemKind::TransactionControl { .. } => {
                "remove it; statements that must run outside a transaction go in a file of their own that starts with `-- dbprep:no-transaction`"
            }
            ProblemKind::NeedsNoTransaction { .. } => {
                "move it to a migration file of its own that starts with `-- dbprep:no-transaction`"
            }
            ProblemKind::MetaCommand => {
                "write the SQL itself: inline what `\\i` includes, replace `\\set` variables with their values; a migration runs on the connection dbprep opened"
            }
            ProblemKind::CopyFromStdin => {
                "turn the data into INSERT statements (pg_dump --inserts) or load it as a fixture"
            }
            ProblemKind::CopyToStdout => {
                "remove it: what a migration prints goes nowhere (to keep rows, copy them into a table)"
            }
            ProblemKind::Unterminated { .. } => "close it; the rest of the file is swallowed by it",
        }
    }

    /// The problem with its place in `file`: `file:line:col: message`, the
    /// statement's first line, and the hint.
    pub fn in_file<'a>(&'a self, file: &'a str) -> impl fmt::Display + 'a {
        InFile {
            problem: self,
            file,
        }
    }
}

struct InFile<'a> {
    problem: &'a SqlProblem,
    file: &'a str,
}

impl fmt::Display for InFile<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.problem;
        write!(f, "{}:{}:{}: {}", self.file, p.line, p.column, p.message())?;
        if !p.statement.is_empty() {
            write!(f, "\n    {}", p.statement)?;
        }
        write!(f, "\n  hint: {}", p.hint())
    }
}

/// Check a migration's SQL; `no_transaction` says whether the file carries
/// `-- dbprep:no-transaction`. Returns every problem, in file order.
pub fn check_sql(sql: &str, no_transaction: bool) -> Vec<SqlProblem> {
    check_script(sql, &split(sql), no_transaction)
}

/// [`check_sql`] on a script that is already split.
pub fn check_script(sql: &str, script: &Script, no_transaction: bool) -> Vec<SqlProblem> {
    let mut problems = Vec::new();
    for meta in &script.meta_commands {
        problems.push(SqlProblem {
            line: meta.line,
            column: meta.column,
            statement: meta.text.clone(),
            kind: ProblemKind::MetaCommand,
        });
    }
    for statement in &script.statements {
        let kind = if is_copy_with(statement, "FROM", "STDIN") {
            Some(ProblemKind::CopyFromStdin)
        } else if is_copy_with(statement, "TO", "STDOUT") {
            Some(ProblemKind::CopyToStdout)
        } else if no_transaction {
            None
        } else if let Some(command) = transaction_control(statement) {
            Some(ProblemKind::TransactionControl { command })
        } else {
            needs_no_transaction(statement)
                .map(|command| ProblemKind::NeedsNoTransaction { command })
        };
        if let Some(kind) = kind {
            problems.push(SqlProblem {
                line: statement.line,
                column: statement.column,
                statement: statement.first_line(sql).to_owned(),
                kind,
            });
        }
    }
    if let Some(open) = &script.unterminated {
        problems.push(SqlProblem {
            line: open.line,
            column: open.column,
            statement: String::new(),
            kind: ProblemKind::Unterminated {
                what: open.what.clone(),
            },
        });
    }
    problems.sort_by_key(|p| (p.line, p.column));
    problems
}

fn words(statement: &Statement, n: usize) -> String {
    statement.words[..n.min(statement.words.len())].join(" ")
}

/// The transaction-control command a statement is, if any.
fn transaction_control(statement: &Statement) -> Option<String> {
    let w = &statement.words;
    let first = w.first()?.as_str();
    let second = w.get(1).map(String::as_str);
    let command = match (first, second) {
        ("BEGIN" | "COMMIT" | "END" | "ABORT" | "SAVEPOINT" | "RELEASE", _) => {
            if first == "COMMIT" && second == Some("PREPARED") {
                words(statement, 2)
            } else {
                first.to_owned()
            }
        }
        ("ROLLBACK", Some("PREPARED")) => words(statement, 2),
        ("ROLLBACK", Some("TO")) => "ROLLBACK TO SAVEPOINT".to_owned(),
        ("ROLLBACK", _) => first.to_owned(),
        ("START" | "PREPARE", Some("TRANSACTION")) => words(statement, 2),
        _ => return None,
    };
    Some(command)
}

/// The command a statement is if PostgreSQL refuses it inside a
/// transaction block.
fn needs_no_transaction(statement: &Statement) -> Option<String> {
    let w: Vec<&str> = statement.words.iter().map(String::as_str).collect();
    let command = match w.as_slice() {
        ["CREATE", "INDEX", "CONCURRENTLY", ..]
        | ["CREATE", "UNIQUE", "INDEX", "CONCURRENTLY", ..] => "CREATE INDEX CONCURRENTLY",
        ["DROP", "INDEX", "CONCURRENTLY", ..] => "DROP INDEX CONCURRENTLY",
        ["REINDEX", rest @ ..] => {
            // REINDEX [ ( options ) ] { INDEX | TABLE | SCHEMA | DATABASE | SYSTEM } [ CONCURRENTLY ] name
            let target = rest
                .iter()
                .position(|w| matches!(*w, "INDEX" | "TABLE" | "SCHEMA" | "DATABASE" | "SYSTEM"))?;
            match (rest[target], rest.get(target + 1)) {
                (_, Some(&"CONCURRENTLY")) => "REINDEX CONCURRENTLY",
                ("SCHEMA", _) => "REINDEX SCHEMA",
                ("DATABASE", _) => "REINDEX DATABASE",
                ("SYSTEM", _) => "REINDEX SYSTEM",
                _ => return None,
            }
        }
        ["VACUUM", ..] => "VACUUM",
        ["CREATE", "DATABASE", ..] => "CREATE DATABASE",
        ["DROP", "DATABASE", ..] => "DROP DATABASE",
        ["ALTER", "DATABASE", _, "SET", "TABLESPACE", ..] => "ALTER DATABASE … SET TABLESPACE",
        ["CREATE", "TABLESPACE", ..] => "CREATE TABLESPACE",
        ["DROP", "TABLESPACE", ..] => "DROP TABLESPACE",
        ["ALTER", "SYSTEM", ..] => "ALTER SYSTEM",
        ["CLUSTER"] | ["CLUSTER", "VERBOSE"] => "CLUSTER without a table",
        ["CREATE", "SUBSCRIPTION", ..] if creates_slot(&w) => {
            "CREATE SUBSCRIPTION with a replication slot"
        }
        _ => return None,
    };
    Some(command.to_owned())
}

/// `CREATE SUBSCRIPTION` creates a replication slot (and so refuses a
/// transaction block) unless `create_slot = false` or `connect = false`.
fn creates_slot(words: &[&str]) -> bool {
    !words
        .windows(2)
        .any(|pair| matches!(pair, ["CREATE_SLOT" | "CONNECT", "FALSE" | "OFF"]))
}

/// A `COPY` with `direction` followed by `end`: `FROM STDIN`, `TO STDOUT`.
fn is_copy_with(statement: &Statement, direction: &str, end: &str) -> bool {
    statement.words.first().is_some_and(|w| w == "COPY")
        && statement
            .words
            .windows(2)
            .any(|pair| pair[0] == direction && pair[1] == end)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_commit_is_found_at_its_line_and_concurrently_passes_with_the_directive() {
        let problems = check_sql("CREATE TABLE t (id int);\nCOMMIT;\n", false);
        assert_eq!(problems.len(), 1);
        assert_eq!((problems[0].line, problems[0].column), (2, 1));
        assert!(check_sql("CREATE INDEX CONCURRENTLY i ON t (id);", true).is_empty());
    }

    use super::*;

    fn kinds(sql: &str) -> Vec<ProblemKind> {
        check_sql(sql, false).into_iter().map(|p| p.kind).collect()
    }

    fn control(command: &str) -> ProblemKind {
        ProblemKind::TransactionControl {
            command: command.into(),
        }
    }

    fn outside(command: &str) -> ProblemKind {
        ProblemKind::NeedsNoTransaction {
            command: command.into(),
        }
    }

    #[test]
    fn transaction_control_is_refused() {
        assert_eq!(
            kinds("BEGIN; SELECT 1; COMMIT;"),
            [control("BEGIN"), control("COMMIT")]
        );
        assert_eq!(kinds("start transaction;"), [control("START TRANSACTION")]);
        assert_eq!(
            kinds("ROLLBACK TO SAVEPOINT a; RELEASE a; END;"),
            [
                control("ROLLBACK TO SAVEPOINT"),
                control("RELEASE"),
                control("END")
            ]
        );
        assert_eq!(
            kinds("PREPARE TRANSACTION 'x'; COMMIT PREPARED 'x';"),
            [control("PREPARE TRANSACTION"), control("COMMIT PREPARED")]
        );
        assert_eq!(kinds("abort;"), [control("ABORT")]);
    }

    #[test]
    fn statements_outside_transactions_are_refused() {
        assert_eq!(
            kinds("CREATE UNIQUE INDEX CONCURRENTLY i ON t (c);"),
            [outside("CREATE INDEX CONCURRENTLY")]
        );
        assert_eq!(
            kinds("REINDEX (VERBOSE) TABLE CONCURRENTLY t;"),
            [outside("REINDEX CONCURRENTLY")]
        );
        assert_eq!(kinds("REINDEX TABLE t;"), []);
        assert_eq!(kinds("VACUUM (ANALYZE) t;"), [outside("VACUUM")]);
        assert_eq!(
            kinds("CLUSTER; CLUSTER t USING i;"),
            [outside("CLUSTER without a table")]
        );
        assert_eq!(
            kinds("CREATE SUBSCRIPTION s CONNECTION 'x' PUBLICATION p;"),
            [outside("CREATE SUBSCRIPTION with a replication slot")]
        );
        assert_eq!(
            kinds("CREATE SUBSCRIPTION s CONNECTION 'x' PUBLICATION p WITH (create_slot = false);"),
            []
        );
    }

    #[test]
    fn no_transaction_files_may_manage_transactions() {
        assert!(check_sql("VACUUM; BEGIN; SELECT 1; COMMIT;", true).is_empty());
    }

    #[test]
    fn meta_commands_and_copy_are_refused_everywhere() {
        let sql = "\\set ON_ERROR_STOP on\nCOPY t (a) FROM stdin;\nCOPY (SELECT 1) TO STDOUT;\n";
        for no_transaction in [false, true] {
            let kinds: Vec<_> = check_sql(sql, no_transaction)
                .into_iter()
                .map(|p| p.kind)
                .collect();
            assert_eq!(
                kinds,
                [
                    ProblemKind::MetaCommand,
                    ProblemKind::CopyFromStdin,
                    ProblemKind::CopyToStdout
                ]
            );
        }
    }

    #[test]
    fn message_names_place_statement_and_hint() {
        let sql = "CREATE TABLE t (id int);\n  COMMIT;\n";
        let problem = &check_sql(sql, false)[0];
        assert_eq!(
            problem.in_file("migrations/V1__t.sql").to_string(),
            "migrations/V1__t.sql:2:3: COMMIT inside a migration commits part of the migration with no history row\n    COMMIT\n  hint: remove it; statements that must run outside a transaction go in a file of their own that starts with `-- dbprep:no-transaction`"
        );
    }
}
