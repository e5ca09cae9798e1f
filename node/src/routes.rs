//! The node's HTTP API as a pure function from method, path and query to a [`Route`].

use http::Method;

use crate::error::{NodeError, Result};
use crate::percent::{decode_utf8, query_pairs};
pub use crate::store::ListQuery;

/// Longest file name accepted, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 1024;
/// Page size of `GET /files` when the client gives none, and the most it may ask for.
pub const DEFAULT_LIST_LIMIT: u32 = 100;
pub const MAX_LIST_LIMIT: u32 = 1000;

/// One request the node knows how to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Put(String),
    /// GET or HEAD of a file (`head` says which).
    Get {
        name: String,
        head: bool,
    },
    Delete(String),
    List(ListQuery),
    Multipart,
    Health,
    /// tus: `OPTIONS /uploads`, `POST /uploads`, and HEAD/PATCH/DELETE of one upload.
    TusOptions,
    TusCreate,
    TusHead(String),
    TusPatch(String),
    TusDelete(String),
}

/// Decides which route a request takes, or why it takes none.
pub fn parse(method: &Method, path: &str, query: Option<&str>) -> Result<Route> {
    let head = method == Method::HEAD;
    if let Some(id) = path.strip_prefix("/uploads/") {
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(NodeError::NotFound(format!("upload {id:?}")));
        }
        let id = id.to_string();
        return match *method {
            Method::HEAD => Ok(Route::TusHead(id)),
            Method::PATCH => Ok(Route::TusPatch(id)),
            Method::DELETE => Ok(Route::TusDelete(id)),
            Method::OPTIONS => Ok(Route::TusOptions),
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
            Method::POST => Ok(Route::TusCreate),
            Method::OPTIONS => Ok(Route::TusOptions),
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

/// Percent-decodes the rest of a `/files/` path into a file name; a malformed escape is a
/// 400 (RFC 3986 §2.1), not part of the name.
pub fn decode_name(raw: &str) -> Result<String> {
    check_name(decode_utf8(raw.as_bytes(), "file name")?)
}

/// A file name is 1 to 1024 bytes of UTF-8 without control characters.
pub fn check_name(name: String) -> Result<String> {
    if name.is_empty() {
        return Err(NodeError::BadRequest("file name is empty".into()));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NodeError::BadRequest(format!(
            "file name is {} bytes; the limit is {MAX_NAME_LEN}",
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(NodeError::BadRequest(
            "file name contains a control character".into(),
        ));
    }
    Ok(name)
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

    fn route(method: Method, path: &str, query: Option<&str>) -> Result<Route> {
        parse(&method, path, query)
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
            Route::TusCreate
        );
        assert_eq!(
            route(Method::OPTIONS, "/uploads", None).unwrap(),
            Route::TusOptions
        );
        assert_eq!(
            route(Method::PATCH, "/uploads/ab12", None).unwrap(),
            Route::TusPatch("ab12".into())
        );
        assert_eq!(
            route(Method::HEAD, "/uploads/ab12", None).unwrap(),
            Route::TusHead("ab12".into())
        );
        assert_eq!(
            route(Method::DELETE, "/uploads/ab12", None).unwrap(),
            Route::TusDelete("ab12".into())
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
}
