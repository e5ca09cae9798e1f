//! The `Content-Disposition` header of a multipart/form-data part (RFC 7578 §4.2), parsed
//! as RFC 6266 §4.1 writes it.
//!
//! multer 3 finds `filename="` by a byte search: it misses `FileName=` (parameter names are
//! case-insensitive), token values (`filename=a.txt`), `filename*=UTF-8''…` (RFC 8187) and
//! backslash escapes. This parser reads the raw header bytes (browsers send UTF-8 in quoted
//! strings, which `HeaderValue::to_str` refuses) and does all of them.

use crate::percent;

/// What a part's Content-Disposition says about it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disposition {
    /// The form field's `name`.
    pub name: Option<String>,
    /// `filename*` when present and understood, else `filename` (RFC 6266 §4.3). `Some("")`
    /// is a file input with no file chosen.
    pub filename: Option<String>,
}

/// Parses `form-data; name="f"; filename="a.txt"`, or says what is malformed.
pub fn parse(header: &[u8]) -> Result<Disposition, String> {
    let mut rest = header;
    let _disposition_type = take_token(&mut rest);
    let (mut name, mut plain, mut extended) = (None, None, None);
    loop {
        skip_ows(&mut rest);
        if rest.is_empty() {
            break;
        }
        if rest[0] != b';' {
            return Err(format!("expected ';' before {:?}", lossy(rest)));
        }
        rest = &rest[1..];
        skip_ows(&mut rest);
        if rest.is_empty() {
            break; // a trailing ';' is harmless
        }
        let key = take_token(&mut rest).to_ascii_lowercase();
        skip_ows(&mut rest);
        if key.is_empty() || rest.first() != Some(&b'=') {
            return Err(format!(
                "a parameter needs name=value, at {:?}",
                lossy(rest)
            ));
        }
        rest = &rest[1..];
        skip_ows(&mut rest);
        let value = take_value(&mut rest)?;
        // A repeated parameter is ill-formed (RFC 6266 §4.1); the first one counts.
        match key.as_str() {
            "name" if name.is_none() => name = Some(utf8(value, "name")?),
            "filename" if plain.is_none() => plain = Some(utf8(value, "filename")?),
            // An ext-value with a charset we do not know is ignored, so `filename` applies.
            "filename*" if extended.is_none() => extended = ext_value(&value)?,
            _ => {}
        }
    }
    Ok(Disposition {
        name,
        filename: extended.or(plain),
    })
}

/// RFC 8187 §3.2.1 `ext-value = charset "'" [ language ] "'" value-chars`. UTF-8 and
/// ISO-8859-1 are understood; another charset gives `None`.
fn ext_value(raw: &[u8]) -> Result<Option<String>, String> {
    let mut parts = raw.splitn(3, |b| *b == b'\'');
    let (Some(charset), Some(_language), Some(chars)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err("filename* must be charset'language'value (RFC 8187)".into());
    };
    let bytes = percent::decode(chars).map_err(|e| format!("filename*: {e}"))?;
    match charset.to_ascii_lowercase().as_slice() {
        b"utf-8" => utf8(bytes, "filename*").map(Some),
        b"iso-8859-1" => Ok(Some(bytes.iter().map(|&b| b as char).collect())),
        _ => Ok(None),
    }
}

fn utf8(bytes: Vec<u8>, what: &str) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|_| format!("{what} is not valid UTF-8"))
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).chars().take(40).collect()
}

fn skip_ows(rest: &mut &[u8]) {
    while let [b' ' | b'\t', tail @ ..] = rest {
        *rest = tail;
    }
}

/// RFC 9110 §5.6.2 token characters (for a parameter name, and `*` of `filename*`).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn take_token(rest: &mut &[u8]) -> String {
    let end = rest
        .iter()
        .position(|b| !is_tchar(*b))
        .unwrap_or(rest.len());
    let (token, tail) = rest.split_at(end);
    *rest = tail;
    String::from_utf8_lossy(token).into_owned()
}

/// A quoted-string (RFC 9110 §5.6.4, `\` escapes the next byte) or an unquoted value. The
/// unquoted value runs to the next `;`: clients send `filename=my file.txt` too.
fn take_value(rest: &mut &[u8]) -> Result<Vec<u8>, String> {
    if rest.first() != Some(&b'"') {
        let end = rest.iter().position(|b| *b == b';').unwrap_or(rest.len());
        let (value, tail) = rest.split_at(end);
        *rest = tail;
        return Ok(value.trim_ascii_end().to_vec());
    }
    let mut out = Vec::new();
    let mut i = 1;
    while i < rest.len() {
        match rest[i] {
            b'"' => {
                *rest = &rest[i + 1..];
                return Ok(out);
            }
            b'\\' if i + 1 < rest.len() => {
                out.push(rest[i + 1]);
                i += 2;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Err("a quoted parameter value has no closing '\"'".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str) -> Option<String> {
        parse(header.as_bytes()).unwrap().filename
    }

    #[test]
    fn filenames() {
        let cases: &[(&str, Option<&str>)] = &[
            (r#"form-data; name="f"; filename="a.txt""#, Some("a.txt")),
            (r#"form-data; name="f"; filename="""#, Some("")),
            (r#"form-data; name="f""#, None),
            (r#"form-data; name="f"; FileName="A.txt""#, Some("A.txt")),
            (r#"FORM-DATA; NAME="f"; FILENAME="b.txt""#, Some("b.txt")),
            ("form-data; name=f; filename=c.txt", Some("c.txt")),
            (
                "form-data;name=f;filename=my file.txt ;",
                Some("my file.txt"),
            ),
            (r#"form-data; name="f"; filename = "d.txt" "#, Some("d.txt")),
            (
                r#"form-data; filename="q\"uote\\d.txt""#,
                Some(r#"q"uote\d.txt"#),
            ),
            (
                r#"form-data; filename="semi;colon.txt""#,
                Some("semi;colon.txt"),
            ),
            ("form-data; filename=\"caf\u{e9}.txt\"", Some("café.txt")),
            (
                r#"form-data; name="f"; filename="a"; filename="b""#,
                Some("a"),
            ),
        ];
        for (header, want) in cases {
            assert_eq!(file(header).as_deref(), *want, "{header}");
        }
    }

    /// RFC 6266 §4.3: `filename*` wins over `filename`, in either order.
    #[test]
    fn extended_filenames() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                r#"form-data; name="f"; filename*=UTF-8''na%C3%AFve.txt; filename="naive.txt""#,
                Some("naïve.txt"),
            ),
            (
                r#"form-data; name="f"; filename="naive.txt"; filename*=utf-8'en'na%c3%afve.txt"#,
                Some("naïve.txt"),
            ),
            (
                "form-data; FILENAME*=UTF-8''%E2%82%AC%20rates",
                Some("€ rates"),
            ),
            (
                "form-data; filename*=ISO-8859-1''caf%E9.txt",
                Some("café.txt"),
            ),
            (
                r#"form-data; filename*=KOI8-R''%C1; filename="fallback.txt""#,
                Some("fallback.txt"),
            ),
            ("form-data; filename*=UTF-8''", Some("")),
        ];
        for (header, want) in cases {
            assert_eq!(file(header).as_deref(), *want, "{header}");
        }
    }

    #[test]
    fn field_names() {
        let d = parse(br#"form-data; Name="upload"; filename="a""#).unwrap();
        assert_eq!(d.name.as_deref(), Some("upload"));
        assert_eq!(parse(b"form-data").unwrap(), Disposition::default());
        let d = parse(br#"form-data; filename="x"; name="late""#).unwrap();
        assert_eq!(d.name.as_deref(), Some("late"));
    }

    #[test]
    fn malformed_headers_are_errors() {
        for header in [
            &br#"form-data; filename="unterminated"#[..],
            b"form-data; filename",
            b"form-data; =x",
            b"form-data name=x",
            b"form-data; filename*=UTF-8''bad%ZZ",
            b"form-data; filename*=UTF-8''%FF",
            b"form-data; filename*=no-quotes",
            b"form-data; filename=\"\xff\"",
        ] {
            assert!(
                parse(header).is_err(),
                "{}",
                String::from_utf8_lossy(header)
            );
        }
    }
}
