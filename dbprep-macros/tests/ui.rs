//! Every compile-time error of `embed_migrations!`, with its exact message.

#[test]
fn ui() {
    // trybuild compiles each case in a crate of its own, under target/; the
    // macro resolves the case folders against this crate instead.
    std::env::set_var("DBPREP_MANIFEST_DIR_OVERRIDE", env!("CARGO_MANIFEST_DIR"));
    let t = trybuild::TestCases::new();
    t.pass("tests/pass/*.rs");
    t.compile_fail("tests/ui/*.rs");
}
