//! Strict percent-decoding (RFC 3986 §2.1) of file names in paths and query strings.
//!
//! The `percent-encoding` and `form_urlencoded` crates pass a malformed escape (`%ZZ`, `%4`,
//! a lone `%`) through as literal text, so `GET /files/%ZZbad` would look up a file named
//! `%ZZbad`. A client that sends such a URL has a bug; guessing what it meant could address
//! the wrong file, so the node refuses it with 400 instead.

use crate::error::{NodeError, Result};

/// Decodes `%XX` escapes; any `%` not followed by two hex digits is an error naming where.
pub fn decode(raw: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != b'%' {
            out.push(raw[i]);
            i += 1;
            continue;
        }
        let hex = |j: usize| raw.get(j).and_then(|b| (*b as char).to_digit(16));
        match (hex(i + 1), hex(i + 2)) {
            (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
            _ => {
                let end = (i + 3).min(raw.len());
                return Err(format!(
                    "malformed percent-encoding {:?} at byte {i}: '%' must be followed by two hex digits",
                    String::from_utf8_lossy(&raw[i..end])
                ));
            }
        }
        i += 3;
    }
    Ok(out)
}

/// Decodes `raw` (part of a URL) into UTF-8 text, or a 400 saying what is wrong with `what`.
pub fn decode_utf8(raw: &[u8], what: &str) -> Result<String> {
    let bytes = decode(raw).map_err(|e| NodeError::BadRequest(format!("{what}: {e}")))?;
    String::from_utf8(bytes)
        .map_err(|_| NodeError::BadRequest(format!("{what} is not valid UTF-8 once decoded")))
}

/// The `key=value` pairs of an `application/x-www-form-urlencoded` query (`+` is a space),
/// decoded strictly: a malformed escape in any key or value is a 400.
pub fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    for part in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        let plus = |s: &str| s.replace('+', " ");
        let key = decode_utf8(plus(key).as_bytes(), "query parameter name")?;
        let value = decode_utf8(plus(value).as_bytes(), &format!("query parameter {key:?}"))?;
        pairs.push((key, value));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_escapes_decode() {
        let ok = |s: &str| decode(s.as_bytes()).unwrap();
        assert_eq!(ok("a%20b"), b"a b");
        assert_eq!(ok("%C3%A9t%c3%a9"), "été".as_bytes());
        assert_eq!(ok("%2F%2f"), b"//");
        assert_eq!(ok("%25ZZ"), b"%ZZ");
        assert_eq!(ok("plain+text"), b"plain+text");
        assert_eq!(ok(""), b"");
        assert_eq!(ok("%FF"), [0xFF]);
    }

    #[test]
    fn malformed_escapes_are_errors() {
        for s in [
            "%ZZbad", "%", "a%", "%4", "a%4", "%4G", "%G4", "%%41", "ok%2", "%-1", "%+1", "% 1",
        ] {
            assert!(decode(s.as_bytes()).is_err(), "{s}");
        }
        let msg = decode(b"x%ZZbad").unwrap_err();
        assert!(msg.contains("\"%ZZ\"") && msg.contains("byte 1"), "{msg}");
    }

    #[test]
    fn utf8_is_required() {
        assert_eq!(decode_utf8(b"a%2Fb", "name").unwrap(), "a/b");
        assert_eq!(decode_utf8(b"%FF", "name").unwrap_err().status(), 400);
        assert_eq!(decode_utf8(b"%ZZ", "name").unwrap_err().status(), 400);
    }

    /// `form_urlencoded` would pass `%ZZ` through; we refuse it, like in paths.
    #[test]
    fn queries() {
        assert_eq!(
            query_pairs(Some("prefix=a%2F+b&after=&limit=5&flag")).unwrap(),
            vec![
                ("prefix".to_string(), "a/ b".to_string()),
                ("after".to_string(), String::new()),
                ("limit".to_string(), "5".to_string()),
                ("flag".to_string(), String::new()),
            ]
        );
        assert_eq!(
            query_pairs(Some("a=%2B&&b=1")).unwrap(),
            vec![("a".into(), "+".into()), ("b".into(), "1".into())]
        );
        assert!(query_pairs(None).unwrap().is_empty());
        for q in ["filename=%ZZ", "prefix=%", "after=x%4", "%ZZ=1", "a=%E9"] {
            assert_eq!(query_pairs(Some(q)).unwrap_err().status(), 400, "{q}");
        }
    }
}
