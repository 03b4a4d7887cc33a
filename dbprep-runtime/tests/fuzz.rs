//! Fuzzing the readers of untrusted text on a stable compiler: each target
//! runs for `DBPREP_FUZZ_SECONDS` (600 by default) on inputs mutated from
//! a corpus of the repository's own files (migrations, the trybuild cases,
//! fixtures, sum files) and on random bytes, and fails on the first panic,
//! printing the input. Behind `--ignored`:
//!
//! ```sh
//! DBPREP_FUZZ_SECONDS=600 cargo test --release -p dbprep-runtime --test fuzz -- --ignored --nocapture
//! ```
//!
//! With a nightly compiler, `fuzz/` (cargo-fuzz, coverage-guided) fuzzes
//! the same entry points and finds deeper inputs; see its README.
//!
//! Inputs that once broke a reader are kept in `regressions()` and run by
//! the ordinary test suite.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use dbprep_runtime::__private::fuzz;

/// Pieces of the languages the readers speak, spliced into inputs.
const TOKENS: &[&str] = &[
    "'",
    "''",
    "\"",
    "$$",
    "$a$",
    "$1",
    "E'\\'",
    "U&'",
    "U&\"",
    " UESCAPE '!'",
    "--",
    "/*",
    "*/",
    ";",
    "(",
    ")",
    "\\",
    "\\i x",
    "\n",
    "\r\n",
    "\u{feff}",
    "\0",
    "BEGIN",
    "BEGIN ATOMIC",
    "END",
    "CASE",
    "COMMIT",
    "CREATE FUNCTION f() RETURNS int ",
    "CREATE INDEX CONCURRENTLY ",
    "COPY t FROM STDIN",
    "-- dbprep:no-transaction\n",
    "-- dbprep:",
    "V1__",
    "U1__",
    "B1__",
    "_a.up.sql",
    ".down.sql",
    ".sql",
    "2019-02-26-002946_",
    "99999999999999999999",
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "\"__mode\"",
    "\"update\"",
    "{\"t\": [{}]}",
    "1e999",
    "-0",
    "null",
    "dbprep-sum v1 ",
    " 00",
    "é",
    "\u{10ffff}",
];

/// A small, fast pseudo-random source (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The corpus: files of the repository a target reads, by extension.
fn corpus(extensions: &[&str]) -> Vec<Vec<u8>> {
    fn walk(dir: &Path, extensions: &[&str], out: &mut Vec<Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, extensions, out);
            } else if extensions
                .iter()
                .any(|e| path.to_string_lossy().ends_with(e))
            {
                if let Ok(bytes) = std::fs::read(&path) {
                    out.push(bytes);
                }
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = vec![Vec::new()];
    for dir in ["migrations", "fixtures", "dbprep-macros/tests/cases"] {
        walk(&root.join(dir), extensions, &mut out);
    }
    out
}

/// A mutation of `seed`: flipped, inserted, deleted or repeated bytes,
/// tokens, and pieces of another input.
fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut input = seed.to_vec();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(input.len() + 1);
        match rng.below(6) {
            0 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] ^= 1 << rng.below(8);
            }
            1 => input.insert(at, rng.next() as u8),
            2 if !input.is_empty() => {
                let end = (at + rng.below(16)).min(input.len());
                input.drain(at.min(end)..end);
            }
            3 => {
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                input.splice(at..at, token.iter().copied());
            }
            4 if !other.is_empty() => {
                let from = rng.below(other.len());
                let to = (from + rng.below(64)).min(other.len());
                input.splice(at..at, other[from..to].iter().copied());
            }
            _ => {
                let end = (at + rng.below(8)).min(input.len());
                let piece = input[at.min(end)..end].to_vec();
                input.splice(at..at, piece);
            }
        }
    }
    input
}

/// Run `target` on mutated and random inputs for the configured time;
/// panic with the input that made it panic.
fn fuzz(name: &str, extensions: &[&str], target: fn(&[u8])) {
    let seconds = std::env::var("DBPREP_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let corpus = corpus(extensions);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()));
    let started = Instant::now();
    let mut executions: u64 = 0;
    // The panic message is printed by the hook; the input is what matters.
    std::panic::set_hook(Box::new(|_| {}));
    while started.elapsed() < Duration::from_secs(seconds) {
        for _ in 0..1000 {
            let input = if rng.below(10) == 0 {
                (0..rng.below(256)).map(|_| rng.next() as u8).collect()
            } else {
                let seed = &corpus[rng.below(corpus.len())];
                let other = &corpus[rng.below(corpus.len())];
                mutate(&mut rng, seed, other)
            };
            executions += 1;
            if catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
                let _ = std::panic::take_hook();
                panic!(
                    "{name}: panic on input {:?} (as text: {:?})",
                    input,
                    String::from_utf8_lossy(&input)
                );
            }
        }
    }
    let _ = std::panic::take_hook();
    println!(
        "{name}: {executions} executions in {:?}, {} seeds, no panic",
        started.elapsed(),
        corpus.len()
    );
}

#[test]
#[ignore = "fuzzing runs for minutes: see the module docs"]
fn fuzz_file_names() {
    fuzz("file names", &[".sql", ".json", ".sum"], |bytes| {
        // Names are short: the file's first line stands for one.
        let line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
        fuzz::file_name(line)
    });
}

#[test]
#[ignore = "fuzzing runs for minutes: see the module docs"]
fn fuzz_migrations() {
    fuzz("migrations", &[".sql"], fuzz::migration);
}

#[test]
#[ignore = "fuzzing runs for minutes: see the module docs"]
fn fuzz_fixtures() {
    fuzz("fixtures", &[".json"], fuzz::fixture);
}

#[test]
#[ignore = "fuzzing runs for minutes: see the module docs"]
fn fuzz_sum_files() {
    fuzz("sum files", &[".sum"], fuzz::sum_file);
}

/// Inputs that broke a reader once, run by every `cargo test`.
#[test]
fn regressions() {
    let inputs: &[&[u8]] = &[
        b"",
        b"\0",
        b"$$",
        b"E'\\",
        b"U&'\\",
        b"/* /* */",
        b"V__.sql",
    ];
    for input in inputs {
        fuzz::file_name(input);
        fuzz::migration(input);
        fuzz::fixture(input);
        fuzz::sum_file(input);
    }
}
