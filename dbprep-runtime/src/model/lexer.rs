//! The SQL lexer and statement splitter.
//!
//! It follows the states of psql's own lexer (`src/fe_utils/psqlscan.l`), so
//! that dbprep splits a file exactly where `psql -f` would: a `;` ends a
//! statement only outside quotes, comments, dollar-quoted bodies,
//! parentheses and the `BEGIN ATOMIC … END` body of an SQL-standard
//! function. It is used for three things: running `-- dbprep:no-transaction`
//! files one statement at a time, the compile-time checks of
//! [`check`](super::check), and mapping a server's error position back to a
//! line and column of the file.

use std::ops::Range;

/// How many leading words of a statement are kept in [`Statement::words`].
///
/// The checks only look at a statement's first words (`CREATE UNIQUE INDEX
/// CONCURRENTLY …`) and at short option lists (`CREATE SUBSCRIPTION … WITH
/// (create_slot = false)`); keeping every word of a 50 MB `INSERT` would
/// only cost memory.
const MAX_WORDS: usize = 64;

/// One statement of a script, as psql would send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The bytes this statement owns in the script: the whitespace and
    /// comments before it, its text and its terminating `;` if any. The
    /// ranges of all statements of a script, followed by
    /// [`Script::trailer`], cover the script exactly.
    pub range: Range<usize>,
    /// Where the statement's first token starts (a byte offset).
    pub start: usize,
    /// Where its text ends: before the terminating `;`, or at the end of
    /// the script.
    pub end: usize,
    /// 1-based line of the first token.
    pub line: usize,
    /// 1-based column of the first token, counted in characters.
    pub column: usize,
    /// The unquoted words (keywords and plain identifiers) of the statement
    /// outside quotes and comments, upper-cased, in order; at most the first
    /// 64. Words inside parentheses are included.
    pub words: Vec<String>,
}

impl Statement {
    /// The statement's text from its first token to its last, without the
    /// terminating `;`.
    pub fn text<'a>(&self, script: &'a str) -> &'a str {
        script[self.start..self.end].trim_end()
    }

    /// The first line of the statement's text, for messages.
    pub fn first_line<'a>(&self, script: &'a str) -> &'a str {
        let text = self.text(script);
        text.lines().next().unwrap_or(text).trim_end()
    }

    /// Whether the statement's leading words are `words` (upper case).
    pub fn starts_with(&self, words: &[&str]) -> bool {
        self.words.len() >= words.len() && self.words.iter().zip(words).all(|(a, b)| a == b)
    }
}

/// A psql meta-command (a backslash outside quotes), which the server does
/// not understand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaCommand {
    /// Byte offset of the backslash.
    pub offset: usize,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// The meta-command up to the end of its line, e.g. `\i other.sql`.
    pub text: String,
}

/// A script split into statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// The statements, in order.
    pub statements: Vec<Statement>,
    /// What follows the last statement: only whitespace and comments.
    pub trailer: Range<usize>,
    /// psql meta-commands found outside quotes.
    pub meta_commands: Vec<MetaCommand>,
    /// Set when the script ends inside a quote, a comment or a dollar-quoted
    /// body; holds a description of what was left open, e.g. `a string
    /// starting at line 3`.
    pub unterminated: Option<Unterminated>,
}

/// Something the script opens and never closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unterminated {
    /// What is left open: `string`, `quoted identifier`, `comment`,
    /// `dollar-quoted body $fn$`.
    pub what: String,
    /// 1-based line where it starts.
    pub line: usize,
    /// 1-based column where it starts, in characters.
    pub column: usize,
}

/// Split `sql` into statements the way psql does.
pub fn split(sql: &str) -> Script {
    Lexer::new(sql).run()
}

/// 1-based line and column (in characters) of a byte offset in `text`.
///
/// An offset inside a multi-byte character counts as that character.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    (line, column_at_end(before))
}

/// 1-based column (in characters) just after `before`.
fn column_at_end(before: &[u8]) -> usize {
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    // Count characters: every byte that does not continue a UTF-8 sequence.
    1 + before[line_start..]
        .iter()
        .filter(|&&b| (b & 0xC0) != 0x80)
        .count()
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_continue(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

/// What the current statement looks like so far, for psql's `BEGIN ATOMIC`
/// heuristic.
#[derive(Default)]
struct StatementState {
    /// First token's offset, once the statement has a token.
    start: Option<usize>,
    /// End of the last token seen.
    end: usize,
    words: Vec<String>,
    /// Count of identifiers seen (psql's `identifier_count`).
    identifier_count: usize,
    /// First letters of the leading `CREATE`/`OR`/`REPLACE`/`FUNCTION`/
    /// `PROCEDURE` identifiers (psql's `identifiers[]`).
    leading: [u8; 4],
    paren_depth: usize,
    begin_depth: usize,
}

impl StatementState {
    fn defines_routine(&self) -> bool {
        let l = &self.leading;
        l[0] == b'c'
            && (l[1] == b'f'
                || l[1] == b'p'
                || (l[1] == b'o' && l[2] == b'r' && (l[3] == b'f' || l[3] == b'p')))
    }
}

struct Lexer<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    statements: Vec<Statement>,
    meta_commands: Vec<MetaCommand>,
    /// Start of the current statement's range (end of the previous one).
    range_start: usize,
    current: StatementState,
    unterminated: Option<Unterminated>,
    /// A byte offset and its line: statements come in order, so each
    /// position is counted from the one before, not from the top.
    line_mark: (usize, usize),
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Self {
        Lexer {
            src,
            bytes: src.as_bytes(),
            pos: 0,
            statements: Vec::new(),
            meta_commands: Vec::new(),
            range_start: 0,
            current: StatementState::default(),
            unterminated: None,
            line_mark: (0, 1),
        }
    }

    /// [`line_column`] of `offset`, counted from the last position asked.
    fn line_column(&mut self, offset: usize) -> (usize, usize) {
        let (mark, mark_line) = self.line_mark;
        if offset < mark {
            return line_column(self.src, offset);
        }
        let before = &self.bytes[..offset];
        let line = mark_line + before[mark..].iter().filter(|&&b| b == b'\n').count();
        self.line_mark = (offset, line);
        (line, column_at_end(before))
    }

    fn peek(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.pos + ahead).copied()
    }

    fn run(mut self) -> Script {
        while let Some(b) = self.peek(0) {
            let token_start = self.pos;
            match b {
                b if b.is_ascii_whitespace() => {
                    self.pos += 1;
                    continue;
                }
                b'-' if self.peek(1) == Some(b'-') => {
                    self.skip_line_comment();
                    continue;
                }
                b'/' if self.peek(1) == Some(b'*') => {
                    self.skip_block_comment();
                    continue;
                }
                b'\\' => {
                    self.meta_command();
                    continue;
                }
                b';' => {
                    self.pos += 1;
                    if self.current.paren_depth == 0 && self.current.begin_depth == 0 {
                        self.finish_statement(token_start, self.pos);
                    } else {
                        self.current.end = self.pos;
                    }
                    continue;
                }
                b'\'' => self.quoted(b'\'', false, "string"),
                b'"' => self.quoted(b'"', false, "quoted identifier"),
                b'$' => self.dollar(),
                b'(' => {
                    self.pos += 1;
                    self.current.paren_depth += 1;
                }
                b')' => {
                    self.pos += 1;
                    self.current.paren_depth = self.current.paren_depth.saturating_sub(1);
                }
                b if is_ident_start(b) => self.word(),
                b if b.is_ascii_digit() => {
                    // A number, possibly with a fraction, exponent or an
                    // identifier glued to it (`1e5`, `0x1F`); none of it
                    // can open a quote.
                    while self
                        .peek(0)
                        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_')
                    {
                        self.pos += 1;
                    }
                }
                _ => {
                    self.pos += self.src[self.pos..]
                        .chars()
                        .next()
                        .map_or(1, char::len_utf8)
                }
            }
            self.token(token_start);
        }
        let end = self.bytes.len();
        let trailer = if self.current.start.is_some() {
            self.finish_statement(end, end);
            end..end
        } else {
            self.range_start..end
        };
        Script {
            statements: self.statements,
            trailer,
            meta_commands: self.meta_commands,
            unterminated: self.unterminated,
        }
    }

    /// Record that a token spanned `token_start..self.pos`.
    fn token(&mut self, token_start: usize) {
        if self.current.start.is_none() {
            self.current.start = Some(token_start);
        }
        self.current.end = self.pos;
    }

    fn finish_statement(&mut self, text_end: usize, range_end: usize) {
        let state = std::mem::take(&mut self.current);
        if let Some(start) = state.start {
            let (line, column) = self.line_column(start);
            self.statements.push(Statement {
                range: self.range_start..range_end,
                start,
                end: state.end.min(text_end).max(start),
                line,
                column,
                words: state.words,
            });
            self.range_start = range_end;
        } else if range_end > self.range_start {
            // A lone `;`: psql sends nothing for it. Its bytes join the next
            // statement's leading trivia, so that ranges still cover the text.
        }
    }

    fn skip_line_comment(&mut self) {
        while let Some(b) = self.peek(0) {
            if b == b'\n' {
                break;
            }
            self.pos += 1;
        }
    }

    fn skip_block_comment(&mut self) {
        let start = self.pos;
        self.pos += 2;
        let mut depth = 1;
        while depth > 0 {
            match (self.peek(0), self.peek(1)) {
                (Some(b'/'), Some(b'*')) => {
                    depth += 1;
                    self.pos += 2;
                }
                (Some(b'*'), Some(b'/')) => {
                    depth -= 1;
                    self.pos += 2;
                }
                (Some(_), _) => self.pos += 1,
                (None, _) => {
                    self.open("comment".into(), start);
                    return;
                }
            }
        }
    }

    fn meta_command(&mut self) {
        let start = self.pos;
        let line_end = self.src[start..]
            .find('\n')
            .map_or(self.bytes.len(), |i| start + i);
        let (line, column) = self.line_column(start);
        self.meta_commands.push(MetaCommand {
            offset: start,
            line,
            column,
            text: self.src[start..line_end].trim_end().to_owned(),
        });
        self.pos = line_end;
    }

    /// A quoted string or identifier starting at `self.pos`, closed by an
    /// unescaped `quote`; a doubled quote stands for itself. In `E''`
    /// strings a backslash escapes the next character.
    fn quoted(&mut self, quote: u8, backslash_escapes: bool, what: &str) {
        let start = self.pos;
        self.pos += 1;
        loop {
            match self.peek(0) {
                None => {
                    self.open(what.into(), start);
                    return;
                }
                Some(b'\\') if backslash_escapes => self.pos += 2,
                Some(b) if b == quote => {
                    if self.peek(1) == Some(quote) {
                        self.pos += 2;
                    } else {
                        self.pos += 1;
                        return;
                    }
                }
                Some(_) => self.pos += 1,
            }
        }
        // Unreachable: the loop only ends by returning.
    }

    /// `$` at token start: a dollar quote `$tag$…$tag$`, or a lone `$`
    /// (a parameter like `$1` is a `$` followed by a number).
    fn dollar(&mut self) {
        let start = self.pos;
        let mut tag_end = start + 1;
        if self.bytes.get(tag_end).copied().is_some_and(is_ident_start) {
            while self
                .bytes
                .get(tag_end)
                .copied()
                .is_some_and(|b| is_ident_continue(b) && b != b'$')
            {
                tag_end += 1;
            }
        }
        if self.bytes.get(tag_end) != Some(&b'$') {
            self.pos += 1;
            return;
        }
        let tag = &self.src[start..=tag_end];
        let body = tag_end + 1;
        match self.src[body..].find(tag) {
            Some(i) => self.pos = body + i + tag.len(),
            None => {
                self.open(format!("dollar-quoted body {tag}"), start);
                self.pos = self.bytes.len();
            }
        }
    }

    /// An identifier or keyword, or a prefixed string (`E''`, `U&''`,
    /// `U&""`, `B''`, `X''`, `N''`).
    fn word(&mut self) {
        let start = self.pos;
        while self.peek(0).is_some_and(is_ident_continue) {
            self.pos += 1;
        }
        let word = &self.src[start..self.pos];
        let prefix = word.len() == 1;
        match (
            prefix,
            word.as_bytes()[0].to_ascii_lowercase(),
            self.peek(0),
            self.peek(1),
        ) {
            (true, b'e', Some(b'\''), _) => return self.quoted(b'\'', true, "string"),
            (true, b'b' | b'x' | b'n', Some(b'\''), _) => {
                return self.quoted(b'\'', false, "string")
            }
            (true, b'u', Some(b'&'), Some(b'\'')) => {
                self.pos += 1;
                return self.quoted(b'\'', false, "string");
            }
            (true, b'u', Some(b'&'), Some(b'"')) => {
                self.pos += 1;
                return self.quoted(b'"', false, "quoted identifier");
            }
            _ => {}
        }
        self.identifier(word);
    }

    /// psql's `{identifier}` rule: remember the statement's leading words
    /// and track `BEGIN … END` depth inside routine definitions.
    fn identifier(&mut self, word: &str) {
        let state = &mut self.current;
        if state.words.len() < MAX_WORDS {
            state.words.push(word.to_ascii_uppercase());
        }
        let is = |keyword: &str| word.eq_ignore_ascii_case(keyword);
        if (is("create") || is("function") || is("procedure") || is("or") || is("replace"))
            && state.identifier_count < state.leading.len()
        {
            state.leading[state.identifier_count] = word.as_bytes()[0].to_ascii_lowercase();
        }
        state.identifier_count += 1;
        if state.defines_routine() && state.paren_depth == 0 {
            if is("begin") {
                state.begin_depth += 1;
            } else if is("case") && state.begin_depth >= 1 {
                // CASE also ends with END; it only matters inside a BEGIN.
                state.begin_depth += 1;
            } else if is("end") && state.begin_depth > 0 {
                state.begin_depth -= 1;
            }
        }
    }

    fn open(&mut self, what: String, start: usize) {
        let (line, column) = self.line_column(start);
        self.unterminated
            .get_or_insert(Unterminated { what, line, column });
        self.pos = self.bytes.len();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn semicolons_in_dollar_quotes_and_strings_do_not_split() {
        let sql = "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\nSELECT ';';";
        let script = split(sql);
        assert_eq!(script.statements.len(), 2);
        assert_eq!(script.statements[1].text(sql), "SELECT ';'");
        assert_eq!(script.statements[1].line, 2);
    }

    use super::*;

    fn texts(sql: &str) -> Vec<&str> {
        split(sql).statements.iter().map(|s| s.text(sql)).collect()
    }

    #[test]
    fn splits_on_semicolons_at_top_level() {
        assert_eq!(
            texts("SELECT 1; SELECT 2;\nSELECT 3"),
            ["SELECT 1", "SELECT 2", "SELECT 3"]
        );
    }

    #[test]
    fn quotes_and_comments_hide_semicolons() {
        let sql = "SELECT 'a;b', E'\\';', \"x;y\", U&'d;' -- c;\n/* a /* nested; */ ; */ FROM t;";
        assert_eq!(texts(sql).len(), 1);
    }

    #[test]
    fn dollar_quotes_with_tags() {
        let sql = "DO $fn$ BEGIN PERFORM 1; $x$ ; $x$ END $fn$; SELECT $$;$$;";
        assert_eq!(
            texts(sql),
            [
                "DO $fn$ BEGIN PERFORM 1; $x$ ; $x$ END $fn$",
                "SELECT $$;$$"
            ]
        );
    }

    #[test]
    fn parameters_and_identifiers_with_dollars_are_not_quotes() {
        let sql = "PREPARE p AS SELECT $1; SELECT a$b FROM t; SELECT 2;";
        assert_eq!(texts(sql).len(), 3);
    }

    #[test]
    fn begin_atomic_bodies_keep_their_semicolons() {
        let sql = "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT CASE WHEN true THEN 1 END;\n  SELECT 2;\nEND;\nSELECT 3;";
        let t = texts(sql);
        assert_eq!(t.len(), 2, "{t:?}");
        assert!(t[0].ends_with("END"));
        assert_eq!(t[1], "SELECT 3");
    }

    #[test]
    fn parentheses_hide_semicolons() {
        let sql = "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO b VALUES (2)); SELECT 1;";
        assert_eq!(texts(sql).len(), 2);
    }

    #[test]
    fn positions_are_lines_and_character_columns() {
        let sql = "-- héllo\n  SELECT 'é'; SELECT 2;";
        let s = split(sql);
        assert_eq!((s.statements[0].line, s.statements[0].column), (2, 3));
        assert_eq!((s.statements[1].line, s.statements[1].column), (2, 15));
        assert_eq!(line_column(sql, sql.find("SELECT 2").unwrap()), (2, 15));
    }

    #[test]
    fn positions_counted_along_match_positions_counted_from_the_top() {
        let sql =
            "SELECT 1;\n  -- é\n\tSELECT 'a\nb';\n\\set x\nSELECT\n2; SELECT 3 \\g\nSELECT é, 4;";
        let script = split(sql);
        assert_eq!(script.statements.len(), 4);
        for statement in &script.statements {
            assert_eq!(
                (statement.line, statement.column),
                line_column(sql, statement.start),
                "{}",
                statement.text(sql)
            );
        }
        assert_eq!(script.meta_commands.len(), 2);
        for meta in &script.meta_commands {
            assert_eq!((meta.line, meta.column), line_column(sql, meta.offset));
        }
    }

    #[test]
    fn meta_commands_are_found_outside_quotes() {
        let sql = "SELECT '\\i x';\n\\i other.sql\nSELECT 1;";
        let s = split(sql);
        assert_eq!(s.meta_commands.len(), 1);
        assert_eq!(s.meta_commands[0].text, "\\i other.sql");
        assert_eq!(s.meta_commands[0].line, 2);
    }

    #[test]
    fn unterminated_quotes_are_reported() {
        let s = split("SELECT 1;\nSELECT $body$ never closed");
        let open = s.unterminated.expect("open quote");
        assert_eq!(open.what, "dollar-quoted body $body$");
        assert_eq!((open.line, open.column), (2, 8));
    }

    #[test]
    fn words_are_upper_cased_and_exclude_quoted_text() {
        let sql = "create unique index concurrently \"Begin\" on t (c);";
        let s = split(sql);
        assert_eq!(
            s.statements[0].words,
            ["CREATE", "UNIQUE", "INDEX", "CONCURRENTLY", "ON", "T", "C"]
        );
    }
}
