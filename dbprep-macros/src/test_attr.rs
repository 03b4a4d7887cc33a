//! `#[dbprep_macros::test]`: a test that gets its own migrated database.

use proc_macro2::{Span, TokenStream};
use quote::{quote, ToTokens};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, FnArg, ItemFn, LitStr, Token};

use dbprep_runtime::__private::read_fixtures;

use crate::args::Folder;
use crate::expand;

/// The attribute's arguments: `migrations = MIGRATIONS`, and optionally
/// `fixtures("name", …)` and `fixtures_dir = "folder"`.
pub struct TestArgs {
    migrations: Expr,
    fixtures: Vec<LitStr>,
    fixtures_dir: Option<LitStr>,
}

/// The folder fixtures are read from when `fixtures_dir` is not given, as
/// `embed_fixtures!("fixtures")` would.
const DEFAULT_FIXTURES_DIR: &str = "fixtures";

const USAGE: &str = "expected `migrations = MIGRATIONS`, then optionally `fixtures(\"name\", …)` and `fixtures_dir = \"folder\"`";

impl Parse for TestArgs {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut migrations = None;
        let mut fixtures = Vec::new();
        let mut fixtures_dir = None;
        while !input.is_empty() {
            let key: syn::Ident = input
                .parse()
                .map_err(|e| syn::Error::new(e.span(), USAGE))?;
            match key.to_string().as_str() {
                "migrations" => {
                    input.parse::<Token![=]>()?;
                    migrations = Some(input.parse::<Expr>()?);
                }
                "fixtures" => {
                    let names;
                    syn::parenthesized!(names in input);
                    fixtures.extend(Punctuated::<LitStr, Token![,]>::parse_terminated(&names)?);
                }
                "fixtures_dir" => {
                    input.parse::<Token![=]>()?;
                    fixtures_dir = Some(input.parse::<LitStr>()?);
                }
                other => {
                    return Err(syn::Error::new(
                        key.span(),
                        format!("unknown argument `{other}`: {USAGE}"),
                    ))
                }
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        let migrations = migrations.ok_or_else(|| {
            syn::Error::new(
                Span::call_site(),
                format!("the migrations are missing: {USAGE}"),
            )
        })?;
        Ok(TestArgs {
            migrations,
            fixtures,
            fixtures_dir,
        })
    }
}

/// What every signature error ends with.
const SIGNATURE: &str =
    "a dbprep test is `async fn name(pool: deadpool_postgres::Pool)`, returning `()` or a `Result`";

/// A signature error at `tokens`: `what` is wrong, then [`SIGNATURE`].
fn wrong(tokens: impl ToTokens, what: &str) -> syn::Error {
    syn::Error::new_spanned(tokens, format!("{what}: {SIGNATURE}"))
}

/// Expand the attribute on `item`.
pub fn expand(args: TestArgs, item: ItemFn) -> syn::Result<TokenStream> {
    let signature = &item.sig;
    if signature.asyncness.is_none() {
        return Err(wrong(signature.fn_token, "the test must be an `async fn`"));
    }
    if !signature.generics.params.is_empty() {
        return Err(wrong(&signature.generics, "the test cannot be generic"));
    }
    let takes_a_pool = signature.inputs.len() == 1
        && matches!(
            signature.inputs.first(),
            Some(FnArg::Typed(arg)) if matches!(
                &*arg.ty,
                syn::Type::Path(p) if p.qself.is_none() && p.path.segments.last().is_some_and(|s| s.ident == "Pool" && s.arguments.is_none())
            )
        );
    if !takes_a_pool {
        let what = "the test takes one argument, the database's pool";
        return Err(if signature.inputs.is_empty() {
            wrong(&signature.ident, what)
        } else {
            wrong(&signature.inputs, what)
        });
    }
    let fixtures = fixtures(args.fixtures, args.fixtures_dir)?;
    let migrations = &args.migrations;
    let ItemFn {
        attrs,
        vis,
        mut sig,
        block,
    } = item;
    let output = sig.output.to_token_stream();
    // The test's own function, under a name of its own, inside the one
    // the harness calls.
    let name = std::mem::replace(
        &mut sig.ident,
        syn::Ident::new("__dbprep_test", Span::mixed_site()),
    );
    let inner = ItemFn {
        attrs: Vec::new(),
        vis: syn::Visibility::Inherited,
        sig,
        block,
    };
    Ok(quote! {
        #(#attrs)*
        #[::core::prelude::v1::test]
        #vis fn #name() #output {
            #inner
            static FIXTURES: ::dbprep_runtime::Fixtures = #fixtures;
            ::dbprep_runtime::testing::run_migrated(&#migrations, &FIXTURES, __dbprep_test)
        }
    })
}

/// The named fixtures, in the order named, embedded from their folder; an
/// unknown name is an error at its literal.
fn fixtures(names: Vec<LitStr>, dir: Option<LitStr>) -> syn::Result<TokenStream> {
    let literal = dir.unwrap_or_else(|| LitStr::new(DEFAULT_FIXTURES_DIR, Span::call_site()));
    if names.is_empty() {
        return Ok(quote! { ::dbprep_runtime::Fixtures::__embedded(&[]) });
    }
    let folder = Folder { literal };
    let sources = read_fixtures(&folder.path(), &folder.shown_as())
        .map_err(|e| syn::Error::new(folder.literal.span(), e))?;
    let mut chosen = Vec::with_capacity(names.len());
    for name in &names {
        let found = sources.iter().find(|f| f.name == name.value());
        let Some(found) = found else {
            let known: Vec<&str> = sources.iter().map(|f| f.name.as_str()).collect();
            let known = if known.is_empty() {
                "it has none".to_owned()
            } else {
                format!("it has {}", known.join(", "))
            };
            return Err(syn::Error::new(
                name.span(),
                format!(
                    "unknown fixture \"{}\" in {}/: {known}",
                    name.value(),
                    folder.shown_as()
                ),
            ));
        };
        chosen.push(found);
    }
    Ok(expand::embedded_fixtures(&chosen))
}
