//! Fuzz target: a migration file: normalization, directives, the lexer and splitter, and every compile-time check. Any input must give an answer or an error.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    dbprep_runtime::__private::fuzz::migration(bytes);
});
