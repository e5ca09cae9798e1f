//! Access-control administration on the node (`admin` scope): revoking tokens and
//! principals, and listing what is revoked. The list lives in MongoDB, so a revocation taken
//! by one node is in force on every node within [`crate::access::REVOCATIONS_POLL`].

use std::time::{SystemTime, UNIX_EPOCH};

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;
use speedbox_common::auth::{Principal, Revocation};

use crate::error::{NodeError, Result};
use crate::respond;
use crate::server::AppState;
use crate::Body;

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
    req: Request<Incoming>,
) -> Result<Response<Body>> {
    let bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| NodeError::BadRequest(format!("request body: {e}")))?
        .to_bytes();
    let wanted: RevokeRequest = serde_json::from_slice(&bytes).map_err(|e| {
        NodeError::BadRequest(format!("send {{\"jti\": ID}} or {{\"sub\": NAME}}: {e}"))
    })?;
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
    let revoked_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let revocation = Revocation {
        jti,
        sub,
        revoked_at,
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

/// `GET /_auth/revoked`: `{"revoked": [{jti|sub, revoked_at, by}, …]}`.
pub async fn revoked(state: &AppState) -> Result<Response<Body>> {
    let list = state.store.revocations().await?;
    Ok(respond::json(StatusCode::OK, &json!({ "revoked": list })))
}
