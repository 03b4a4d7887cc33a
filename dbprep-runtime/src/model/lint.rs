//! A lint for DDL that blocks the application's traffic while it runs:
//! what squawk and strong_migrations check, run on the migrations
//! themselves.
//!
//! Each [`Rule`] looks at one statement's words (outside strings and
//! comments, a qualified name one word). A statement on a table created earlier in the
//! same file is never flagged: nobody else uses that table yet. A finding
//! is accepted on purpose with `-- dbprep:allow(rule)` among the file's
//! leading comments (the whole file) or in the comments just before the
//! statement (that statement).

use std::collections::HashSet;
use std::fmt;

use super::lexer::{split, Statement};

/// A lint rule: one kind of statement that blocks traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// `CREATE INDEX` without `CONCURRENTLY`: blocks writes to the table
    /// for the whole build.
    CreateIndex,
    /// `ADD FOREIGN KEY` or `ADD CHECK` without `NOT VALID`: checks every
    /// row while holding a lock that blocks writes.
    ValidatingConstraint,
    /// `SET NOT NULL`: scans the whole table under `ACCESS EXCLUSIVE`.
    SetNotNull,
    /// `ALTER COLUMN … TYPE`: most type changes rewrite the table and its
    /// indexes under `ACCESS EXCLUSIVE`.
    ColumnType,
    /// `ADD COLUMN` with a volatile default: rewrites the table.
    VolatileDefault,
    /// `ADD PRIMARY KEY` or `ADD UNIQUE` without `USING INDEX`: builds the
    /// index under `ACCESS EXCLUSIVE`.
    ConstraintWithoutIndex,
    /// Renaming or dropping a column or table: the replicas still running
    /// the old binary during a rolling deploy fail on it.
    RenameOrDrop,
    /// `VACUUM FULL`, `CLUSTER`, `REINDEX` without `CONCURRENTLY`: rewrite
    /// or rebuild under `ACCESS EXCLUSIVE`.
    Rewrite,
    /// `LOCK TABLE`: holds a lock for the rest of the migration.
    LockTable,
}

impl Rule {
    /// Every rule, in the order the docs list them.
    pub const ALL: [Rule; 9] = [
        Rule::CreateIndex,
        Rule::ValidatingConstraint,
        Rule::SetNotNull,
        Rule::ColumnType,
        Rule::VolatileDefault,
        Rule::ConstraintWithoutIndex,
        Rule::RenameOrDrop,
        Rule::Rewrite,
        Rule::LockTable,
    ];

    /// The rule's name, as `-- dbprep:allow(…)` and the reports spell it.
    pub fn name(self) -> &'static str {
        match self {
            Rule::CreateIndex => "create-index",
            Rule::ValidatingConstraint => "validating-constraint",
            Rule::SetNotNull => "set-not-null",
            Rule::ColumnType => "column-type",
            Rule::VolatileDefault => "volatile-default",
            Rule::ConstraintWithoutIndex => "constraint-without-index",
            Rule::RenameOrDrop => "rename-or-drop",
            Rule::Rewrite => "rewrite",
            Rule::LockTable => "lock-table",
        }
    }

    /// The rule named `name`.
    pub fn from_name(name: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.name() == name)
    }

    /// What to do instead.
    pub fn advice(self) -> &'static str {
        match self {
            Rule::CreateIndex => "CREATE INDEX blocks writes to the table while it builds: use CREATE INDEX CONCURRENTLY in a file of its own that starts with `-- dbprep:no-transaction`",
            Rule::ValidatingConstraint => "adding a FOREIGN KEY or CHECK checks every row while writes wait: add it NOT VALID, then VALIDATE CONSTRAINT in a later migration (that takes a lock that lets writes through)",
            Rule::SetNotNull => "SET NOT NULL scans the table under an ACCESS EXCLUSIVE lock: add CHECK (col IS NOT NULL) NOT VALID, VALIDATE it in a later migration, then SET NOT NULL (which uses the valid check) and drop the check",
            Rule::ColumnType => "changing a column's type rewrites the table under an ACCESS EXCLUSIVE lock (unless the types are binary-compatible): add a new column, backfill it in batches, and switch over",
            Rule::VolatileDefault => "a volatile default (random(), gen_random_uuid(), clock_timestamp(), nextval(…)) rewrites the whole table: add the column without a default, set the default, backfill in batches",
            Rule::ConstraintWithoutIndex => "ADD PRIMARY KEY or UNIQUE builds its index under an ACCESS EXCLUSIVE lock: CREATE UNIQUE INDEX CONCURRENTLY first, then ADD … USING INDEX",
            Rule::RenameOrDrop => "renaming or dropping a column or table breaks the replicas still running the previous release during a rolling deploy: stop using it in a release first, drop it in a later one",
            Rule::Rewrite => "VACUUM FULL, CLUSTER and REINDEX hold an ACCESS EXCLUSIVE lock for the whole rewrite: use REINDEX … CONCURRENTLY, or pg_repack",
            Rule::LockTable => "LOCK TABLE holds the lock until the migration commits: remove it, or keep the migration short and set a lock timeout",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One statement a rule flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LintFinding {
    /// The rule.
    pub rule: Rule,
    /// The migration's file.
    pub file: String,
    /// 1-based line of the statement.
    pub line: usize,
    /// 1-based column of the statement.
    pub column: usize,
    /// The statement's first line.
    pub statement: String,
}

impl fmt::Display for LintFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: [{}] {}\n    {}\n  to accept it on purpose: -- dbprep:allow({})",
            self.file,
            self.line,
            self.column,
            self.rule,
            self.rule.advice(),
            self.statement,
            self.rule
        )
    }
}

/// The rules `-- dbprep:allow(a, b)` names, or the first name that is not
/// a rule. `None` when `comment` is not an allow directive.
pub fn allowed_in(comment: &str) -> Option<Result<Vec<Rule>, String>> {
    let inner = comment
        .trim()
        .strip_prefix("dbprep:allow(")?
        .trim_end()
        .strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|name| Rule::from_name(name.trim()).ok_or_else(|| name.trim().to_owned()))
            .collect(),
    )
}

/// The rules allowed by the `--` comment lines in `text`.
fn allows(text: &str) -> HashSet<Rule> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("--"))
        .filter_map(allowed_in)
        .filter_map(Result::ok)
        .flatten()
        .collect()
}

/// The leading comment lines of a file (its directives' header).
fn header(sql: &str) -> &str {
    let mut end = 0;
    for line in sql.split_inclusive('\n') {
        let trimmed = line.trim();
        if !trimmed.is_empty() && !trimmed.starts_with("--") {
            break;
        }
        end += line.len();
    }
    &sql[..end]
}

/// Lint the migration `sql` of `file`.
pub fn lint(file: &str, sql: &str) -> Vec<LintFinding> {
    let file_allows = allows(header(sql));
    let script = split(sql);
    let mut created: HashSet<String> = HashSet::new();
    let mut findings = Vec::new();
    for statement in &script.statements {
        let words = &words(statement.text(sql));
        if let Some(table) = created_table(words) {
            created.insert(table);
            continue;
        }
        let Some(rule) = flagged(words, &created) else {
            continue;
        };
        let leading = &sql[statement.range.start..statement.start];
        if file_allows.contains(&rule) || allows(leading).contains(&rule) {
            continue;
        }
        findings.push(finding(rule, file, sql, statement));
    }
    findings
}

fn finding(rule: Rule, file: &str, sql: &str, statement: &Statement) -> LintFinding {
    LintFinding {
        rule,
        file: file.to_owned(),
        line: statement.line,
        column: statement.column,
        statement: statement.first_line(sql).to_owned(),
    }
}

/// The words of a statement outside strings and comments: keywords and
/// plain names upper-cased, quoted names as written, a qualified name
/// (`app.users`, `"App".users`) one word.
fn words(text: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    let mut chars = text.char_indices().peekable();
    // Whether the last word ended with a `.` that joins the next part.
    let mut joining = false;
    let push = |words: &mut Vec<String>, part: String, joining: &mut bool| {
        match words.last_mut() {
            Some(last) if *joining => {
                last.push('.');
                last.push_str(&part);
            }
            _ => words.push(part),
        }
        *joining = false;
    };
    while let Some((i, c)) = chars.next() {
        match c {
            '\'' => {
                while let Some((_, c)) = chars.next() {
                    if c == '\'' && chars.next_if(|(_, c)| *c == '\'').is_none() {
                        break;
                    }
                }
                joining = false;
            }
            '"' => {
                let mut name = String::new();
                while let Some((_, c)) = chars.next() {
                    if c == '"' && chars.next_if(|(_, c)| *c == '"').is_none() {
                        break;
                    }
                    name.push(c);
                }
                push(&mut words, name, &mut joining);
            }
            '-' if text[i..].starts_with("--") => {
                while chars.next_if(|(_, c)| *c != '\n').is_some() {}
            }
            '/' if text[i..].starts_with("/*") => {
                let end = text[i + 2..]
                    .find("*/")
                    .map_or(text.len(), |e| i + 2 + e + 2);
                while chars.next_if(|(j, _)| *j < end).is_some() {}
            }
            '$' => {
                // A dollar-quoted body: skip to its closing tag.
                let tag_end = text[i + 1..]
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .map(|e| i + 1 + e);
                if let Some(tag_end) = tag_end.filter(|e| text[*e..].starts_with('$')) {
                    let tag = &text[i..=tag_end];
                    let end = text[tag_end + 1..]
                        .find(tag)
                        .map_or(text.len(), |e| tag_end + 1 + e + tag.len());
                    while chars.next_if(|(j, _)| *j < end).is_some() {}
                }
            }
            '.' => joining = !words.is_empty(),
            c if c.is_alphanumeric() || c == '_' => {
                let mut word = c.to_uppercase().collect::<String>();
                while let Some((_, c)) =
                    chars.next_if(|(_, c)| c.is_alphanumeric() || *c == '_' || *c == '$')
                {
                    word.extend(c.to_uppercase());
                }
                push(&mut words, word, &mut joining);
            }
            _ => joining = false,
        }
    }
    words
}

/// The table a `CREATE TABLE` makes (its last name part, upper-cased).
fn created_table(words: &[String]) -> Option<String> {
    let mut rest = words.strip_prefix(&["CREATE".to_owned()])?;
    for skip in [
        "OR",
        "REPLACE",
        "GLOBAL",
        "LOCAL",
        "TEMP",
        "TEMPORARY",
        "UNLOGGED",
    ] {
        if rest.first().map(String::as_str) == Some(skip) {
            rest = &rest[1..];
        }
    }
    let rest = rest.strip_prefix(&["TABLE".to_owned()])?;
    let rest = skip_if_not_exists(rest);
    rest.first().map(|name| last_part(name))
}

fn skip_if_not_exists(words: &[String]) -> &[String] {
    if words.len() >= 3 && words[0] == "IF" && words[1] == "NOT" && words[2] == "EXISTS" {
        &words[3..]
    } else if words.len() >= 2 && words[0] == "IF" && words[1] == "EXISTS" {
        &words[2..]
    } else {
        words
    }
}

/// `schema.table` → `table`: a table is known by its last name part.
fn last_part(name: &str) -> String {
    name.rsplit('.').next().unwrap_or(name).to_owned()
}

fn has(words: &[String], word: &str) -> bool {
    words.iter().any(|w| w == word)
}

fn has_seq(words: &[String], seq: &[&str]) -> bool {
    words
        .windows(seq.len())
        .any(|w| w.iter().zip(seq).all(|(a, b)| a == b))
}

/// The first word after `seq`.
fn after<'a>(words: &'a [String], seq: &[&str]) -> Option<&'a String> {
    words
        .windows(seq.len() + 1)
        .find(|w| w.iter().zip(seq).all(|(a, b)| a == b))
        .map(|w| &w[seq.len()])
}

/// The rule `words` breaks, if any, unless its table was created in this
/// file (`created`).
fn flagged(words: &[String], created: &HashSet<String>) -> Option<Rule> {
    let first = words.first()?.as_str();
    let fresh = |table: Option<&String>| table.is_some_and(|t| created.contains(&last_part(t)));
    match first {
        "CREATE" if has(words, "INDEX") && words.iter().take(3).any(|w| w == "INDEX") => {
            if has(words, "CONCURRENTLY") {
                return None;
            }
            let table = after(words, &["ON", "ONLY"]).or_else(|| after(words, &["ON"]));
            (!fresh(table)).then_some(Rule::CreateIndex)
        }
        "ALTER" if words.get(1).map(String::as_str) == Some("TABLE") => {
            let rest = skip_if_not_exists(&words[2..]);
            let rest = rest.strip_prefix(&["ONLY".to_owned()]).unwrap_or(rest);
            if fresh(rest.first()) {
                return None;
            }
            alter_table_rule(rest)
        }
        "DROP" if words.get(1).map(String::as_str) == Some("TABLE") => {
            let rest = skip_if_not_exists(&words[2..]);
            (!fresh(rest.first())).then_some(Rule::RenameOrDrop)
        }
        "VACUUM" if has(words, "FULL") => Some(Rule::Rewrite),
        "CLUSTER" => (!fresh(words.get(1))).then_some(Rule::Rewrite),
        "REINDEX" if !has(words, "CONCURRENTLY") => {
            let target = words
                .get(2)
                .filter(|_| words.get(1).is_some_and(|w| w == "TABLE"));
            (!fresh(target)).then_some(Rule::Rewrite)
        }
        "LOCK" => Some(Rule::LockTable),
        _ => None,
    }
}

/// The rule an `ALTER TABLE name …` breaks (`words` from the name on).
fn alter_table_rule(words: &[String]) -> Option<Rule> {
    const VOLATILE: [&str; 6] = [
        "RANDOM",
        "GEN_RANDOM_UUID",
        "CLOCK_TIMESTAMP",
        "NEXTVAL",
        "UUID_GENERATE_V4",
        "TIMEOFDAY",
    ];
    if has(words, "RENAME") || has_seq(words, &["DROP", "COLUMN"]) {
        return Some(Rule::RenameOrDrop);
    }
    if has_seq(words, &["SET", "NOT", "NULL"]) {
        return Some(Rule::SetNotNull);
    }
    if has(words, "ALTER") && has(words, "TYPE") {
        return Some(Rule::ColumnType);
    }
    if has(words, "ADD") {
        if has_seq(words, &["USING", "INDEX"]) {
            return None;
        }
        if has_seq(words, &["PRIMARY", "KEY"]) || has(words, "UNIQUE") {
            return Some(Rule::ConstraintWithoutIndex);
        }
        let validating = has_seq(words, &["FOREIGN", "KEY"])
            || has(words, "CHECK")
            || (has(words, "CONSTRAINT") && has(words, "REFERENCES"));
        if validating && !has_seq(words, &["NOT", "VALID"]) && !has(words, "COLUMN") {
            return Some(Rule::ValidatingConstraint);
        }
        if has(words, "DEFAULT")
            && words
                .iter()
                .skip_while(|w| *w != "DEFAULT")
                .any(|w| VOLATILE.contains(&w.as_str()))
        {
            return Some(Rule::VolatileDefault);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(sql: &str) -> Vec<Rule> {
        lint("m/V1__x.sql", sql)
            .into_iter()
            .map(|f| f.rule)
            .collect()
    }

    #[test]
    fn each_rule_flags_its_statement() {
        for (sql, rule) in [
            (
                "CREATE INDEX users_email ON users (email);",
                Rule::CreateIndex,
            ),
            (
                "CREATE UNIQUE INDEX IF NOT EXISTS u ON public.users (email);",
                Rule::CreateIndex,
            ),
            (
                "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users;",
                Rule::ValidatingConstraint,
            ),
            (
                "ALTER TABLE orders ADD CHECK (total >= 0);",
                Rule::ValidatingConstraint,
            ),
            (
                "ALTER TABLE users ALTER COLUMN email SET NOT NULL;",
                Rule::SetNotNull,
            ),
            (
                "ALTER TABLE users ALTER COLUMN id TYPE bigint;",
                Rule::ColumnType,
            ),
            (
                "ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid();",
                Rule::VolatileDefault,
            ),
            (
                "ALTER TABLE users ADD PRIMARY KEY (id);",
                Rule::ConstraintWithoutIndex,
            ),
            (
                "ALTER TABLE users ADD CONSTRAINT u UNIQUE (email);",
                Rule::ConstraintWithoutIndex,
            ),
            (
                "ALTER TABLE users RENAME COLUMN email TO mail;",
                Rule::RenameOrDrop,
            ),
            ("ALTER TABLE users DROP COLUMN email;", Rule::RenameOrDrop),
            ("DROP TABLE IF EXISTS users;", Rule::RenameOrDrop),
            ("VACUUM FULL users;", Rule::Rewrite),
            ("CLUSTER users USING users_pkey;", Rule::Rewrite),
            ("REINDEX TABLE users;", Rule::Rewrite),
            (
                "LOCK TABLE users IN ACCESS EXCLUSIVE MODE;",
                Rule::LockTable,
            ),
        ] {
            assert_eq!(rules(sql), [rule], "{sql}");
        }
    }

    #[test]
    fn the_safe_forms_pass() {
        for sql in [
            "CREATE INDEX CONCURRENTLY users_email ON users (email);",
            "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users NOT VALID;",
            "ALTER TABLE orders VALIDATE CONSTRAINT fk;",
            "ALTER TABLE users ADD COLUMN created_at timestamptz DEFAULT now();",
            "ALTER TABLE users ADD COLUMN note text;",
            "ALTER TABLE users ADD CONSTRAINT users_pkey PRIMARY KEY USING INDEX users_id;",
            "REINDEX INDEX CONCURRENTLY users_email;",
            "ALTER TABLE users ADD COLUMN team_id int REFERENCES teams;",
            "SELECT 'DROP TABLE users';",
        ] {
            assert_eq!(rules(sql), [], "{sql}");
        }
    }

    #[test]
    fn a_table_created_earlier_in_the_file_is_never_flagged() {
        let sql = "CREATE TABLE IF NOT EXISTS app.t (id int);\nCREATE INDEX t_id ON app.t (id);\n\
                   ALTER TABLE t ADD PRIMARY KEY (id);\nCLUSTER t USING t_id;\nREINDEX TABLE t;\nDROP TABLE t;";
        assert_eq!(rules(sql), []);
        assert_eq!(
            rules("CREATE TABLE t (id int);\nCREATE INDEX u_id ON u (id);"),
            [Rule::CreateIndex]
        );
    }

    #[test]
    fn allow_directives_accept_a_finding_on_purpose() {
        let file =
            "-- dbprep:allow(create-index, lock-table)\nCREATE INDEX i ON t (a);\nLOCK TABLE t;";
        assert_eq!(rules(file), []);
        let statement = "ALTER TABLE t DROP COLUMN a;\n-- the column is unused since release 12\n\
                         -- dbprep:allow(rename-or-drop)\nALTER TABLE t DROP COLUMN b;\nALTER TABLE t DROP COLUMN c;";
        let found = lint("f.sql", statement);
        let lines: Vec<usize> = found.iter().map(|f| f.line).collect();
        assert_eq!(lines, [1, 5]);
        assert_eq!(
            found[0].to_string(),
            "f.sql:1:1: [rename-or-drop] renaming or dropping a column or table breaks the replicas still running the previous release during a rolling deploy: stop using it in a release first, drop it in a later one\n    ALTER TABLE t DROP COLUMN a\n  to accept it on purpose: -- dbprep:allow(rename-or-drop)"
        );
        assert_eq!(
            allowed_in("dbprep:allow(create-index, nope)"),
            Some(Err("nope".into()))
        );
    }
}
