//! What every client request goes through around [`crate::proxy`]: it is observed
//! (counted and logged, [`speedbox_common::observe`]), its principal found, admitted or
//! refused by `[limits]` ([`crate::limits`]) with its bodies shaped ([`crate::shape`]),
//! and an answer given before its body's end is followed by a lingering close
//! ([`speedbox_common::linger`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request, Response};
use hyper::body::Incoming;
use speedbox_common::auth::{bearer, LiveAuth};
use speedbox_common::forwarded::client_addr;
use speedbox_common::linger;
use speedbox_common::metrics::RouteClass;
use speedbox_common::observe::{Observed, Observer};

use crate::cluster::Cluster;
use crate::down_body::DownBody;
use crate::error::ProxyError;
use crate::limits::{Admitted, Principal};
use crate::metrics::Metrics;
use crate::proxy;
use crate::shape::Shaped;

/// What every connection's service shares.
pub struct Shared {
    pub cluster: Arc<Cluster>,
    pub auth: Arc<LiveAuth>,
    /// The metrics, with `[limits]`' state.
    pub metrics: Arc<Metrics>,
    pub observer: Observer,
}

/// The answer a client gets: the proxy's, shaped, observed.
pub type ClientResponse = Response<Observed<Shaped<DownBody>>>;

/// One request of `client`, from its head to its answer's head.
pub async fn handle(
    shared: Arc<Shared>,
    client: SocketAddr,
    request: Request<Incoming>,
) -> Result<ClientResponse, Infallible> {
    let (request, exchange) = shared.observer.begin(request, client);
    let sub = principal_sub(&shared.auth, &request);
    if let Some(sub) = &sub {
        exchange.note_principal(sub);
    }
    let mut admitted = admit(&shared, client, sub, &request);
    let upload = admitted.as_mut().ok().and_then(|a| a.upload.take());
    let request = request.map(|b| Shaped::new(b, upload, None));
    // An answer given before the body's end must still reach a client that sends on.
    let (request, linger) = linger::hold(request);
    let mut response = match admitted {
        Ok(Admitted {
            download, transfer, ..
        }) => {
            let response = proxy::handle(&shared, client, request).await?;
            response.map(|b| Shaped::new(b, download, transfer))
        }
        Err(refused) => {
            drop(request);
            let response = ProxyError::Limited(refused).into_response::<DownBody>();
            response.map(|b| Shaped::new(b, None, None))
        }
    };
    linger.after(&mut response);
    Ok(exchange.respond(response))
}

/// The `sub` of the request's token when access control is on and the token is valid
/// (the node checks it again, and refuses what this lets through).
fn principal_sub<B>(auth: &LiveAuth, request: &Request<B>) -> Option<Arc<str>> {
    let auth = auth.current();
    if !auth.enabled() {
        return None;
    }
    let token = bearer(request.headers(), request.uri().query()).ok()??;
    auth.authenticate(Some(token)).ok()?.sub.map(Arc::from)
}

/// `[limits]` applied to a request of `sub` (or of the client's address).
fn admit<B>(
    shared: &Shared,
    client: SocketAddr,
    sub: Option<Arc<str>>,
    request: &Request<B>,
) -> Result<Admitted, crate::limits::Refused> {
    let snapshot = shared.cluster.snapshot();
    let config = &snapshot.config;
    if !config.limits.any() {
        return Ok(Admitted::default());
    }
    let principal = match sub {
        Some(sub) => Principal::Sub(sub),
        None => {
            let trusted = &config.balancer.trusted_proxies;
            Principal::Addr(client_addr(client.ip(), request.headers(), trusted))
        }
    };
    shared
        .metrics
        .limits
        .admit(&config.limits, principal, is_transfer(request))
}

/// Whether a request moves a file's bytes (counted against `concurrent_transfers`).
fn is_transfer<B>(request: &Request<B>) -> bool {
    let moves_bytes = matches!(
        *request.method(),
        Method::GET | Method::PUT | Method::POST | Method::PATCH
    );
    let route = RouteClass::of(request.uri().path());
    moves_bytes
        && matches!(
            route,
            RouteClass::File | RouteClass::Upload | RouteClass::Tus
        )
}
