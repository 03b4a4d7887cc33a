// Rebuild when a migration or fixture is added (editing one is tracked by
// the macros themselves).
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
    println!("cargo:rerun-if-changed=../fixtures");
}
