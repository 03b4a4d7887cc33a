//! The macros' argument: one string literal naming a folder.

use std::path::PathBuf;

use syn::parse::{Parse, ParseStream};
use syn::LitStr;

/// A folder relative to the calling crate's manifest directory.
pub struct Folder {
    /// The literal, for spans and messages.
    pub literal: LitStr,
}

impl Parse for Folder {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let literal: LitStr = input.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                "expected a string literal: the folder, relative to the crate's Cargo.toml, e.g. \"migrations\"",
            )
        })?;
        if !input.is_empty() {
            return Err(input.error("expected one string literal and nothing after it"));
        }
        Ok(Folder { literal })
    }
}

impl Folder {
    /// The folder as written, which is how files appear in messages.
    pub fn shown_as(&self) -> String {
        self.literal.value()
    }

    /// The folder on disk.
    ///
    /// `DBPREP_MANIFEST_DIR_OVERRIDE` exists for this crate's own UI tests:
    /// trybuild compiles each case in a generated crate whose manifest
    /// directory holds none of the test folders.
    pub fn path(&self) -> PathBuf {
        let base = std::env::var_os("DBPREP_MANIFEST_DIR_OVERRIDE")
            .or_else(|| std::env::var_os("CARGO_MANIFEST_DIR"))
            .map(PathBuf::from)
            .unwrap_or_default();
        base.join(self.literal.value())
    }
}
