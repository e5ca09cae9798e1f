//! The node's HTTP API as a pure function from a request line and its headers to a
//! [`Route`]: which handler answers, with its arguments decoded and checked.

use http::{header, HeaderMap, Method};

use crate::error::{NodeError, Result};
use crate::name::{check_name, decode_name};
use crate::percent::query_pairs;
pub use crate::store::ListQuery;

/// Page size of `GET /files` when the client gives none, and the most it may ask for.
pub const DEFAULT_LIST_LIMIT: u32 = 100;
pub const MAX_LIST_LIMIT: u32 = 1000;

/// Clients behind proxies that allow only GET and POST tunnel other methods in a POST
/// with this header.
pub const METHOD_OVERRIDE: &str = "x-http-method-override";

/// One request the node knows how to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `OPTIONS` with `Access-Control-Request-Method`, on any path: a CORS preflight.
    Preflight,
    Health,
    /// `GET /metrics`: Prometheus metrics.
    Metrics,
    /// GET or HEAD of a file (`head` says which), at `/files/NAME` or `/download?filename=`.
    Get {
        name: String,
        head: bool,
    },
    Put(String),
    Delete(String),
    List(ListQuery),
    /// `GET /media/NAME`: the video job of a file.
    Media(String),
    /// `POST /upload`: `multipart/form-data` with one or more files.
    Multipart,
    /// The tus 1.0 endpoint at `/uploads`.
    Tus(TusRoute),
    /// `POST /_auth/revoke`: revoke a token (`jti`) or a principal (`sub`).
    Revoke,
    /// `GET /_auth/revoked`: the revocations in force.
    Revoked,
    /// `POST /_auth/tokens`: mint a token (for an application backend).
    MintToken,
    /// `POST /_auth/sign`: sign a link to a file (or a prefix) the token covers.
    Sign,
}

/// A request to the tus endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TusRoute {
    /// `OPTIONS /uploads[/ID]`: what the server supports.
    Options,
    /// `POST /uploads`: creation.
    Create,
    Head(String),
    Patch(String),
    /// termination.
    Delete(String),
}

/// Whether `path` belongs to the tus endpoint (its answers carry tus headers, even refusals).
pub fn is_tus(path: &str) -> bool {
    path == "/uploads" || path.starts_with("/uploads/")
}

/// The method a request asks for: a POST's [`METHOD_OVERRIDE`] when it names a valid
/// method, else the request line's.
pub fn effective_method(method: &Method, headers: &HeaderMap) -> Method {
    if method == Method::POST {
        let wanted = headers
            .get(METHOD_OVERRIDE)
            .and_then(|v| Method::from_bytes(v.as_bytes()).ok());
        if let Some(wanted) = wanted {
            return wanted;
        }
    }
    method.clone()
}

/// Decides which route a request takes, or why it takes none: 404 for an unknown path or
/// upload id, 405 (with `Allow`) for a method the path does not take, 400 for a bad name
/// or query.
pub fn parse(
    method: &Method,
    headers: &HeaderMap,
    path: &str,
    query: Option<&str>,
) -> Result<Route> {
    if method == Method::OPTIONS && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        return Ok(Route::Preflight);
    }
    let method = &effective_method(method, headers);
    let head = method == Method::HEAD;
    if let Some(id) = path.strip_prefix("/uploads/") {
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(NodeError::NotFound(format!("upload {id:?}")));
        }
        let id = id.to_string();
        return match *method {
            Method::HEAD => Ok(Route::Tus(TusRoute::Head(id))),
            Method::PATCH => Ok(Route::Tus(TusRoute::Patch(id))),
            Method::DELETE => Ok(Route::Tus(TusRoute::Delete(id))),
            Method::OPTIONS => Ok(Route::Tus(TusRoute::Options)),
            _ => not_allowed(method, "HEAD, PATCH, DELETE, OPTIONS"),
        };
    }
    if let Some(raw) = path.strip_prefix("/files/") {
        let name = decode_name(raw)?;
        return match *method {
            Method::PUT => Ok(Route::Put(name)),
            Method::GET | Method::HEAD => Ok(Route::Get { name, head }),
            Method::DELETE => Ok(Route::Delete(name)),
            _ => not_allowed(method, "GET, HEAD, PUT, DELETE"),
        };
    }
    if let Some(raw) = path.strip_prefix("/media/") {
        let name = decode_name(raw)?;
        return match *method {
            Method::GET | Method::HEAD => Ok(Route::Media(name)),
            _ => not_allowed(method, "GET, HEAD"),
        };
    }
    match path {
        "/files" | "/files/" => match *method {
            Method::GET | Method::HEAD => Ok(Route::List(list_query(query)?)),
            _ => not_allowed(method, "GET, HEAD"),
        },
        "/download" => match *method {
            Method::GET | Method::HEAD => {
                let name = query_pairs(query)?
                    .into_iter()
                    .find(|(k, _)| k == "filename")
                    .map(|(_, v)| v)
                    .ok_or_else(|| NodeError::BadRequest("missing ?filename=".into()))?;
                Ok(Route::Get {
                    name: check_name(name)?,
                    head,
                })
            }
            _ => not_allowed(method, "GET, HEAD"),
        },
        "/upload" => match *method {
            Method::POST => Ok(Route::Multipart),
            _ => not_allowed(method, "POST"),
        },
        "/uploads" | "/uploads/" => match *method {
            Method::POST => Ok(Route::Tus(TusRoute::Create)),
            Method::OPTIONS => Ok(Route::Tus(TusRoute::Options)),
            _ => not_allowed(method, "POST, OPTIONS"),
        },
        "/_auth/revoke" => match *method {
            Method::POST => Ok(Route::Revoke),
            _ => not_allowed(method, "POST"),
        },
        "/_auth/sign" => match *method {
            Method::POST => Ok(Route::Sign),
            _ => not_allowed(method, "POST"),
        },
        "/_auth/tokens" => match *method {
            Method::POST => Ok(Route::MintToken),
            _ => not_allowed(method, "POST"),
        },
        "/_auth/revoked" => match *method {
            Method::GET | Method::HEAD => Ok(Route::Revoked),
            _ => not_allowed(method, "GET, HEAD"),
        },
        "/healthz" => match *method {
            Method::GET | Method::HEAD => Ok(Route::Health),
            _ => not_allowed(method, "GET, HEAD"),
        },
        speedbox_common::metrics::PATH => match *method {
            Method::GET | Method::HEAD => Ok(Route::Metrics),
            _ => not_allowed(method, "GET, HEAD"),
        },
        _ => Err(NodeError::NoRoute(path.to_string())),
    }
}

fn not_allowed<T>(method: &Method, allow: &'static str) -> Result<T> {
    Err(NodeError::MethodNotAllowed {
        method: method.to_string(),
        allow,
    })
}

fn list_query(query: Option<&str>) -> Result<ListQuery> {
    let mut out = ListQuery {
        limit: DEFAULT_LIST_LIMIT,
        ..ListQuery::default()
    };
    for (key, value) in query_pairs(query)? {
        match &*key {
            "prefix" => out.prefix = value,
            "after" if !value.is_empty() => out.after = Some(value),
            "after" => {}
            // The bearer token (RFC 6750 §2.3), read by access control.
            "token" => {}
            "limit" => {
                out.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIST_LIMIT).contains(n))
                    .ok_or_else(|| {
                        NodeError::BadRequest(format!(
                            "limit must be a whole number from 1 to {MAX_LIST_LIMIT}"
                        ))
                    })?
            }
            other => {
                return Err(NodeError::BadRequest(format!(
                    "unknown query parameter {other:?}; use prefix, after, limit"
                )))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "routes_tests.rs"]
mod tests;
