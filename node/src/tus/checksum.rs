//! The tus checksum extension's digest of one PATCH body (`Upload-Checksum`, tus 1.0
//! "Checksum"), and what the comparison says.

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::headers::{Algorithm, Checksum};

/// A running digest of one PATCH body, in the algorithm its `Upload-Checksum` names.
pub(super) enum PatchHasher {
    Sha1(Sha1),
    Md5(Md5),
    Sha256(Sha256),
}

impl PatchHasher {
    pub(super) fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha1 => Self::Sha1(Sha1::new()),
            Algorithm::Md5 => Self::Md5(Md5::new()),
            Algorithm::Sha256 => Self::Sha256(Sha256::new()),
        }
    }

    pub(super) fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha1(h) => h.update(data),
            Self::Md5(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            Self::Sha1(h) => h.finalize().to_vec(),
            Self::Md5(h) => h.finalize().to_vec(),
            Self::Sha256(h) => h.finalize().to_vec(),
        }
    }
}

/// What the client's checksum says about the bytes a PATCH received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Checked {
    /// The PATCH carried no `Upload-Checksum`.
    NotAsked,
    Matches,
    /// The body arrived whole and its digest differs: tus answers 460.
    Differs,
    /// The body broke off, so what arrived cannot be checked against the whole's digest.
    Unverifiable,
}

/// Compares the digest of the body received (`whole`: it arrived to the end) with the
/// client's `expected` checksum.
pub(super) fn check(
    expected: Option<&Checksum>,
    hasher: Option<PatchHasher>,
    whole: bool,
) -> Checked {
    match (expected, hasher) {
        (Some(expected), Some(hasher)) if whole => {
            if hasher.finish() == expected.digest {
                Checked::Matches
            } else {
                Checked::Differs
            }
        }
        (Some(_), _) => Checked::Unverifiable,
        (None, _) => Checked::NotAsked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha1_of(data: &[u8]) -> Checksum {
        Checksum {
            algorithm: Algorithm::Sha1,
            digest: Sha1::digest(data).to_vec(),
        }
    }

    fn hashed(data: &[u8]) -> Option<PatchHasher> {
        let mut h = PatchHasher::new(Algorithm::Sha1);
        h.update(data);
        Some(h)
    }

    #[test]
    fn a_whole_body_matches_or_differs_a_broken_one_cannot_be_checked() {
        let sum = sha1_of(b"abc");
        assert_eq!(check(Some(&sum), hashed(b"abc"), true), Checked::Matches);
        assert_eq!(check(Some(&sum), hashed(b"abd"), true), Checked::Differs);
        assert_eq!(
            check(Some(&sum), hashed(b"ab"), false),
            Checked::Unverifiable
        );
        assert_eq!(check(None, None, true), Checked::NotAsked);
        assert_eq!(check(None, None, false), Checked::NotAsked);
    }
}
