//! Fuzz target: a migrations folder's entry name. Any input must give an answer or an error.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    dbprep_runtime::__private::fuzz::file_name(bytes);
});
