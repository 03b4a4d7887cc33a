//! The demo application's migrations, embedded at compile time.
//!
//! Run with `cargo run --example quickstart`.

use dbprep_runtime::Migrations;

static MIGRATIONS: Migrations = dbprep_macros::embed_migrations!("../migrations");

fn main() {
    println!("{} migrations embedded:", MIGRATIONS.len());
    for m in &MIGRATIONS {
        let mode = if m.no_transaction() { " (no transaction)" } else { "" };
        println!("  {:>4}  {:<28} {}{mode}", m.version(), m.name(), m.checksum().short());
    }
}
