//! Bearer tokens: JWT (RFC 7519) signed HS256 (RFC 7518 §3.2), the key named by `kid` in
//! the header (RFC 7515 §4.1.4). Verification goes through `jsonwebtoken`, whose HMAC
//! check is constant-time.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::keys::KeyRing;
use super::{AuthError, Scopes};

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 5;

/// A token's claims (RFC 7519 §4.1, plus ours).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who holds it: the principal tus uploads and revocation by subject refer to.
    #[serde(default)]
    pub sub: String,
    /// Expiry, seconds since the Unix epoch. Required.
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Token id, for revoking this one token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Space-separated scopes (`read write delete admin`).
    #[serde(default)]
    pub scope: String,
    /// The names the token covers: those starting with it (`""`: all).
    #[serde(default)]
    pub prefix: String,
    /// The largest upload it may make, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
}

impl Claims {
    pub fn scopes(&self) -> Result<Scopes, AuthError> {
        Scopes::parse(&self.scope).map_err(AuthError::Invalid)
    }
}

/// A fresh token id (`jti`): 32 random hex digits.
pub fn new_jti() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// Signs `claims` with the ring's first key.
///
/// Errors: [`AuthError::Invalid`] when the ring is empty or the claims cannot be encoded.
pub fn mint(keys: &KeyRing, claims: &impl Serialize) -> Result<String, AuthError> {
    let key = keys
        .signing()
        .ok_or_else(|| AuthError::Invalid("no signing key configured".into()))?;
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(key.id.clone());
    let secret = EncodingKey::from_secret(key.secret())
        .map_err(|e| AuthError::Invalid(format!("unusable key: {e}")))?;
    jsonwebtoken::encode(&header, claims, &secret)
        .map_err(|e| AuthError::Invalid(format!("cannot sign: {e}")))
}

/// The claims of `token` if a key of the ring signed it and it is valid now.
///
/// Errors: [`AuthError::Expired`], [`AuthError::NotYetValid`], or [`AuthError::Invalid`]
/// naming why (malformed, unknown `kid`, other algorithm, bad signature, no `exp`) — never
/// echoing the token.
pub fn verify(keys: &KeyRing, token: &str) -> Result<Claims, AuthError> {
    verify_as(keys, token)
}

/// [`verify`] for claims of another shape (signed links).
pub fn verify_as<T: DeserializeOwned>(keys: &KeyRing, token: &str) -> Result<T, AuthError> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| AuthError::Invalid("malformed token".into()))?;
    if header.alg != Algorithm::HS256 {
        return Err(AuthError::Invalid(format!(
            "token algorithm {:?}; only HS256 is accepted",
            header.alg
        )));
    }
    let kid = header
        .kid
        .ok_or_else(|| AuthError::Invalid("token has no kid".into()))?;
    let key = keys
        .get(&kid)
        .ok_or_else(|| AuthError::Invalid(format!("unknown or revoked key {kid:?}")))?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp"]);
    let secret = DecodingKey::from_secret(key.secret())
        .map_err(|e| AuthError::Invalid(format!("unusable key: {e}")))?;
    match jsonwebtoken::decode::<T>(token, &secret, &validation) {
        Ok(data) => Ok(data.claims),
        Err(e) => Err(match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidSignature => AuthError::Invalid("bad signature".into()),
            ErrorKind::MissingRequiredClaim(c) => {
                AuthError::Invalid(format!("token has no {c} claim"))
            }
            _ => AuthError::Invalid("malformed token".into()),
        }),
    }
}
