//! File names: what the node accepts as the name of a file, wherever a name comes from (a
//! `/files/` path, `?filename=`, a tus `filename` metadata value, a multipart part).

use crate::error::{NodeError, Result};
use crate::percent::decode_utf8;

/// Longest file name accepted, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 1024;

/// Percent-decodes the rest of a `/files/` path into a file name; a malformed escape is a
/// 400 (RFC 3986 §2.1), not part of the name.
pub fn decode_name(raw: &str) -> Result<String> {
    check_name(decode_utf8(raw.as_bytes(), "file name")?)
}

/// A file name is 1 to [`MAX_NAME_LEN`] bytes of UTF-8 without control characters.
///
/// Errors: [`NodeError::BadRequest`] saying which rule the name breaks.
pub fn check_name(name: String) -> Result<String> {
    if name.is_empty() {
        return Err(NodeError::BadRequest("file name is empty".into()));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NodeError::BadRequest(format!(
            "file name is {} bytes; the limit is {MAX_NAME_LEN}",
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(NodeError::BadRequest(
            "file name contains a control character".into(),
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_within_the_rules_pass_unchanged() {
        for ok in ["a", "videos/a b.mp4", "été", "a/../b"] {
            assert_eq!(check_name(ok.into()).unwrap(), ok);
        }
        let max = "a".repeat(MAX_NAME_LEN);
        assert_eq!(check_name(max.clone()).unwrap(), max);
    }

    #[test]
    fn names_outside_the_rules_are_400() {
        let long = "a".repeat(MAX_NAME_LEN + 1);
        for bad in ["", "a\nb", "a\0b", "\u{7f}", long.as_str()] {
            assert_eq!(check_name(bad.into()).unwrap_err().status(), 400, "{bad:?}");
        }
        assert_eq!(decode_name("%FF").unwrap_err().status(), 400);
        assert_eq!(decode_name("a%20b").unwrap(), "a b");
    }
}
