//! libpq's rules for the files it reads on the user's behalf: where the
//! home folder is, and which files are private enough to hold a secret.

use std::path::{Path, PathBuf};

/// `relative` under the home folder (`HOME`, as libpq reads it), if there
/// is one.
pub(crate) fn in_home(var: &impl Fn(&str) -> Option<String>, relative: &str) -> Option<PathBuf> {
    var("HOME").map(|home| Path::new(&home).join(relative))
}

/// Whether the file's group or others may access it: libpq ignores such a
/// password file and refuses such a private key.
pub(crate) fn shared_with_others(metadata: &std::fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        metadata.permissions().mode() & 0o077 != 0
    }
    #[cfg(not(unix))]
    {
        let _ = metadata;
        false
    }
}
