//! Signed links: a URL that lets whoever holds it GET (or PUT) one file, or the files under
//! one prefix, until it expires — bound to the method, the path and the expiry, never to
//! the Host, so it survives proxies that rewrite Host.
//!
//! The signature is a JWT (HS256, `kid`, the keys of `[auth]`) over [`LinkClaims`], carried
//! as `?sig=<jwt>` or in a path form, `/s/<jwt>/files/NAME`, whose relative URLs inherit
//! it: a playlist at `/s/<jwt>/files/v.media/master.m3u8` that names `720p/0.ts` leads the
//! player to `/s/<jwt>/files/v.media/720p/0.ts`, covered by a link for `v.media/`.

use http::Method;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};

use super::keys::KeyRing;
use super::{token, AuthError, Principal, Scopes};

/// The query parameter of the query form.
pub const QUERY_PARAM: &str = "sig";

/// What a link allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkClaims {
    /// `GET` (GET and HEAD) or `PUT`.
    pub m: String,
    /// The file's name, or a prefix ending in `/` (the link covers the names under it).
    pub p: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Who signed it: the principal tus uploads and revocation refer to.
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Upload links: the largest body accepted, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Upload links: the SHA-256 (hex) the body must have to be stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// The longest a signed link may live, in seconds (7 days).
pub const MAX_TTL_SECS: u64 = 7 * 86_400;

/// What a new link is asked to allow, before it is checked.
#[derive(Debug, Clone)]
pub struct LinkRequest {
    /// `GET` or `PUT`, any case.
    pub method: String,
    /// A file's name, or (GET only) a prefix ending in `/`.
    pub name: String,
    pub ttl_secs: u64,
    /// PUT only: the largest body stored, in bytes.
    pub max_bytes: Option<u64>,
    /// PUT only: the SHA-256 (64 hex digits) the body must have.
    pub sha256: Option<String>,
    /// Who signs it.
    pub sub: String,
}

impl LinkRequest {
    /// The claims of the link, issued at `now` (seconds since the Unix epoch) with a fresh
    /// `jti`, or the rule the request breaks: the method is GET or PUT; `max_bytes` and
    /// `sha256` are for PUT links, which are for one name, not a prefix; `sha256` is 64 hex
    /// digits; the ttl is 1 s to [`MAX_TTL_SECS`].
    pub fn claims(self, now: u64) -> Result<LinkClaims, String> {
        let method = self.method.to_ascii_uppercase();
        match method.as_str() {
            "GET" if self.max_bytes.is_some() || self.sha256.is_some() => {
                return Err("max_bytes and sha256 are for PUT links".into())
            }
            "GET" => {}
            "PUT" if self.name.ends_with('/') => {
                return Err("an upload link is for one name, not a prefix".into())
            }
            "PUT" => {}
            other => return Err(format!("method {other:?}: use GET or PUT")),
        }
        if let Some(sha) = &self.sha256 {
            if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err("sha256 must be 64 hex digits".into());
            }
        }
        if self.ttl_secs == 0 || self.ttl_secs > MAX_TTL_SECS {
            return Err(format!("the ttl must be from 1 to {MAX_TTL_SECS} seconds"));
        }
        Ok(LinkClaims {
            m: method,
            p: self.name,
            exp: now + self.ttl_secs,
            sub: self.sub,
            iat: Some(now),
            jti: Some(token::new_jti()),
            max_bytes: self.max_bytes,
            sha256: self.sha256.map(|s| s.to_ascii_lowercase()),
        })
    }
}

/// Signs `claims` into the link's signature (the `sig` value).
pub fn sign(keys: &KeyRing, claims: &LinkClaims) -> Result<String, AuthError> {
    token::mint(keys, claims)
}

/// The claims of a link's signature `sig`, if a key of the ring made it and it has not
/// expired.
///
/// Errors: [`AuthError::LinkExpired`] (410) once expired; [`AuthError::Forbidden`] (403)
/// for a signature that does not verify.
pub fn claims(keys: &KeyRing, sig: &str) -> Result<LinkClaims, AuthError> {
    token::verify_as(keys, sig).map_err(|e| match e {
        AuthError::Expired => AuthError::LinkExpired,
        _ => AuthError::Forbidden("the link's signature does not verify".into()),
    })
}

/// What verified `claims` allow `method` on file `name`: its principal, or 403 for
/// another method or path.
pub fn grant(claims: LinkClaims, method: &Method, name: &str) -> Result<Principal, AuthError> {
    let scopes = match (claims.m.as_str(), method) {
        ("GET", &Method::GET | &Method::HEAD) => Scopes::parse("read"),
        ("PUT", &Method::PUT) => Scopes::parse("write"),
        _ => {
            return Err(AuthError::Forbidden(format!(
                "the link is for {} only",
                claims.m
            )))
        }
    }
    .map_err(AuthError::Invalid)?;
    if !covers(&claims.p, name) {
        return Err(AuthError::Forbidden("the link is for another path".into()));
    }
    Ok(Principal {
        sub: Some(claims.sub),
        scopes,
        // Exactly this name: a link for `a.txt` covers no `a.txt2`.
        prefix: name.to_string(),
        max_bytes: claims.max_bytes,
        jti: claims.jti,
        issued_at: claims.iat,
        authenticated: true,
        sha256: claims.sha256,
    })
}

/// Characters of a name kept as they are in a link's path (RFC 3986 §2.3 unreserved).
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The two forms of a link to `name` with signature `sig`, relative to whatever address
/// the client uses: `/files/NAME?sig=SIG` and `/s/SIG/files/NAME` (for a prefix, the path
/// form is the one relative URLs inherit).
pub fn urls(name: &str, sig: &str) -> (String, String) {
    let path = file_path(name);
    (
        format!("{path}?{QUERY_PARAM}={sig}"),
        format!("/s/{sig}{path}"),
    )
}

/// The path of the file API's URL for `name`, `/files/NAME`, each segment of the name
/// percent-encoded (RFC 3986 §3.3).
pub fn file_path(name: &str) -> String {
    let path: Vec<String> = name
        .split('/')
        .map(|seg| utf8_percent_encode(seg, PATH_SEGMENT).to_string())
        .collect();
    format!("/files/{}", path.join("/"))
}

/// Whether a link for `path` (a name, or a prefix ending in `/`) covers `name`.
pub fn covers(path: &str, name: &str) -> bool {
    if path.ends_with('/') {
        name.starts_with(path)
    } else {
        name == path
    }
}

/// Splits the path form: `/s/<sig>/rest` into `(Some(sig), "/rest")`; any other path is
/// returned whole with no signature.
pub fn split_path(path: &str) -> (Option<&str>, &str) {
    let Some(after) = path.strip_prefix("/s/") else {
        return (None, path);
    };
    match after.find('/') {
        Some(i) if i > 0 => (Some(&after[..i]), &after[i..]),
        _ => (None, path),
    }
}

/// The `sig=` value of a query string (a JWT needs no percent-decoding).
pub fn from_query(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("sig="))
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Key;

    fn keys() -> KeyRing {
        KeyRing::new(vec![Key::new("k1", &[9u8; 32]).unwrap()])
    }

    fn verify(
        keys: &KeyRing,
        sig: &str,
        method: &Method,
        name: &str,
    ) -> Result<Principal, AuthError> {
        grant(claims(keys, sig)?, method, name)
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn link(m: &str, p: &str, exp: u64) -> String {
        let claims = LinkClaims {
            m: m.into(),
            p: p.into(),
            exp,
            sub: "s".into(),
            iat: None,
            jti: None,
            max_bytes: Some(5),
            sha256: None,
        };
        sign(&keys(), &claims).unwrap()
    }

    #[test]
    fn a_link_allows_its_method_on_its_path_until_it_expires() {
        let get = link("GET", "v/a.mp4", now() + 60);
        let p = verify(&keys(), &get, &Method::GET, "v/a.mp4").unwrap();
        assert_eq!((p.prefix.as_str(), p.max_bytes), ("v/a.mp4", Some(5)));
        assert!(verify(&keys(), &get, &Method::HEAD, "v/a.mp4").is_ok());
        let forbidden = |r: Result<Principal, AuthError>| matches!(r, Err(AuthError::Forbidden(_)));
        assert!(forbidden(verify(&keys(), &get, &Method::PUT, "v/a.mp4")));
        assert!(forbidden(verify(&keys(), &get, &Method::DELETE, "v/a.mp4")));
        assert!(forbidden(verify(&keys(), &get, &Method::GET, "v/a.mp42")));
        let dir = link("GET", "v/a.media/", now() + 60);
        assert!(verify(&keys(), &dir, &Method::GET, "v/a.media/720p/0.ts").is_ok());
        assert!(forbidden(verify(&keys(), &dir, &Method::GET, "v/a.mediaX")));
        let put = link("PUT", "up.bin", now() + 60);
        assert!(verify(&keys(), &put, &Method::PUT, "up.bin").is_ok());
        assert!(forbidden(verify(&keys(), &put, &Method::GET, "up.bin")));
        let old = link("GET", "v/a.mp4", now() - 60);
        assert_eq!(
            verify(&keys(), &old, &Method::GET, "v/a.mp4"),
            Err(AuthError::LinkExpired)
        );
        let mut tampered = get.clone();
        tampered.pop();
        assert!(forbidden(verify(
            &keys(),
            &tampered,
            &Method::GET,
            "v/a.mp4"
        )));
        // A bearer token is no link.
        let bearer = token::mint(
            &keys(),
            &crate::auth::Claims {
                sub: "s".into(),
                exp: now() + 60,
                nbf: None,
                iat: None,
                jti: None,
                scope: "read".into(),
                prefix: String::new(),
                max_bytes: None,
            },
        )
        .unwrap();
        assert!(forbidden(verify(&keys(), &bearer, &Method::GET, "v/a.mp4")));
    }

    #[test]
    fn a_link_request_is_checked_before_it_is_signed() {
        let request = |method: &str, name: &str, ttl, max_bytes, sha: Option<&str>| LinkRequest {
            method: method.into(),
            name: name.into(),
            ttl_secs: ttl,
            max_bytes,
            sha256: sha.map(str::to_string),
            sub: "s".into(),
        };
        let sha = "AB".repeat(32);
        let c = request("put", "up.bin", 60, Some(5), Some(&sha))
            .claims(1000)
            .unwrap();
        assert_eq!(
            (c.m.as_str(), c.exp, c.iat, c.max_bytes),
            ("PUT", 1060, Some(1000), Some(5))
        );
        assert_eq!(c.sha256, Some("ab".repeat(32)));
        assert_eq!(c.jti.map(|j| j.len()), Some(32));
        assert!(request("GET", "v/", MAX_TTL_SECS, None, None)
            .claims(0)
            .is_ok());
        for bad in [
            request("DELETE", "a", 60, None, None),
            request("GET", "a", 60, Some(5), None),
            request("GET", "a", 60, None, Some(&sha)),
            request("PUT", "v/", 60, None, None),
            request("PUT", "a", 60, None, Some("abc")),
            request("GET", "a", 0, None, None),
            request("GET", "a", MAX_TTL_SECS + 1, None, None),
        ] {
            assert!(bad.clone().claims(0).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_signature_comes_from_the_path_or_the_query() {
        assert_eq!(
            split_path("/s/abc.def/files/x/y"),
            (Some("abc.def"), "/files/x/y")
        );
        assert_eq!(split_path("/files/x"), (None, "/files/x"));
        assert_eq!(split_path("/s//files/x"), (None, "/s//files/x"));
        assert_eq!(split_path("/s/abc"), (None, "/s/abc"));
        assert_eq!(from_query(Some("a=1&sig=x.y.z")), Some("x.y.z"));
        assert_eq!(from_query(Some("sig=")), None);
        assert_eq!(from_query(None), None);
        assert_eq!(
            urls("v/a b/é.mp4", "S"),
            (
                "/files/v/a%20b/%C3%A9.mp4?sig=S".to_string(),
                "/s/S/files/v/a%20b/%C3%A9.mp4".to_string()
            )
        );
    }
}
