//! Content digests: computed while a body streams in, checked against what the client sent.
//!
//! Clients may send `Content-MD5` (base64, RFC 1864) and/or `Repr-Digest` or
//! `Content-Digest` with `sha-256` (RFC 9530). A mismatch means the bytes were damaged on the
//! way, so the upload is refused and nothing is stored.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::HeaderMap;
use md5::{Digest, Md5};
use sha2::digest::common::hazmat::{SerializableState, SerializedState};
use sha2::Sha256;

use crate::error::{NodeError, Result};

/// Digests the client announced for the whole body.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Expected {
    pub md5: Option<Vec<u8>>,
    pub sha256: Option<Vec<u8>>,
}

/// Reads the digest headers; a header we understand but cannot parse is a 400.
pub fn expected(headers: &HeaderMap) -> Result<Expected> {
    let mut out = Expected::default();
    if let Some(v) = headers.get("content-md5") {
        let bytes = v
            .to_str()
            .ok()
            .and_then(|s| STANDARD.decode(s.trim()).ok())
            .filter(|b| b.len() == 16)
            .ok_or_else(|| bad("Content-MD5 must be the base64 of 16 bytes"))?;
        out.md5 = Some(bytes);
    }
    for name in ["repr-digest", "content-digest"] {
        for v in headers.get_all(name) {
            let text = v.to_str().map_err(|_| bad("Repr-Digest is not ASCII"))?;
            if let Some(sha) = sha256_member(text)? {
                out.sha256 = Some(sha);
            }
        }
    }
    Ok(out)
}

/// The `sha-256=:<base64>:` member of an RFC 9530 dictionary, if present.
fn sha256_member(dict: &str) -> Result<Option<Vec<u8>>> {
    for member in dict.split(',') {
        let Some((key, value)) = member.trim().split_once('=') else {
            continue;
        };
        if !key.trim().eq_ignore_ascii_case("sha-256") {
            continue;
        }
        let inner = value
            .trim()
            .strip_prefix(':')
            .and_then(|v| v.strip_suffix(':'))
            .ok_or_else(|| bad("Repr-Digest sha-256 must be :base64: (RFC 9530)"))?;
        let bytes = STANDARD
            .decode(inner)
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or_else(|| bad("Repr-Digest sha-256 must be the base64 of 32 bytes"))?;
        return Ok(Some(bytes));
    }
    Ok(None)
}

fn bad(msg: &str) -> NodeError {
    NodeError::BadRequest(msg.into())
}

/// MD5 and SHA-256 of everything fed to it.
#[derive(Default, Clone)]
pub struct Hasher {
    md5: Md5,
    sha256: Sha256,
}

/// Final digests, raw.
pub struct Digests {
    pub md5: Vec<u8>,
    pub sha256: Vec<u8>,
}

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        self.md5.update(data);
        self.sha256.update(data);
    }

    /// The running state of both digests, to be carried on by another node with
    /// [`Hasher::restore`]: RustCrypto's serialized states (`SerializableState`), MD5's then
    /// SHA-256's, a little over 200 bytes in all whatever was hashed.
    pub fn state(&self) -> Vec<u8> {
        let mut out = self.md5.serialize().to_vec();
        out.extend_from_slice(&self.sha256.serialize());
        out
    }

    /// The hasher [`Hasher::state`] was taken from; `None` for bytes that are not such a
    /// state (of another length, or from another crate version).
    pub fn restore(state: &[u8]) -> Option<Self> {
        let split = SerializedState::<Md5>::default().len();
        if state.len() != split + SerializedState::<Sha256>::default().len() {
            return None;
        }
        let (md5, sha256) = state.split_at(split);
        Some(Self {
            md5: Md5::deserialize(&SerializedState::<Md5>::try_from(md5).ok()?).ok()?,
            sha256: Sha256::deserialize(&SerializedState::<Sha256>::try_from(sha256).ok()?).ok()?,
        })
    }

    pub fn finish(self) -> Digests {
        Digests {
            md5: self.md5.finalize().to_vec(),
            sha256: self.sha256.finalize().to_vec(),
        }
    }
}

impl Expected {
    /// Fails with the first announced digest that the received bytes do not have.
    pub fn check(&self, got: &Digests) -> Result<()> {
        if let Some(md5) = self.md5.as_ref().filter(|m| **m != got.md5) {
            return Err(NodeError::DigestMismatch {
                header: "Content-MD5",
                expected: STANDARD.encode(md5),
                actual: STANDARD.encode(&got.md5),
            });
        }
        if let Some(sha) = self.sha256.as_ref().filter(|s| **s != got.sha256) {
            return Err(NodeError::DigestMismatch {
                header: "Repr-Digest sha-256",
                expected: STANDARD.encode(sha),
                actual: STANDARD.encode(&got.sha256),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn digests_of(data: &[u8]) -> Digests {
        let mut h = Hasher::default();
        h.update(&data[..3]);
        h.update(&data[3..]);
        h.finish()
    }

    #[test]
    fn a_restored_state_goes_on_as_the_original() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for cut in [0, 1, 63, 64, 65, 100_000, 199_999] {
            let mut h = Hasher::default();
            h.update(&data[..cut]);
            let state = h.state();
            let mut restored = Hasher::restore(&state).expect("restores");
            restored.update(&data[cut..]);
            let (got, want) = (restored.finish(), digests_of(&data));
            assert_eq!(
                (got.md5, got.sha256),
                (want.md5, want.sha256),
                "cut at {cut}"
            );
        }
        assert!(Hasher::restore(&[0; 7]).is_none());
        assert!(Hasher::restore(&[]).is_none());
    }

    #[test]
    fn known_digests() {
        let d = digests_of(b"hello world");
        assert_eq!(hex::encode(&d.md5), "5eb63bbbe01eeed093cb22bb8f5acdc3");
        assert_eq!(
            hex::encode(&d.sha256),
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
    }

    #[test]
    fn headers_are_parsed_and_checked() {
        let mut h = HeaderMap::new();
        h.insert(
            "content-md5",
            HeaderValue::from_static("XrY7u+Ae7tCTyyK7j1rNww=="),
        );
        h.insert(
            "repr-digest",
            HeaderValue::from_static(
                "sha-512=:AAAA:, sha-256=:uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=:",
            ),
        );
        let exp = expected(&h).unwrap();
        assert!(exp.check(&digests_of(b"hello world")).is_ok());
        let err = exp.check(&digests_of(b"hello wordl")).unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(err.to_string().contains("Content-MD5"));
    }

    #[test]
    fn sha256_mismatch_alone_is_caught() {
        let mut h = HeaderMap::new();
        h.insert(
            "repr-digest",
            HeaderValue::from_static("sha-256=:uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=:"),
        );
        let err = expected(&h)
            .unwrap()
            .check(&digests_of(b"other bytes"))
            .unwrap_err();
        assert!(err.to_string().contains("sha-256"));
    }

    #[test]
    fn malformed_headers_are_400() {
        for (name, value) in [
            ("content-md5", "not base64!"),
            ("content-md5", "AAAA"),
            ("repr-digest", "sha-256=abc"),
            ("repr-digest", "sha-256=:AAAA:"),
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static(value));
            assert_eq!(expected(&h).unwrap_err().status(), 400, "{name}: {value}");
        }
        let mut h = HeaderMap::new();
        h.insert("repr-digest", HeaderValue::from_static("sha-512=:AAAA:"));
        assert_eq!(expected(&h).unwrap(), Expected::default());
    }
}
