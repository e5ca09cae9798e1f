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
    /// GET or HEAD of a file (`head` says which), at `/files/NAME` or `/download?filename=`.
    Get {
        name: String,
        head: bool,
    },
    Put(String),
    Delete(String),
    List(ListQuery),
    /// `POST /upload`: `multipart/form-data` with one or more files.
    Multipart,
    /// The tus 1.0 endpoint at `/uploads`.
    Tus(TusRoute),
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
        "/healthz" => match *method {
            Method::GET | Method::HEAD => Ok(Route::Health),
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
mod tests {
    use super::*;

    use crate::name::MAX_NAME_LEN;

    fn route(method: Method, path: &str, query: Option<&str>) -> Result<Route> {
        parse(&method, &HeaderMap::new(), path, query)
    }

    #[test]
    fn file_routes_decode_names_with_slashes() {
        assert_eq!(
            route(Method::PUT, "/files/videos/a%20b.mp4", None).unwrap(),
            Route::Put("videos/a b.mp4".into())
        );
        assert_eq!(
            route(Method::HEAD, "/files/x", None).unwrap(),
            Route::Get {
                name: "x".into(),
                head: true
            }
        );
        assert_eq!(
            route(Method::DELETE, "/files/%C3%A9t%C3%A9", None).unwrap(),
            Route::Delete("été".into())
        );
        assert_eq!(
            route(Method::GET, "/download", Some("filename=a%2Fb")).unwrap(),
            Route::Get {
                name: "a/b".into(),
                head: false
            }
        );
    }

    #[test]
    fn bad_names_are_400() {
        for path in ["/files/", "/files/%0Aevil", "/files/%FF", "/files/a%00b"] {
            let err = route(Method::GET, path, None).unwrap_err();
            assert_eq!(err.status(), 400, "{path}");
        }
        let long = format!("/files/{}", "a".repeat(MAX_NAME_LEN + 1));
        assert_eq!(route(Method::PUT, &long, None).unwrap_err().status(), 400);
        let max = format!("/files/{}", "a".repeat(MAX_NAME_LEN));
        assert!(route(Method::PUT, &max, None).is_ok());
        assert_eq!(
            route(Method::GET, "/download", None).unwrap_err().status(),
            400
        );
    }

    #[test]
    fn malformed_escapes_are_400_on_every_route_that_decodes_a_name() {
        for bad in ["%ZZbad", "bad%", "%4", "a%4Gb", "%"] {
            for method in [Method::GET, Method::HEAD, Method::PUT, Method::DELETE] {
                let path = format!("/files/{bad}");
                let err = route(method.clone(), &path, None).unwrap_err();
                assert_eq!(err.status(), 400, "{method} {path}");
            }
            for (path, query) in [
                ("/download", format!("filename={bad}")),
                ("/files", format!("prefix={bad}")),
                ("/files", format!("after={bad}")),
            ] {
                let err = route(Method::GET, path, Some(&query)).unwrap_err();
                assert_eq!(err.status(), 400, "{path}?{query}");
            }
        }
    }

    #[test]
    fn listing_query() {
        assert_eq!(
            route(
                Method::GET,
                "/files",
                Some("prefix=a%2F&limit=5&after=a%2Fb")
            )
            .unwrap(),
            Route::List(ListQuery {
                prefix: "a/".into(),
                after: Some("a/b".into()),
                limit: 5
            })
        );
        assert_eq!(
            route(Method::GET, "/files", None).unwrap(),
            Route::List(ListQuery {
                limit: DEFAULT_LIST_LIMIT,
                ..Default::default()
            })
        );
        for q in ["limit=0", "limit=1001", "limit=x", "sort=name"] {
            assert_eq!(
                route(Method::GET, "/files", Some(q)).unwrap_err().status(),
                400,
                "{q}"
            );
        }
    }

    #[test]
    fn tus_routes() {
        assert_eq!(
            route(Method::POST, "/uploads", None).unwrap(),
            Route::Tus(TusRoute::Create)
        );
        assert_eq!(
            route(Method::OPTIONS, "/uploads", None).unwrap(),
            Route::Tus(TusRoute::Options)
        );
        assert_eq!(
            route(Method::PATCH, "/uploads/ab12", None).unwrap(),
            Route::Tus(TusRoute::Patch("ab12".into()))
        );
        assert_eq!(
            route(Method::HEAD, "/uploads/ab12", None).unwrap(),
            Route::Tus(TusRoute::Head("ab12".into()))
        );
        assert_eq!(
            route(Method::DELETE, "/uploads/ab12", None).unwrap(),
            Route::Tus(TusRoute::Delete("ab12".into()))
        );
        assert_eq!(
            route(Method::HEAD, "/uploads/a%2Fb", None)
                .unwrap_err()
                .status(),
            404
        );
        assert_eq!(
            route(Method::GET, "/uploads/ab12", None)
                .unwrap_err()
                .status(),
            405
        );
    }

    #[test]
    fn unknown_paths_and_methods() {
        assert_eq!(route(Method::GET, "/nope", None).unwrap_err().status(), 404);
        assert_eq!(
            route(Method::POST, "/files/x", None).unwrap_err().status(),
            405
        );
        assert_eq!(
            route(Method::GET, "/upload", None).unwrap_err().status(),
            405
        );
        assert_eq!(route(Method::GET, "/healthz", None).unwrap(), Route::Health);
        assert_eq!(
            route(Method::POST, "/upload", None).unwrap(),
            Route::Multipart
        );
    }

    fn with(name: &'static str, value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, http::HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn a_post_may_override_its_method() {
        let delete = with(METHOD_OVERRIDE, "DELETE");
        assert_eq!(
            parse(&Method::POST, &delete, "/files/a", None).unwrap(),
            Route::Delete("a".into())
        );
        assert_eq!(
            parse(
                &Method::POST,
                &with(METHOD_OVERRIDE, "PATCH"),
                "/uploads/ab",
                None
            )
            .unwrap(),
            Route::Tus(TusRoute::Patch("ab".into()))
        );
        // Only a POST tunnels; a malformed method is ignored, as if the header were absent.
        assert_eq!(
            parse(&Method::GET, &delete, "/files/a", None).unwrap(),
            Route::Get {
                name: "a".into(),
                head: false
            }
        );
        assert_eq!(
            parse(
                &Method::POST,
                &with(METHOD_OVERRIDE, "DE LETE"),
                "/upload",
                None
            )
            .unwrap(),
            Route::Multipart
        );
    }

    #[test]
    fn a_cors_preflight_is_answered_on_any_path() {
        let preflight = with("access-control-request-method", "PUT");
        for path in ["/files/a", "/uploads", "/nope"] {
            assert_eq!(
                parse(&Method::OPTIONS, &preflight, path, None).unwrap(),
                Route::Preflight,
                "{path}"
            );
        }
        assert_eq!(
            route(Method::OPTIONS, "/uploads/ab", None).unwrap(),
            Route::Tus(TusRoute::Options)
        );
    }

    #[test]
    fn tus_paths() {
        for path in ["/uploads", "/uploads/", "/uploads/ab"] {
            assert!(is_tus(path), "{path}");
        }
        for path in ["/upload", "/uploadsx", "/files/uploads"] {
            assert!(!is_tus(path), "{path}");
        }
    }
}
