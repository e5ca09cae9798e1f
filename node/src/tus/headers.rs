//! tus request headers, parsed purely: `Upload-Checksum`, `Upload-Metadata`,
//! `Tus-Resumable`, and the client-facing `Location` of an upload.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::HeaderMap;

use super::{CHECKSUM_ALGORITHMS, VERSION};
use crate::error::{NodeError, Result};

/// A parsed `Upload-Checksum` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    pub algorithm: Algorithm,
    pub digest: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Md5,
    Sha256,
}

/// Parses `Upload-Checksum: <algorithm> <base64>`.
pub fn parse_checksum(value: &str) -> Result<Checksum> {
    let (name, b64) = value
        .trim()
        .split_once(' ')
        .ok_or_else(|| bad("Upload-Checksum must be '<algorithm> <base64 digest>'"))?;
    let (algorithm, len) = match name.to_ascii_lowercase().as_str() {
        "sha1" => (Algorithm::Sha1, 20),
        "md5" => (Algorithm::Md5, 16),
        "sha256" => (Algorithm::Sha256, 32),
        other => {
            return Err(bad(&format!(
                "unsupported checksum algorithm {other:?}; use one of {CHECKSUM_ALGORITHMS}"
            )))
        }
    };
    let digest = STANDARD
        .decode(b64.trim())
        .ok()
        .filter(|d| d.len() == len)
        .ok_or_else(|| bad("Upload-Checksum digest is not valid base64 of the right length"))?;
    Ok(Checksum { algorithm, digest })
}

/// Parses `Upload-Metadata: key base64, key2 base64, key3` into pairs.
pub fn parse_metadata(value: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut parts = pair.splitn(2, ' ');
        let key = parts.next().unwrap_or_default().to_string();
        let value = match parts.next() {
            Some(v) => STANDARD
                .decode(v.trim())
                .map_err(|_| bad(&format!("Upload-Metadata value of {key:?} is not base64")))?,
            None => Vec::new(),
        };
        if key.is_empty() || key.contains(|c: char| c.is_whitespace() || c == ',') {
            return Err(bad("Upload-Metadata keys must be non-empty without spaces"));
        }
        out.push((key, value));
    }
    Ok(out)
}

/// The URL of an upload as the client addressed us. Through the balancer that is its
/// `X-Forwarded-Proto`/`-Host` (the first, client-side hop of each), else the nearest
/// client-side RFC 7239 §5.3/§5.4 `Forwarded` `host=`/`proto=`, else `Host` and `http`;
/// a path when the host is unknown. Only `http`/`https` are believed as a scheme.
pub fn location(headers: &HeaderMap, id: &str) -> String {
    let joined = |name: &str| {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    };
    let first = |name: &str| {
        joined(name)
            .and_then(|v| v.split(',').next().map(|v| v.trim().to_string()))
            .filter(|v| !v.is_empty())
    };
    let forwarded = |param: &str| {
        joined("forwarded").and_then(|v| speedbox_common::forwarded::first_param(&v, param))
    };
    let host = first("x-forwarded-host")
        .or_else(|| forwarded("host"))
        .or_else(|| first("host"));
    let proto = first("x-forwarded-proto")
        .or_else(|| forwarded("proto"))
        .map(|p| p.to_ascii_lowercase())
        .filter(|p| p == "http" || p == "https")
        .unwrap_or_else(|| "http".into());
    match host {
        Some(host) if !host.contains(['/', ' ', '@', '?', '#', '\\', '"']) => {
            format!("{proto}://{host}/uploads/{id}")
        }
        _ => format!("/uploads/{id}"),
    }
}

/// Every tus request but OPTIONS must say which protocol version it speaks.
pub fn check_version(headers: &HeaderMap) -> Result<()> {
    if header_str(headers, "tus-resumable") == Some(VERSION) {
        Ok(())
    } else {
        Err(NodeError::TusVersion)
    }
}

pub(super) fn bad(msg: &str) -> NodeError {
    NodeError::BadRequest(msg.into())
}

pub(super) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

pub(super) fn header_u64(headers: &HeaderMap, name: &str) -> Result<Option<u64>> {
    header_str(headers, name)
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| bad(&format!("{name} must be a non-negative integer")))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn checksums() {
        let c = parse_checksum("sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=").unwrap();
        assert_eq!(c.algorithm, Algorithm::Sha1);
        assert_eq!(c.digest.len(), 20);
        assert!(parse_checksum("md5 XrY7u+Ae7tCTyyK7j1rNww==").is_ok());
        assert!(parse_checksum("crc32 AAAA").is_err());
        assert!(parse_checksum("sha1").is_err());
        assert!(parse_checksum("sha1 AAAA").is_err());
    }

    #[test]
    fn metadata() {
        let m =
            parse_metadata("filename dmlkZW8ubXA0,filetype dmlkZW8vbXA0, is_confidential").unwrap();
        assert_eq!(m[0], ("filename".to_string(), b"video.mp4".to_vec()));
        assert_eq!(m[1], ("filetype".to_string(), b"video/mp4".to_vec()));
        assert_eq!(m[2], ("is_confidential".to_string(), Vec::new()));
        assert!(parse_metadata("filename !!!").is_err());
        // Malformed base64 is a 400 too, never a name decoded by guesswork.
        for bad in [
            "filename dmlkZW8ubXA",
            "filename dmlkZW8ubXA0=",
            "filename dmlk ZW8=",
            "filename ====",
            "filename dmlkZW8%ubXA0",
            "filename dmlkZW8_ubXA0",
        ] {
            assert_eq!(parse_metadata(bad).unwrap_err().status(), 400, "{bad}");
        }
        assert!(parse_metadata("").unwrap().is_empty());
    }

    #[test]
    fn locations_follow_the_client_facing_address() {
        let mut h = HeaderMap::new();
        assert_eq!(location(&h, "ab"), "/uploads/ab");
        h.insert("host", HeaderValue::from_static("127.0.0.1:8001"));
        assert_eq!(location(&h, "ab"), "http://127.0.0.1:8001/uploads/ab");
        h.insert(
            "x-forwarded-host",
            HeaderValue::from_static("files.example.com, 10.0.0.2:3000"),
        );
        h.insert("x-forwarded-proto", HeaderValue::from_static("https, http"));
        assert_eq!(location(&h, "ab"), "https://files.example.com/uploads/ab");
        // X-Forwarded-* win over Forwarded when both arrive
        h.insert(
            "forwarded",
            HeaderValue::from_static("for=1.2.3.4;proto=http;host=other"),
        );
        assert_eq!(location(&h, "ab"), "https://files.example.com/uploads/ab");
    }

    #[test]
    fn locations_fall_back_to_rfc7239_forwarded() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("10.0.0.2:3000"));
        h.append(
            "forwarded",
            HeaderValue::from_static("for=\"[2001:db8::1]\";proto=https;host=\"up.example:8443\""),
        );
        h.append(
            "forwarded",
            HeaderValue::from_static("for=10.0.0.1;proto=http;host=\"10.0.0.2:3000\""),
        );
        assert_eq!(location(&h, "ab"), "https://up.example:8443/uploads/ab");
        // a hop that states no proto/host leaves it to the next one, then to Host
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("10.0.0.2:3000"));
        h.insert("forwarded", HeaderValue::from_static("for=1.2.3.4"));
        assert_eq!(location(&h, "ab"), "http://10.0.0.2:3000/uploads/ab");
    }

    #[test]
    fn odd_schemes_and_hosts_are_not_believed() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("a.example"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("javascript"));
        assert_eq!(location(&h, "ab"), "http://a.example/uploads/ab");
        h.insert(
            "x-forwarded-host",
            HeaderValue::from_static("evil@b.example"),
        );
        assert_eq!(location(&h, "ab"), "/uploads/ab");
    }

    #[test]
    fn version_must_be_ours() {
        let mut h = HeaderMap::new();
        assert_eq!(check_version(&h).unwrap_err().status(), 412);
        h.insert("tus-resumable", HeaderValue::from_static("0.2.2"));
        assert_eq!(check_version(&h).unwrap_err().status(), 412);
        h.insert("tus-resumable", HeaderValue::from_static("1.0.0"));
        assert!(check_version(&h).is_ok());
    }
}
