//! Code generation: the embedded `Migrations` value.

use proc_macro2::TokenStream;
use quote::quote;

use dbprep_runtime::__private::{
    read_fixtures, read_migrations, FixtureSource, MigrationSource, SUM_FILE,
};

use crate::args::Folder;

/// Expand `embed_migrations!`, or a compile error for every problem found
/// in the folder (and, with `deny_lint`, every lint finding).
pub fn migrations(folder: &Folder, deny_lint: bool) -> syn::Result<TokenStream> {
    let sources = read_migrations(&folder.path(), &folder.shown_as()).map_err(|errors| {
        errors
            .0
            .iter()
            .map(|e| syn::Error::new(folder.literal.span(), e))
            .reduce(|mut all, e| {
                all.combine(e);
                all
            })
            .expect("an error list is never empty")
    })?;

    if deny_lint {
        lint(folder, &sources)?;
    }

    // Editing any file (or the sum file) must rebuild the crate: rustc
    // tracks include_str!/include_bytes!. A file already in normal form is
    // embedded with include_str! (rustc reads it once, and no literal copy
    // of it goes through the token stream); the others are embedded as
    // normalized literals and tracked with include_bytes!.
    let sum = folder.path().join(SUM_FILE);
    let sum = sum.is_file().then(|| sum.canonicalize().unwrap_or(sum));
    let includes = sources
        .iter()
        .flat_map(|m| m.paths.iter().zip(&m.verbatim))
        .filter(|(_, verbatim)| !**verbatim)
        .map(|(path, _)| path)
        .chain(&sum)
        .map(|path| {
            let path = path.to_string_lossy();
            quote! { const _: &[u8] = include_bytes!(#path); }
        });
    // One array per field (see `EmbeddedColumns`): versioned migrations
    // first, then baselines, each in version order, then repeatable
    // migrations in name order (as the folder reading leaves each kind).
    let (repeatables, others): (Vec<_>, Vec<_>) = sources.iter().partition(|m| m.repeatable);
    let (baselines, versioned): (Vec<_>, Vec<_>) = others.into_iter().partition(|m| m.baseline);
    let all: Vec<&MigrationSource> = versioned
        .into_iter()
        .chain(baselines)
        .chain(repeatables)
        .collect();
    let len = all.len();
    let versions = all.iter().map(|m| m.version);
    let names_and_files: String = all.iter().flat_map(|m| [&*m.name, &*m.file]).collect();
    let lengths = all
        .iter()
        .flat_map(|m| [m.name.len() as u32, m.file.len() as u32]);
    let lengths_len = 2 * len;
    let sql = all.iter().map(|m| text(m, 0, &m.sql));
    let history_hashes = all.iter().map(|m| m.history_hash);
    let checksums: Vec<u8> = all.iter().flat_map(|m| *m.checksum.as_bytes()).collect();
    let checksums = proc_macro2::Literal::byte_string(&checksums);
    let flags: Vec<u8> = all.iter().map(|m| flags(m)).collect();
    let flags = proc_macro2::Literal::byte_string(&flags);
    let downs: Vec<TokenStream> = all
        .iter()
        .filter(|m| m.paths.len() > 1)
        .filter_map(|m| Some(text(m, 1, m.down.as_ref()?)))
        .collect();
    let downs_len = downs.len();
    Ok(quote! {
        {
            #(#includes)*
            static VERSIONS: [i64; #len] = [#(#versions),*];
            static LENGTHS: [u32; #lengths_len] = [#(#lengths),*];
            static SQL: [&str; #len] = [#(#sql),*];
            static HISTORY_HASHES: [i64; #len] = [#(#history_hashes),*];
            static DOWNS: [&str; #downs_len] = [#(#downs),*];
            static COLUMNS: ::dbprep_runtime::__private::EmbeddedColumns =
                ::dbprep_runtime::__private::EmbeddedColumns {
                    versions: &VERSIONS,
                    names_and_files: #names_and_files,
                    lengths: &LENGTHS,
                    sql: &SQL,
                    checksums: #checksums,
                    history_hashes: &HISTORY_HASHES,
                    flags: #flags,
                    downs: &DOWNS,
                };
            ::dbprep_runtime::Migrations::__embedded(&COLUMNS)
        }
    })
}

/// Every lint finding of the versions above the newest baseline (and of
/// the repeatable migrations), as compile errors.
fn lint(folder: &Folder, sources: &[MigrationSource]) -> syn::Result<()> {
    let floor = sources
        .iter()
        .filter(|m| m.baseline)
        .map(|m| m.version)
        .max();
    sources
        .iter()
        .filter(|m| !m.baseline && (m.repeatable || floor.is_none_or(|f| m.version > f)))
        .flat_map(|m| dbprep_runtime::__private::lint(&m.file, &m.sql))
        .map(|finding| syn::Error::new(folder.literal.span(), finding))
        .reduce(|mut all, e| {
            all.combine(e);
            all
        })
        .map_or(Ok(()), Err)
}

/// The migration's flags, as `EmbeddedColumns` reads them.
fn flags(m: &MigrationSource) -> u8 {
    use dbprep_runtime::__private::EmbeddedColumns as C;
    let mut flags = 0;
    if m.no_transaction {
        flags |= C::NO_TRANSACTION;
    }
    if m.baseline {
        flags |= C::BASELINE;
    }
    if m.repeatable {
        flags |= C::REPEATABLE;
    }
    if m.down.is_some() && m.paths.len() > 1 {
        flags |= C::HAS_DOWN;
    }
    flags
}

/// The file's text: `include_str!` of it when it is already normalized
/// (rustc reads it once, and no copy of it goes through the token stream),
/// else the normalized text as a literal.
fn text(m: &MigrationSource, file: usize, text: &str) -> TokenStream {
    if m.verbatim[file] {
        let path = m.paths[file].to_string_lossy();
        quote! { include_str!(#path) }
    } else {
        quote! { #text }
    }
}

/// Expand `embed_fixtures!`, or a compile error naming the bad file.
pub fn fixtures(folder: &Folder) -> syn::Result<TokenStream> {
    let sources = read_fixtures(&folder.path(), &folder.shown_as())
        .map_err(|e| syn::Error::new(folder.literal.span(), e))?;
    Ok(embedded_fixtures(&sources.iter().collect::<Vec<_>>()))
}

/// A `dbprep_runtime::Fixtures` of `sources`, in their order; editing one
/// rebuilds the crate.
pub fn embedded_fixtures(sources: &[&FixtureSource]) -> TokenStream {
    let includes = sources.iter().map(|f| {
        let path = f.path.to_string_lossy();
        quote! { const _: &[u8] = include_bytes!(#path); }
    });
    let len = sources.len();
    let items = sources.iter().map(|f| {
        let (name, file, text) = (&f.name, &f.file, &f.text);
        let checksum = proc_macro2::Literal::byte_string(f.checksum.as_bytes());
        quote! { ::dbprep_runtime::Fixture::__embedded(#name, #file, #text, *#checksum) }
    });
    quote! {
        {
            #(#includes)*
            static FIXTURES: [::dbprep_runtime::Fixture; #len] = [#(#items),*];
            ::dbprep_runtime::Fixtures::__embedded(&FIXTURES)
        }
    }
}
