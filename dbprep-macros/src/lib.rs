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

#![warn(missing_docs)]

mod args;
mod expand;
mod test_attr;

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
    let args = syn::parse_macro_input!(input as args::MigrationsArgs);
    expand::migrations(&args.folder, args.deny_lint)
        .unwrap_or_else(|e| e.to_compile_error())
        .into()
}

/// A test with a database of its own, migrated and with the named fixtures
/// loaded: cloned from a template built once per distinct set (feature
/// `testing` of `dbprep-runtime`, with `DATABASE_URL` or a throwaway
/// cluster; see `dbprep_runtime::testing::migrated`).
///
/// ```ignore
/// static MIGRATIONS: dbprep_runtime::Migrations = dbprep_macros::embed_migrations!("migrations");
///
/// #[dbprep_macros::test(migrations = MIGRATIONS, fixtures("example-keypairs"))]
/// async fn admins_have_keys(pool: deadpool_postgres::Pool) {
///     let client = pool.get().await.unwrap();
///     // …
/// }
/// ```
///
/// Fixtures are read, checked and embedded at compile time from the folder
/// `fixtures` beside the crate's `Cargo.toml`, or `fixtures_dir =
/// "folder"`; an unknown name is a compile error. The function must be
/// `async fn name(pool: deadpool_postgres::Pool)`, returning `()` or a
/// `Result`; it runs on a runtime of its own. A test that passes drops its
/// database; one that fails (a panic or an `Err`) keeps it and prints how
/// to open it.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    let args = syn::parse_macro_input!(args as test_attr::TestArgs);
    let item = syn::parse_macro_input!(item as syn::ItemFn);
    test_attr::expand(args, item)
        .unwrap_or_else(|e| e.to_compile_error())
        .into()
}
