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
fn auth_administration() {
    assert_eq!(
        route(Method::POST, "/_auth/revoke", None).unwrap(),
        Route::Revoke
    );
    assert_eq!(
        route(Method::GET, "/_auth/revoked", None).unwrap(),
        Route::Revoked
    );
    assert_eq!(
        route(Method::GET, "/_auth/revoke", None)
            .unwrap_err()
            .status(),
        405
    );
    assert_eq!(
        route(Method::POST, "/_auth/revoked", None)
            .unwrap_err()
            .status(),
        405
    );
    assert_eq!(
        route(Method::POST, "/_auth/tokens", None).unwrap(),
        Route::MintToken
    );
    assert_eq!(
        route(Method::GET, "/_auth/tokens", None)
            .unwrap_err()
            .status(),
        405
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

#[test]
fn media_routes_decode_names_and_take_only_reads() {
    assert_eq!(
        route(Method::GET, "/media/videos/a%20b.mp4", None).unwrap(),
        Route::Media("videos/a b.mp4".into())
    );
    assert_eq!(
        route(Method::HEAD, "/media/x.mp4", None).unwrap(),
        Route::Media("x.mp4".into())
    );
    assert_eq!(
        route(Method::PUT, "/media/x.mp4", None)
            .unwrap_err()
            .status(),
        405
    );
    assert_eq!(
        route(Method::GET, "/media/%ZZ", None).unwrap_err().status(),
        400
    );
    assert_eq!(
        route(Method::GET, "/media/", None).unwrap_err().status(),
        400
    );
}
