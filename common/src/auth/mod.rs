//! Access control shared by the balancer, every node and the token tools: who a request
//! comes from ([`Principal`]), what it may do ([`Scopes`]), and the proofs it carries —
//! bearer tokens ([`token`], RFC 6750 / RFC 7519) signed with the keys of `[auth]`
//! ([`keys`]).
//!
//! [`Authenticator::authenticate`] turns a request's token (or its absence) into a
//! principal; [`Principal::may`] decides one action on one name. Both are pure, so every
//! rule is unit-tested without a socket.

pub mod keys;
pub mod link;
pub mod live;
pub mod revoke;
pub mod scope;
pub mod token;

use std::collections::HashMap;
use std::sync::Mutex;

use http::HeaderMap;

pub use keys::{Key, KeyRing};
pub use live::LiveAuth;
pub use revoke::{Revocation, Revocations};
pub use scope::{Scope, Scopes};
pub use token::Claims;

/// Why a request may not do what it asks: 401 for no valid proof of who is asking, 403
/// ([`AuthError::Forbidden`]) for a principal that may not, 410 for an expired link. Messages never contain a token or secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("a token is required (Authorization: Bearer, or ?token=)")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    #[error("token revoked")]
    Revoked,
    /// A signed link past its expiry: 410, the link will never work again.
    #[error("the link has expired")]
    LinkExpired,
    #[error("forbidden: {0}")]
    Forbidden(String),
}

impl AuthError {
    /// 401 for every failure to prove who is asking, 403 for a principal that may not.
    pub fn status(&self) -> http::StatusCode {
        match self {
            AuthError::Forbidden(_) => http::StatusCode::FORBIDDEN,
            AuthError::LinkExpired => http::StatusCode::GONE,
            _ => http::StatusCode::UNAUTHORIZED,
        }
    }

    /// The `WWW-Authenticate` challenge a 401 carries (RFC 6750 §3), with
    /// `error="invalid_token"` when a token was sent but proves nothing; `None` for a 403.
    pub fn challenge(&self) -> Option<&'static str> {
        match self {
            AuthError::Forbidden(_) | AuthError::LinkExpired => None,
            AuthError::Missing => Some("Bearer realm=\"speedbox\""),
            _ => Some("Bearer realm=\"speedbox\", error=\"invalid_token\""),
        }
    }
}

/// Who a request comes from and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub`; `None` for an anonymous request (or when access control is off).
    pub sub: Option<String>,
    pub scopes: Scopes,
    /// Names covered: those starting with it (`""`: all).
    pub prefix: String,
    /// Largest upload allowed, in bytes.
    pub max_bytes: Option<u64>,
    pub jti: Option<String>,
    /// The token's `iat`, seconds since the Unix epoch.
    pub issued_at: Option<u64>,
    /// A signed upload link's pinned SHA-256 (hex): the body must have it to be stored.
    pub sha256: Option<String>,
    /// Whether a valid token proved this principal (false: anonymous or open).
    pub authenticated: bool,
}

impl Principal {
    /// Everyone, with every scope: access control is off.
    pub fn open() -> Principal {
        Principal {
            sub: None,
            scopes: Scopes::ALL,
            prefix: String::new(),
            max_bytes: None,
            jti: None,
            issued_at: None,
            authenticated: false,
            sha256: None,
        }
    }

    /// A request without a token: the `[auth] anonymous` scopes on every name.
    pub fn anonymous(scopes: Scopes) -> Principal {
        Principal {
            scopes,
            ..Principal::open()
        }
    }

    fn from_claims(claims: Claims) -> Result<Principal, AuthError> {
        Ok(Principal {
            scopes: claims.scopes()?,
            sub: Some(claims.sub),
            prefix: claims.prefix,
            max_bytes: claims.max_bytes,
            jti: claims.jti,
            issued_at: claims.iat,
            authenticated: true,
            sha256: None,
        })
    }

    pub fn is_admin(&self) -> bool {
        self.scopes.contains(Scope::Admin)
    }

    /// Whether this principal may `scope` the file `name` (`None`: an action on no one
    /// name, e.g. listing or creating a tus upload before its name is known).
    ///
    /// Errors: [`AuthError::Missing`] for an anonymous request (a token could help), else
    /// [`AuthError::Forbidden`] naming the scope or prefix missing.
    pub fn may(&self, scope: Scope, name: Option<&str>) -> Result<(), AuthError> {
        let refuse = |why: String| {
            if self.authenticated {
                AuthError::Forbidden(why)
            } else {
                AuthError::Missing
            }
        };
        if !self.scopes.contains(scope) {
            return Err(refuse(format!(
                "the token lacks the {} scope",
                scope.name()
            )));
        }
        match name {
            Some(name) if !name.starts_with(&self.prefix) => Err(refuse(format!(
                "the token covers names starting with {:?} only",
                self.prefix
            ))),
            _ => Ok(()),
        }
    }
}

/// Checks requests against one `[auth]` configuration and its keys.
pub struct Authenticator {
    enabled: bool,
    keys: KeyRing,
    anonymous: Scopes,
    /// The `secret_file`s of `[auth] keys`, watched for changes.
    key_files: Vec<String>,
    /// Tokens already verified with these keys, by their exact text: a client sends the
    /// same token with every request, and verifying it (base64, JSON, HMAC) costs several
    /// µs. An edit of `[auth]` builds a new authenticator, so a removed key empties it.
    verified: Verified<Principal>,
    /// The same for signed links (a player fetches every segment of a video with one).
    links: Verified<link::LinkClaims>,
}

/// Proofs verified with one key ring, by their exact text, each until it expires.
struct Verified<T>(Mutex<HashMap<Box<str>, (T, u64)>>);

/// Proofs remembered at most; the cache starts over when full.
const VERIFIED_CACHE: usize = 10_000;

impl<T: Clone> Verified<T> {
    fn new() -> Self {
        Verified(Mutex::new(HashMap::new()))
    }

    fn get(&self, text: &str, now: u64) -> Option<T> {
        let cache = self.0.lock().ok()?;
        let (value, until) = cache.get(text)?;
        (now <= *until).then(|| value.clone())
    }

    fn put(&self, text: &str, value: T, until: u64) {
        if let Ok(mut cache) = self.0.lock() {
            if cache.len() >= VERIFIED_CACHE {
                cache.clear();
            }
            cache.insert(text.into(), (value, until));
        }
    }
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the cache: it holds tokens.
        f.debug_struct("Authenticator")
            .field("enabled", &self.enabled)
            .field("keys", &self.keys)
            .field("anonymous", &self.anonymous)
            .finish()
    }
}

impl Authenticator {
    /// Access control off: every request is [`Principal::open`].
    pub fn open() -> Authenticator {
        Authenticator {
            enabled: false,
            keys: KeyRing::default(),
            anonymous: Scopes::ALL,
            key_files: Vec::new(),
            verified: Verified::new(),
            links: Verified::new(),
        }
    }

    pub fn new(keys: KeyRing, anonymous: Scopes) -> Authenticator {
        Authenticator {
            enabled: true,
            keys,
            anonymous,
            key_files: Vec::new(),
            verified: Verified::new(),
            links: Verified::new(),
        }
    }

    /// Remembers the key files `auth` names, so a watcher sees them change.
    pub fn with_files(mut self, auth: Option<&crate::config::AuthConfig>) -> Authenticator {
        self.key_files = live::key_files(auth);
        self
    }

    pub fn key_files(&self) -> &[String] {
        &self.key_files
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// The principal a request's `token` (see [`bearer`]) proves; without one, the
    /// anonymous principal. A token that is present but invalid is refused even where
    /// anonymous access would do: a client should learn that its token is bad.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Principal, AuthError> {
        if !self.enabled {
            return Ok(Principal::open());
        }
        let Some(token) = token else {
            return Ok(Principal::anonymous(self.anonymous));
        };
        if let Some(principal) = self.verified.get(token, now_secs()) {
            return Ok(principal);
        }
        let claims = token::verify(&self.keys, token)?;
        let valid_until = claims.exp + token::LEEWAY_SECS;
        let principal = Principal::from_claims(claims)?;
        self.verified.put(token, principal.clone(), valid_until);
        Ok(principal)
    }

    /// The principal a signed link's signature `sig` proves for `method` on file `name`
    /// ([`link::claims`], then [`link::grant`]); a signature verified before is not
    /// verified again, method and path are checked every time.
    pub fn link(
        &self,
        sig: &str,
        method: &http::Method,
        name: &str,
    ) -> Result<Principal, AuthError> {
        let claims = match self.links.get(sig, now_secs()) {
            Some(claims) => claims,
            None => {
                let claims = link::claims(&self.keys, sig)?;
                self.links
                    .put(sig, claims.clone(), claims.exp + token::LEEWAY_SECS);
                claims
            }
        };
        link::grant(claims, method, name)
    }
}

/// Now, in whole seconds since the Unix epoch (the unit of `exp`, `iat` and revocations).
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The token a request carries: `Authorization: Bearer <token>` (RFC 6750 §2.1), else a
/// `token=` query parameter (§2.3), for clients that cannot set headers. A token is
/// base64url and dots, so the query value needs no decoding.
///
/// Errors: [`AuthError::Invalid`] for an `Authorization` header of another scheme or with
/// an empty token.
pub fn bearer<'a>(
    headers: &'a HeaderMap,
    query: Option<&'a str>,
) -> Result<Option<&'a str>, AuthError> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| AuthError::Invalid("Authorization is not ASCII".into()))?;
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Invalid(
                "Authorization must use the Bearer scheme".into(),
            ));
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Invalid("empty bearer token".into()));
        }
        return Ok(Some(token));
    }
    Ok(query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("token="))
        .filter(|t| !t.is_empty()))
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
