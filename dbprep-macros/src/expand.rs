//! Code generation: the embedded `Migrations` value.

use proc_macro2::TokenStream;
use quote::quote;

use dbprep_runtime::model::fixture::read_fixtures;
use dbprep_runtime::model::source::{read_migrations, MigrationSource};
use dbprep_runtime::model::sum::SUM_FILE;

use crate::args::Folder;

/// Expand `embed_migrations!`, or a compile error for every problem found
/// in the folder.
pub fn migrations(folder: &Folder) -> syn::Result<TokenStream> {
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

    // Editing any file (or the sum file) must rebuild the crate: rustc
    // tracks include_str!/include_bytes!. A file already in normal form is
    // embedded with include_str! (rustc reads it once, and no literal copy
    // of it goes through the token stream); the others are embedded as
    // normalized literals and tracked with include_bytes!.
    let sum = folder.path().join(SUM_FILE);
    let sum = sum.is_file().then(|| sum.canonicalize().unwrap_or(sum));
    let includes = sources
        .iter()
        .flat_map(|m| {
            m.paths
                .iter()
                .zip([Some(m.sql.as_str()), m.down.as_deref()])
        })
        .filter(|(path, text)| !text.is_some_and(|t| is_verbatim(path, t)))
        .map(|(path, _)| path)
        .chain(&sum)
        .map(|path| {
            let path = path.to_string_lossy();
            quote! { const _: &[u8] = include_bytes!(#path); }
        });
    let (baselines, versioned): (Vec<_>, Vec<_>) = sources.iter().partition(|m| m.baseline);
    let versioned_len = versioned.len();
    let baselines_len = baselines.len();
    let versioned = versioned.into_iter().map(migration);
    let baselines = baselines.into_iter().map(migration);
    Ok(quote! {
        {
            #(#includes)*
            static VERSIONED: [::dbprep_runtime::Migration; #versioned_len] = [#(#versioned),*];
            static BASELINES: [::dbprep_runtime::Migration; #baselines_len] = [#(#baselines),*];
            ::dbprep_runtime::Migrations::__embedded(&VERSIONED, &BASELINES)
        }
    })
}

/// Whether the file at `path` holds exactly `text` (no byte-order mark, no
/// CRLF to normalize away).
fn is_verbatim(path: &std::path::Path, text: &str) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() == text.len() as u64)
        && std::fs::read(path).is_ok_and(|bytes| bytes == text.as_bytes())
}

/// `include_str!` of the file when it is already normalized, else the
/// normalized text as a literal.
fn text(path: &std::path::Path, text: &str) -> TokenStream {
    if is_verbatim(path, text) {
        let path = path.to_string_lossy();
        quote! { include_str!(#path) }
    } else {
        quote! { #text }
    }
}

fn migration(m: &MigrationSource) -> TokenStream {
    let MigrationSource {
        version,
        name,
        file,
        history_hash,
        no_transaction,
        baseline,
        ..
    } = m;
    let sql = text(&m.paths[0], &m.sql);
    // One byte-string token, not 32 integer literals: 1,000 migrations are
    // 32,000 fewer tokens for rustc.
    let checksum = proc_macro2::Literal::byte_string(m.checksum.as_bytes());
    let down = match (&m.down, m.paths.get(1)) {
        (Some(down), Some(path)) => {
            let down = text(path, down);
            quote! { ::core::option::Option::Some(#down) }
        }
        _ => quote! { ::core::option::Option::None },
    };
    quote! {
        ::dbprep_runtime::Migration::__embedded(
            #version, #name, #file, #sql, *#checksum, #history_hash, #no_transaction, #baseline, #down,
        )
    }
}

/// Expand `embed_fixtures!`, or a compile error naming the bad file.
pub fn fixtures(folder: &Folder) -> syn::Result<TokenStream> {
    let sources = read_fixtures(&folder.path(), &folder.shown_as())
        .map_err(|e| syn::Error::new(folder.literal.span(), e))?;
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
    Ok(quote! {
        {
            #(#includes)*
            static FIXTURES: [::dbprep_runtime::Fixture; #len] = [#(#items),*];
            ::dbprep_runtime::Fixtures::__embedded(&FIXTURES)
        }
    })
}
