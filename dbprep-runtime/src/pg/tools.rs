//! PostgreSQL's own programs (`psql`, `pg_dump`, `initdb`, …): where they
//! are on this machine.

use std::path::PathBuf;

/// Where to look for PostgreSQL's program `name`, best first: `name` on
/// `PATH` when it is the program itself (links resolved), then the
/// versioned folders `/usr/lib/postgresql/<major>/bin`, newest first, then
/// `name` on `PATH` as it is (Debian's `/usr/bin/psql` is a wrapper that
/// picks a version: it works, but says nothing of which).
pub(crate) fn candidates(name: &str) -> impl Iterator<Item = PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|program| program.is_file())
    });
    let resolved = on_path
        .as_deref()
        .and_then(|program| program.canonicalize().ok())
        .filter(|program| program.file_name() == Some(name.as_ref()));
    resolved.into_iter().chain(versioned(name)).chain(on_path)
}

/// `/usr/lib/postgresql/<major>/bin/name` for each major version that has
/// it, newest first.
fn versioned(name: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") else {
        return Vec::new();
    };
    let mut found: Vec<(u32, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse().ok()?;
            let program = entry.path().join("bin").join(name);
            program.is_file().then_some((major, program))
        })
        .collect();
    found.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
    found.into_iter().map(|(_, program)| program).collect()
}

/// PostgreSQL's program `name`, the first of [`candidates`].
pub(crate) fn find(name: &str) -> Option<PathBuf> {
    candidates(name).next()
}
