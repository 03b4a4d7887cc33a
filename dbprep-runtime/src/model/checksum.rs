//! SHA-256 checksums of normalized migration and fixture text.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// The SHA-256 of a migration's normalized up SQL (or of a fixture's
/// normalized JSON), shown as lowercase hex.
///
/// # Example
///
/// ```
/// use dbprep_runtime::Checksum;
///
/// let sum = Checksum::of(b"CREATE TABLE t ();\n");
/// assert_eq!(sum.to_string().len(), 64);
/// assert_eq!(sum.to_string().parse::<Checksum>().unwrap(), sum);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Checksum([u8; 32]);

impl Checksum {
    /// The checksum of `bytes`, which should already be normalized
    /// (see normalization).
    pub fn of(bytes: &[u8]) -> Self {
        Checksum(Sha256::digest(bytes).into())
    }

    /// A checksum from its 32 raw bytes (as stored in the history table).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Checksum(bytes)
    }

    /// The 32 raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first 12 hex digits, for tables meant for people.
    pub fn short(&self) -> String {
        self.to_string()[..12].to_owned()
    }

    /// Whether `hex` is this checksum as the history stores it (lowercase
    /// hex), compared without allocating: a run compares every applied
    /// version's.
    pub(crate) fn matches_hex(&self, hex: &str) -> bool {
        hex.as_bytes() == self.hex_digits()
    }

    /// The 64 lowercase hex digits. A table, not `write!` per byte: the
    /// history of a long-lived project has thousands to compare.
    fn hex_digits(&self) -> [u8; 64] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; 64];
        for (pair, byte) in hex.chunks_exact_mut(2).zip(self.0) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0x0f)];
        }
        hex
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.hex_digits();
        f.write_str(std::str::from_utf8(&hex).expect("hex digits are ASCII"))
    }
}

impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checksum({self})")
    }
}

/// A string that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a SHA-256 checksum (expected 64 hex digits): {0:?}")]
pub struct ParseChecksumError(pub String);

impl FromStr for Checksum {
    type Err = ParseChecksumError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = || ParseChecksumError(s.to_owned());
        if s.len() != 64 || !s.is_ascii() {
            return Err(error());
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| error())?;
        }
        Ok(Checksum(bytes))
    }
}

/// The 64-bit hash of one history row, as the engine's digest of the
/// history table computes it in SQL: the first 8 bytes (big-endian) of the
/// SHA-256 of `"{version}:{checksum as hex}:{success}"`. The digest is the
/// XOR of the hashes of all rows, so a start-up compares one short row
/// instead of reading the history; `embed_migrations!` computes each
/// migration's hash at compile time.
pub fn history_row_hash(version: i64, checksum_hex: &str, success: bool) -> i64 {
    let text = format!("{version}:{checksum_hex}:{success}");
    let digest = Sha256::digest(text.as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("a SHA-256 has 32 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest_of_empty_input() {
        assert_eq!(
            Checksum::of(b"").to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn a_checksum_matches_its_lowercase_hex_only() {
        let sum = Checksum::of(b"");
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(sum.matches_hex(hex));
        assert!(!sum.matches_hex(&hex.to_uppercase()));
        assert!(!sum.matches_hex(&hex[..63]));
        assert!(!sum.matches_hex(""));
        assert!(!Checksum::of(b"x").matches_hex(hex));
        assert_eq!(hex.parse::<Checksum>().unwrap(), sum);
    }

    #[test]
    fn rejects_bad_hex() {
        assert!("zz".parse::<Checksum>().is_err());
        assert!("g".repeat(64).parse::<Checksum>().is_err());
    }
}
