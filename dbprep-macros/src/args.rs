//! The macros' arguments: a string literal naming a folder, and for
//! `embed_migrations!` the options after it.

use std::path::PathBuf;

use syn::parse::{Parse, ParseStream};
use syn::LitStr;

/// A folder relative to the calling crate's manifest directory.
pub struct Folder {
    /// The literal, for spans and messages.
    pub literal: LitStr,
}

/// The folder's string literal.
fn folder_literal(input: ParseStream) -> syn::Result<LitStr> {
    input.parse().map_err(|e| {
        syn::Error::new(
            e.span(),
            "expected a string literal: the folder, relative to the crate's Cargo.toml, e.g. \"migrations\"",
        )
    })
}

impl Parse for Folder {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let literal = folder_literal(input)?;
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

/// `embed_migrations!`'s arguments: the folder, then `lint = "deny"` to
/// make every lint finding a compile error.
pub struct MigrationsArgs {
    /// The folder.
    pub folder: Folder,
    /// Whether lint findings are compile errors.
    pub deny_lint: bool,
}

impl Parse for MigrationsArgs {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let literal = folder_literal(input)?;
        let mut deny_lint = false;
        while !input.is_empty() {
            input.parse::<syn::Token![,]>()?;
            if input.is_empty() {
                break;
            }
            let key: syn::Ident = input.parse()?;
            if key != "lint" {
                return Err(syn::Error::new(
                    key.span(),
                    format!("unknown option `{key}`: the only option is lint = \"deny\""),
                ));
            }
            input.parse::<syn::Token![=]>()?;
            let value: LitStr = input.parse()?;
            deny_lint = match value.value().as_str() {
                "deny" => true,
                "allow" => false,
                other => {
                    return Err(syn::Error::new(
                        value.span(),
                        format!("lint = {other:?}: expected \"deny\" (findings are compile errors) or \"allow\""),
                    ))
                }
            };
        }
        Ok(MigrationsArgs {
            folder: Folder { literal },
            deny_lint,
        })
    }
}
