//! What the peer programs share: which generated set to apply, and where.

/// The set sizes the bench generates (`sets/<tool>/n<size>`).
pub const SIZES: [usize; 3] = [10, 100, 1000];

/// The set size named by the first argument (`10`, `100` or `1000`).
pub fn size_from_args() -> usize {
    let size = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .expect("usage: <program> 10|100|1000 (DATABASE_URL names the database)");
    assert!(
        SIZES.contains(&size),
        "no generated set of {size} migrations"
    );
    size
}

/// `DATABASE_URL`.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL").expect("DATABASE_URL names the database")
}
