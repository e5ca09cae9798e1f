//! Tests of [`super`]: redaction, counting, 499.

use super::*;

#[test]
fn credentials_in_urls_are_redacted() {
    let cases = [
        ("/files/a.txt", "/files/a.txt"),
        ("/files/a.txt?x=1", "/files/a.txt?x=1"),
        (
            "/files/a?token=eyJ.abc.def&x=1",
            "/files/a?token=REDACTED&x=1",
        ),
        ("/files/a?x=1&sig=eyJ.s.t", "/files/a?x=1&sig=REDACTED"),
        ("/s/eyJ.s.t/files/v/a.ts", "/s/REDACTED/files/v/a.ts"),
        (
            "/s/eyJ.s.t/files/a?token=t",
            "/s/REDACTED/files/a?token=REDACTED",
        ),
        ("/files/a?mytoken=1", "/files/a?mytoken=1"),
    ];
    for (raw, logged) in cases {
        let uri: Uri = raw.parse().unwrap();
        assert_eq!(redact(&uri), logged, "{raw}");
    }
}

#[tokio::test]
async fn a_request_is_counted_once_with_its_bytes_when_its_answer_ends() {
    use http_body_util::{BodyExt, Full};
    let (mut registry, http) = crate::metrics::registry();
    let _ = &mut registry;
    let observer = Observer::new(Arc::clone(&http));
    let request = Request::put("/files/a")
        .body(Full::new(bytes::Bytes::from_static(b"hello")))
        .unwrap();
    let client: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let (request, exchange) = observer.begin(request, client);
    let route = http.route(RouteClass::File);
    assert_eq!(route.in_flight.get(), 1);
    let got = request.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(got.len(), 5);
    let answer = Response::builder()
        .status(201)
        .body(Full::new(bytes::Bytes::from_static(b"ok!")))
        .unwrap();
    let answer = exchange.respond(answer);
    let sent = answer.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(sent.len(), 3);
    let labels = RequestLabels {
        route: RouteClass::File,
        method: MethodLabel::of(&Method::PUT),
        status: StatusClass::of(StatusCode::CREATED),
    };
    assert_eq!(http.requests.get_or_create(&labels).get(), 1);
    assert_eq!(route.received.get(), 5);
    assert_eq!(route.sent.get(), 3);
    assert_eq!(route.in_flight.get(), 0);
}

#[test]
fn a_client_gone_before_the_answer_is_counted_as_499() {
    let (_registry, http) = crate::metrics::registry();
    let observer = Observer::new(Arc::clone(&http));
    let (request, exchange) = observer.begin(
        Request::get("/files/a").body(()).unwrap(),
        "127.0.0.1:9".parse().unwrap(),
    );
    drop(exchange);
    drop(request);
    let labels = RequestLabels {
        route: RouteClass::File,
        method: MethodLabel::of(&Method::GET),
        status: StatusClass::of(StatusCode::from_u16(CLIENT_CLOSED).unwrap()),
    };
    assert_eq!(http.requests.get_or_create(&labels).get(), 1);
}
