//! Property tests of the splitter and the checks: nothing is lost, quoted
//! semicolons never split, and nothing quoted ever triggers a check.

use dbprep_runtime::__private::{check_sql, split};
use proptest::prelude::*;

/// A token that holds a `;` (or a keyword) only inside a quoted form.
fn quoted_token() -> impl Strategy<Value = String> {
    let inner = "[a-z ;]{0,8}";
    prop_oneof![
        inner.prop_map(|s| format!("'{s}'")),
        inner.prop_map(|s| format!("'{s}''{s}'")),
        inner.prop_map(|s| format!("E'{s}\\';'")),
        inner.prop_map(|s| format!("U&'{s}'")),
        inner.prop_map(|s| format!("\"{s}\"")),
        inner.prop_map(|s| format!("U&\"{s}\"")),
        inner.prop_map(|s| format!("-- {s}\n")),
        inner.prop_map(|s| format!("/* {s} /* {s} */ {s} */")),
        inner.prop_map(|s| format!("$${s}$$")),
        inner.prop_map(|s| format!("$fn$ {s} $x$ ; $x$ $fn$")),
        inner.prop_map(|s| format!("({s})")),
    ]
}

/// A plain token: words, numbers, operators, parameters.
fn plain_token() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_][a-z0-9_$]{0,6}",
        "[0-9]{1,4}",
        Just("$1".to_owned()),
        Just("+".to_owned()),
        Just("::".to_owned()),
        Just(",".to_owned()),
    ]
}

/// A statement of several tokens, without a top-level `;`; it starts with a
/// word so it is never empty.
fn statement() -> impl Strategy<Value = String> {
    (
        "[a-z]{1,6}",
        prop::collection::vec(prop_oneof![quoted_token(), plain_token()], 0..8),
    )
        .prop_map(|(first, rest)| {
            std::iter::once(first)
                .chain(rest)
                .collect::<Vec<_>>()
                .join(" ")
        })
}

/// Any text at all, including broken quotes.
fn any_script() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            quoted_token(),
            plain_token(),
            Just(";".to_owned()),
            "[ \n\t]{1,3}",
            "['\"$/*\\\\-]"
        ],
        0..30,
    )
    .prop_map(|tokens| tokens.concat())
}

proptest! {
    #[test]
    fn split_then_join_loses_nothing(script in any_script()) {
        let s = split(&script);
        let mut joined = String::new();
        let mut end = 0;
        for statement in &s.statements {
            prop_assert_eq!(statement.range.start, end, "ranges are contiguous");
            joined.push_str(&script[statement.range.clone()]);
            end = statement.range.end;
        }
        prop_assert_eq!(s.trailer.start, end);
        joined.push_str(&script[s.trailer.clone()]);
        prop_assert_eq!(joined, script);
    }

    #[test]
    fn semicolons_inside_quotes_never_split(statements in prop::collection::vec(statement(), 1..6)) {
        let script = statements.iter().map(|s| format!("{s};\n")).collect::<String>();
        let found = split(&script);
        prop_assert_eq!(found.statements.len(), statements.len());
        for (found, written) in found.statements.iter().zip(&statements) {
            // The text runs to the last token: what follows in the written
            // statement is only comments and white space.
            let text = found.text(&script);
            prop_assert!(written.starts_with(text), "{:?} vs {:?}", text, written);
            prop_assert!(split(&written[text.len()..]).statements.is_empty());
        }
    }

    #[test]
    fn nothing_quoted_or_commented_triggers_a_check(
        body in prop_oneof![
            Just("COMMIT"), Just("ROLLBACK"), Just("BEGIN"), Just("END"), Just("SAVEPOINT a"),
            Just("VACUUM"), Just("CREATE INDEX CONCURRENTLY i ON t (c)"), Just("CREATE DATABASE d"),
            Just("COPY t FROM STDIN"), Just("COPY t TO STDOUT"), Just("ALTER SYSTEM SET work_mem = '1MB'"),
        ],
        wrapper in 0..4usize,
    ) {
        let sql = match wrapper {
            0 => format!("DO $$ BEGIN {body}; END $$;"),
            1 => format!("/* {body}; */ SELECT 1;"),
            2 => format!("-- {body};\nSELECT 1;"),
            _ => format!("SELECT $q$ {body}; $q$;"),
        };
        prop_assert!(check_sql(&sql, false).is_empty(), "{}", sql);
    }
}
