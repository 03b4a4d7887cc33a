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
    // tracks include_bytes!.
    let sum = folder.path().join(SUM_FILE);
    let sum = sum.is_file().then(|| sum.canonicalize().unwrap_or(sum));
    let includes = sources
        .iter()
        .flat_map(|m| &m.paths)
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

fn migration(m: &MigrationSource) -> TokenStream {
    let MigrationSource {
        version,
        name,
        file,
        sql,
        history_hash,
        no_transaction,
        baseline,
        ..
    } = m;
    let checksum = m.checksum.as_bytes();
    let down = match &m.down {
        Some(down) => quote! { ::core::option::Option::Some(#down) },
        None => quote! { ::core::option::Option::None },
    };
    quote! {
        ::dbprep_runtime::Migration::__embedded(
            #version, #name, #file, #sql, [#(#checksum),*], #history_hash, #no_transaction, #baseline, #down,
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
        let checksum = f.checksum.as_bytes();
        quote! { ::dbprep_runtime::Fixture::__embedded(#name, #file, #text, [#(#checksum),*]) }
    });
    Ok(quote! {
        {
            #(#includes)*
            static FIXTURES: [::dbprep_runtime::Fixture; #len] = [#(#items),*];
            ::dbprep_runtime::Fixtures::__embedded(&FIXTURES)
        }
    })
}
