//! Normalization of file text before it is checksummed and embedded.
//!
//! A Windows checkout (CRLF line ends, sometimes a byte-order mark) must not
//! look like an edited migration, so both are removed before hashing.

/// A file that is not valid UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotUtf8 {
    /// 1-based line of the first invalid byte.
    pub line: usize,
    /// Byte offset of the first invalid byte.
    pub offset: usize,
}

/// Decode `bytes` as UTF-8, strip a leading byte-order mark and turn CRLF
/// line ends into LF.
pub fn normalize(bytes: &[u8]) -> Result<String, NotUtf8> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let offset = e.valid_up_to();
        let line = 1 + bytes[..offset].iter().filter(|&&b| b == b'\n').count();
        NotUtf8 { line, offset }
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    Ok(text.replace("\r\n", "\n"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bom_and_crlf_are_removed() {
        assert_eq!(
            normalize(b"\xEF\xBB\xBFSELECT 1;\r\n").unwrap(),
            "SELECT 1;\n"
        );
    }

    use super::*;

    #[test]
    fn lone_carriage_returns_are_kept() {
        assert_eq!(normalize(b"a\rb\r\n").unwrap(), "a\rb\n");
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        assert_eq!(
            normalize(b"ok\nbad \xff\n").unwrap_err(),
            NotUtf8 { line: 2, offset: 7 }
        );
    }
}
