//! Writing to standard output. A reader that went away (`dbprep status |
//! head -1`) is not an error, and never a panic: what was to be done is
//! done, and nothing more is written. Any other failure to write (a full
//! disk behind `> report.json`) is said once on standard error and makes
//! the program exit with a failure.

use std::io::{ErrorKind, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

/// The reader of standard output went away.
static CLOSED: AtomicBool = AtomicBool::new(false);
/// Writing failed otherwise.
static FAILED: AtomicBool = AtomicBool::new(false);

/// Write `text` as it is.
pub(super) fn write(text: &str) {
    write_bytes(text.as_bytes());
}

/// Write `bytes` as they are.
pub(super) fn write_bytes(bytes: &[u8]) {
    if CLOSED.load(Ordering::Relaxed) || FAILED.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::BrokenPipe => CLOSED.store(true, Ordering::Relaxed),
        Err(e) => {
            FAILED.store(true, Ordering::Relaxed);
            eprintln!("error: cannot write to standard output: {e}");
        }
    }
}

/// Write `text` and a newline.
pub(super) fn line(text: &str) {
    write(&format!("{text}\n"));
}

/// `code`, unless writing to standard output failed.
pub(super) fn exit_code(code: ExitCode) -> ExitCode {
    if FAILED.load(Ordering::Relaxed) {
        ExitCode::FAILURE
    } else {
        code
    }
}
