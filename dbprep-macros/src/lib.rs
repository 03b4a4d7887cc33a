//! Compile-time embedding of dbprep migrations and fixtures.
//!
//! `embed_migrations!("migrations")` reads the folder (relative to the
//! calling crate's `Cargo.toml`), checks every file with the same model code
//! `dbprep-runtime` uses at run time, and expands to a
//! `dbprep_runtime::Migrations` that can live in a `static`:
//!
//! ```ignore
//! use dbprep_runtime::Migrations;
//!
//! static MIGRATIONS: Migrations = dbprep_macros::embed_migrations!("migrations");
//! ```
//!
//! A bad file is a compile error that names it (and, for SQL that would
//! break a migration's atomicity, its line and column). Editing a file
//! rebuilds the crate; a *new* file needs
//! `println!("cargo:rerun-if-changed=migrations");` in `build.rs`.

mod args;
mod expand;

use proc_macro::TokenStream;

/// Embed the fixtures (`*.json`) of a folder as a
/// `dbprep_runtime::Fixtures`, each checked (valid JSON, an object of
/// tables, each an array of row objects, valid names, no duplicate key) and
/// named after its file stem.
///
/// ```ignore
/// static FIXTURES: dbprep_runtime::Fixtures = dbprep_macros::embed_fixtures!("fixtures");
/// ```
#[proc_macro]
pub fn embed_fixtures(input: TokenStream) -> TokenStream {
    let folder = syn::parse_macro_input!(input as args::Folder);
    expand::fixtures(&folder)
        .unwrap_or_else(|e| e.to_compile_error())
        .into()
}

/// Embed the migrations of a folder as a `dbprep_runtime::Migrations`.
///
/// The argument is a string literal: the folder, relative to the calling
/// crate's `Cargo.toml`.
#[proc_macro]
pub fn embed_migrations(input: TokenStream) -> TokenStream {
    let folder = syn::parse_macro_input!(input as args::Folder);
    expand::migrations(&folder)
        .unwrap_or_else(|e| e.to_compile_error())
        .into()
}
