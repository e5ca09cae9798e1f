//! Prometheus metrics shared by the balancer and every node: the HTTP request families
//! ([`HttpMetrics`]), the process's own ([`process`]), and the text exposition of a
//! registry ([`encode`]).
//!
//! Built on `prometheus-client`, the Prometheus project's own Rust client: typed label
//! sets, no global registry (each process and each in-process test server has its own),
//! and the OpenMetrics text format Prometheus scrapes natively. Names follow Prometheus'
//! conventions: a `speedbox_` prefix, base units (seconds, bytes) in the name, `_total` on
//! counters (added by the encoder). Labels only take values from small closed sets
//! ([`RouteClass`], [`MethodLabel`], [`StatusClass`], node ids from `cluster.toml`), so no
//! request can grow a family.

pub mod process;

use std::sync::Arc;

use http::{Method, StatusCode};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// The content type of [`encode`]'s output (OpenMetrics 1.0 text).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The path both binaries serve their metrics at.
pub const PATH: &str = "/metrics";

/// Histogram buckets for request durations, in seconds: 0.5 ms (a small GET from cache)
/// to 5 minutes (a multi-GB transfer).
pub const DURATION_BUCKETS: [f64; 17] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

/// A new histogram over [`DURATION_BUCKETS`] (the constructor a [`Family`] needs).
pub fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// A family of duration histograms by label set `S`.
pub type Durations<S> = Family<S, Histogram, fn() -> Histogram>;

/// A new [`Durations`].
pub fn durations<S: Clone + std::hash::Hash + Eq>() -> Durations<S> {
    Family::new_with_constructor(duration_histogram as fn() -> Histogram)
}

/// The answer to `GET /metrics`: `registry`'s text with its content type.
pub fn response(registry: &Registry) -> http::Response<http_body_util::Full<bytes::Bytes>> {
    let mut response = http::Response::new(http_body_util::Full::from(encode(registry)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(CONTENT_TYPE),
    );
    response
}

/// The registry text of `registry` (OpenMetrics, ending in `# EOF`).
pub fn encode(registry: &Registry) -> String {
    let mut text = String::with_capacity(16 * 1024);
    // Writing into a String cannot fail; a metric's own encoder failing would be a bug.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, registry) {
        tracing::error!("encoding metrics: {e}");
    }
    text
}

/// What a request does, by its method and path: the `route` label.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
#[repr(usize)]
pub enum RouteClass {
    /// One file by name: `GET`/`HEAD`/`PUT`/`DELETE /files/{name}`, `/download`, and
    /// signed links.
    File,
    /// `GET /files` with or without `?prefix=`.
    List,
    /// A form upload: `POST /upload`.
    Upload,
    /// The tus 1.0 endpoint, `/uploads/…`.
    Tus,
    /// A video job's state: `GET /media/{name}`.
    Media,
    /// The browser page and its assets.
    Page,
    /// Health, status, metrics, tokens, links and revocations.
    Admin,
}

impl RouteClass {
    /// Every class, in [`RouteClass::index`] order.
    pub const ALL: [RouteClass; 7] = [
        RouteClass::File,
        RouteClass::List,
        RouteClass::Upload,
        RouteClass::Tus,
        RouteClass::Media,
        RouteClass::Page,
        RouteClass::Admin,
    ];

    /// The class's place in [`RouteClass::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::File => "file",
            RouteClass::List => "list",
            RouteClass::Upload => "upload",
            RouteClass::Tus => "tus",
            RouteClass::Media => "media",
            RouteClass::Page => "page",
            RouteClass::Admin => "admin",
        }
    }

    /// The class of a request for `path` (query string excluded).
    pub fn of(path: &str) -> RouteClass {
        if path.starts_with("/s/") {
            return RouteClass::File;
        }
        match path.strip_prefix("/files") {
            Some("" | "/") => RouteClass::List,
            Some(rest) if rest.starts_with('/') => RouteClass::File,
            _ if path == "/download" => RouteClass::File,
            _ if path == "/upload" => RouteClass::Upload,
            _ if path == "/uploads" || path.starts_with("/uploads/") => RouteClass::Tus,
            _ if path.starts_with("/media/") => RouteClass::Media,
            _ if path == "/" => RouteClass::Page,
            _ => RouteClass::Admin,
        }
    }
}

impl EncodeLabelValue for RouteClass {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        self.as_str().encode(encoder)
    }
}

/// The `method` label: the methods the API has, every other one as `other`.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub struct MethodLabel(&'static str);

impl MethodLabel {
    pub fn of(method: &Method) -> MethodLabel {
        MethodLabel(match *method {
            Method::GET => "GET",
            Method::HEAD => "HEAD",
            Method::PUT => "PUT",
            Method::POST => "POST",
            Method::PATCH => "PATCH",
            Method::DELETE => "DELETE",
            Method::OPTIONS => "OPTIONS",
            _ => "other",
        })
    }
}

impl EncodeLabelValue for MethodLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }
}

/// The `status` label: the class of a status code (`2xx`…`5xx`).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub struct StatusClass(&'static str);

impl StatusClass {
    pub fn of(status: StatusCode) -> StatusClass {
        StatusClass(match status.as_u16() {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        })
    }
}

impl EncodeLabelValue for StatusClass {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }
}

/// Labels of `speedbox_http_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: RouteClass,
    pub method: MethodLabel,
    pub status: StatusClass,
}

/// Labels of the per-route HTTP families.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: RouteClass,
}

/// The HTTP request families, the same on the balancer and on every node (a scrape's
/// `job` label tells them apart). A request is counted when its answer has been sent (or
/// the client went away), so `requests_total` and the byte counters agree.
///
/// The per-route families are registered as:
/// - `speedbox_http_request_duration_seconds{route}`: arrival to the answer's last byte;
/// - `speedbox_http_first_byte_seconds{route}`: to the answer's head;
/// - `speedbox_http_received_bytes_total{route}`, `speedbox_http_sent_bytes_total{route}`:
///   request and answer body bytes;
/// - `speedbox_http_requests_in_flight{route}`.
///
/// A request updates its route's series ([`HttpMetrics::route`]) without a label lookup.
#[derive(Debug)]
pub struct HttpMetrics {
    /// `speedbox_http_requests_total{route, method, status}`.
    pub requests: Family<RequestLabels, Counter>,
    /// Each route's series, indexed by [`RouteClass::index`].
    routes: Vec<RouteSeries>,
}

/// One route's series of the per-route families (handles to the registered values).
#[derive(Debug, Clone)]
pub struct RouteSeries {
    pub duration: Histogram,
    pub first_byte: Histogram,
    pub received: Counter,
    pub sent: Counter,
    pub in_flight: Gauge,
}

impl HttpMetrics {
    /// New families, registered in `registry` (which should have the `speedbox` prefix).
    pub fn register(registry: &mut Registry) -> Arc<HttpMetrics> {
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = durations::<RouteLabels>();
        let first_byte = durations::<RouteLabels>();
        let received = Family::<RouteLabels, Counter>::default();
        let sent = Family::<RouteLabels, Counter>::default();
        let in_flight = Family::<RouteLabels, Gauge>::default();
        // Every route's series exist from the start (at 0, as Prometheus advises for
        // known label values), and each request finds its own by index.
        let routes = RouteClass::ALL
            .iter()
            .map(|&route| {
                let labels = RouteLabels { route };
                RouteSeries {
                    duration: duration.get_or_create_owned(&labels),
                    first_byte: first_byte.get_or_create_owned(&labels),
                    received: received.get_or_create_owned(&labels),
                    sent: sent.get_or_create_owned(&labels),
                    in_flight: in_flight.get_or_create_owned(&labels),
                }
            })
            .collect();
        let http = registry.sub_registry_with_prefix("http");
        http.register(
            "requests",
            "HTTP requests answered, by route class, method and status class",
            requests.clone(),
        );
        http.register_with_unit(
            "request_duration",
            "From a request's arrival to the end of its answer",
            Unit::Seconds,
            duration,
        );
        http.register_with_unit(
            "first_byte",
            "From a request's arrival to its answer's head (time to first byte)",
            Unit::Seconds,
            first_byte,
        );
        http.register_with_unit(
            "received",
            "Request body bytes received",
            Unit::Bytes,
            received,
        );
        http.register_with_unit("sent", "Answer body bytes sent", Unit::Bytes, sent);
        http.register(
            "requests_in_flight",
            "Requests received and not yet fully answered",
            in_flight,
        );
        Arc::new(HttpMetrics { requests, routes })
    }

    /// The series of `route`.
    pub fn route(&self, route: RouteClass) -> &RouteSeries {
        &self.routes[route.index()]
    }
}

/// A registry with the process collector (the standard unprefixed `process_` names) and
/// the HTTP families; a binary adds its own under [`speedbox`].
pub fn registry() -> (Registry, Arc<HttpMetrics>) {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(process::ProcessCollector));
    let http = HttpMetrics::register(speedbox(&mut registry));
    (registry, http)
}

/// The `speedbox_` part of `registry`.
pub fn speedbox(registry: &mut Registry) -> &mut Registry {
    registry.sub_registry_with_prefix("speedbox")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_classed_by_path() {
        let cases = [
            ("/files/a/b.mp4", RouteClass::File),
            ("/s/abc.def/files/x", RouteClass::File),
            ("/files", RouteClass::List),
            ("/files/", RouteClass::List),
            ("/filesx", RouteClass::Admin),
            ("/upload", RouteClass::Upload),
            ("/download", RouteClass::File),
            ("/uploads", RouteClass::Tus),
            ("/uploads/abc", RouteClass::Tus),
            ("/uploadsx", RouteClass::Admin),
            ("/media/a/b.mp4", RouteClass::Media),
            ("/", RouteClass::Page),
            ("/metrics", RouteClass::Admin),
            ("/_cluster", RouteClass::Admin),
            ("/healthz", RouteClass::Admin),
        ];
        for (path, class) in cases {
            assert_eq!(RouteClass::of(path), class, "{path}");
        }
    }

    #[test]
    fn the_exposition_names_follow_prometheus_conventions() {
        let (registry, http) = registry();
        let labels = RequestLabels {
            route: RouteClass::File,
            method: MethodLabel::of(&Method::GET),
            status: StatusClass::of(StatusCode::NOT_FOUND),
        };
        http.requests.get_or_create(&labels).inc();
        http.route(RouteClass::File).sent.inc_by(5);
        http.route(RouteClass::File).duration.observe(0.002);
        let text = encode(&registry);
        for line in [
            "speedbox_http_requests_total{route=\"file\",method=\"GET\",status=\"4xx\"} 1",
            "speedbox_http_sent_bytes_total{route=\"file\"} 5",
            "speedbox_http_request_duration_seconds_bucket{le=\"0.0025\",route=\"file\"} 1",
            "# TYPE process_resident_memory_bytes gauge",
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
