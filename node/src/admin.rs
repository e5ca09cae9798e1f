//! Access-control administration on the node (`admin` scope): revoking tokens and
//! principals, and listing what is revoked. The list lives in MongoDB, so a revocation taken
//! by one node is in force on every node within [`crate::access::REVOCATIONS_POLL`].

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;
use serde_json::json;
use speedbox_common::auth::link::{self, LinkRequest};
use speedbox_common::auth::{now_secs, token, Claims, Principal, Revocation, Scope, Scopes};

use crate::error::{NodeError, Result};
use crate::name::check_name;
use crate::respond;
use crate::server::AppState;
use crate::{Body, ReqBody};

/// Largest JSON body an admin request may send, in bytes.
const MAX_BODY: usize = 64 * 1024;

/// What `POST /_auth/revoke` takes: exactly one of `jti` and `sub`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    jti: Option<String>,
    sub: Option<String>,
}

/// `POST /_auth/revoke` with `{"jti": …}` or `{"sub": …}`: 200 with `{"revoked": {jti|sub,
/// revoked_at, by}}`. A `sub` revocation covers its tokens issued up to now; tokens minted
/// for it later work.
///
/// Errors: 400 for a body that is not such JSON.
pub async fn revoke(
    state: &AppState,
    principal: &Principal,
    req: Request<ReqBody>,
) -> Result<Response<Body>> {
    let wanted: RevokeRequest = json_body(req, r#"{"jti": ID} or {"sub": NAME}"#).await?;
    let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let (jti, sub) = match (nonempty(wanted.jti), nonempty(wanted.sub)) {
        (Some(jti), None) => (Some(jti), None),
        (None, Some(sub)) => (None, Some(sub)),
        _ => {
            return Err(NodeError::BadRequest(
                "send exactly one of jti and sub".into(),
            ))
        }
    };
    let revocation = Revocation {
        jti,
        sub,
        revoked_at: now_secs(),
        by: principal.sub.clone().unwrap_or_default(),
    };
    state.store.revoke(&revocation).await?;
    state.revoked.add(&revocation);
    tracing::info!(jti = ?revocation.jti, sub = ?revocation.sub, by = %revocation.by, "revoked");
    Ok(respond::json(
        StatusCode::OK,
        &json!({ "revoked": revocation }),
    ))
}

/// What `POST /_auth/tokens` takes; the claims of the token it mints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MintRequest {
    sub: String,
    /// Scopes, space- or comma-separated.
    scope: String,
    #[serde(default)]
    prefix: String,
    max_bytes: Option<u64>,
    /// Seconds; default an hour, at most [`MAX_TTL_SECS`].
    ttl_secs: Option<u64>,
    jti: Option<String>,
}

/// The longest a minted token may live, in seconds (30 days), so no token outlives a key
/// rotation by much.
pub const MAX_TTL_SECS: u64 = 30 * 86_400;

/// `POST /_auth/tokens` with `{sub, scope, prefix?, max_bytes?, ttl_secs?, jti?}`: 201 with
/// `{token, jti, exp}`, signed with the first key of `[auth] keys`, so an application
/// backend can hand tokens to its users.
///
/// Errors: 400 for a body that is not such JSON, an unknown scope, an empty scope or sub,
/// or a ttl of 0 or over [`MAX_TTL_SECS`].
pub async fn mint(state: &AppState, req: Request<ReqBody>) -> Result<Response<Body>> {
    let shape = r#"{"sub": NAME, "scope": "read write", "prefix"?, "max_bytes"?, "ttl_secs"?}"#;
    let wanted: MintRequest = json_body(req, shape).await?;
    let scopes = Scopes::parse(&wanted.scope).map_err(NodeError::BadRequest)?;
    if scopes.is_empty() || wanted.sub.is_empty() {
        return Err(NodeError::BadRequest(
            "sub and scope must not be empty".into(),
        ));
    }
    let ttl = wanted.ttl_secs.unwrap_or(3600);
    if ttl == 0 || ttl > MAX_TTL_SECS {
        return Err(NodeError::BadRequest(format!(
            "ttl_secs must be from 1 to {MAX_TTL_SECS}"
        )));
    }
    let now = now_secs();
    let claims = Claims {
        sub: wanted.sub,
        exp: now + ttl,
        nbf: None,
        iat: Some(now),
        jti: Some(wanted.jti.unwrap_or_else(token::new_jti)),
        scope: scopes.to_string(),
        prefix: wanted.prefix,
        max_bytes: wanted.max_bytes,
    };
    let token = token::mint(state.auth.current().keys(), &claims)?;
    Ok(respond::json(
        StatusCode::CREATED,
        &json!({ "token": token, "jti": claims.jti, "exp": claims.exp }),
    ))
}

/// A JSON request body of at most [`MAX_BODY`] bytes; a 400 naming `shape` otherwise.
async fn json_body<T: serde::de::DeserializeOwned>(
    req: Request<ReqBody>,
    shape: &str,
) -> Result<T> {
    let bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| NodeError::BadRequest(format!("request body: {e}")))?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| NodeError::BadRequest(format!("send {shape}: {e}")))
}

/// What `POST /_auth/sign` takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignRequest {
    /// A file's name, or a prefix ending in `/`.
    name: String,
    /// `GET` (default) or `PUT`.
    method: Option<String>,
    /// Seconds; default 900, at most [`link::MAX_TTL_SECS`].
    ttl_secs: Option<u64>,
    /// Upload links: the largest body stored, in bytes.
    max_bytes: Option<u64>,
    /// Upload links: the SHA-256 (64 hex digits) the body must have to be stored.
    sha256: Option<String>,
}

/// `POST /_auth/sign` with `{name, method?, ttl_secs?, max_bytes?, sha256?}` and a token
/// that covers it (`read` for GET, `write` for PUT, the name within its prefix): 201 with
/// `{url, path_url, exp}`, both relative to whatever address the client uses (a link is
/// never bound to a Host): `url` is `/files/NAME?sig=…`, `path_url` `/s/…/files/NAME`.
/// An upload link's `max_bytes` is at most the token's.
///
/// Errors: 400 for a malformed request, 403 when the token does not cover the link.
pub async fn sign(
    state: &AppState,
    principal: &Principal,
    req: Request<ReqBody>,
) -> Result<Response<Body>> {
    let shape = r#"{"name": NAME, "method": "GET"|"PUT", "ttl_secs"?, "max_bytes"?, "sha256"?}"#;
    let wanted: SignRequest = json_body(req, shape).await?;
    let name = check_name(wanted.name)?;
    let request = LinkRequest {
        method: wanted.method.unwrap_or_else(|| "GET".into()),
        name: name.clone(),
        ttl_secs: wanted.ttl_secs.unwrap_or(900),
        max_bytes: wanted.max_bytes,
        sha256: wanted.sha256,
        sub: principal.sub.clone().unwrap_or_default(),
    };
    let mut claims = request.claims(now_secs()).map_err(NodeError::BadRequest)?;
    let scope = if claims.m == "PUT" {
        // An upload link allows no more than the token that signs it.
        claims.max_bytes = match (claims.max_bytes, principal.max_bytes) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Scope::Write
    } else {
        Scope::Read
    };
    principal.may(scope, Some(&name))?;
    let sig = link::sign(state.auth.current().keys(), &claims)?;
    let (url, path_url) = link::urls(&name, &sig);
    Ok(respond::json(
        StatusCode::CREATED,
        &json!({ "url": url, "path_url": path_url, "exp": claims.exp }),
    ))
}

/// `GET /_auth/revoked`: `{"revoked": [{jti|sub, revoked_at, by}, …]}`.
pub async fn revoked(state: &AppState) -> Result<Response<Body>> {
    let list = state.store.revocations().await?;
    Ok(respond::json(StatusCode::OK, &json!({ "revoked": list })))
}
