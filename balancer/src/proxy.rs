//! THE request path: pick a node, stream the request to it, stream its response back.
//!
//! Retries follow one rule: a request is replayed on another node only when it cannot
//! have been acted on twice. A request that never left (connect refused, or a keep-alive
//! connection that closed before the request was written) goes to another node whatever
//! its method, with an upload body still untouched. A body-less GET/HEAD/DELETE/OPTIONS
//! is also replayed when the node dies before its response head. An upload whose body
//! has started is never replayed; a `PUT` of a file is continued on another node from
//! where the dead one durably stood ([`crate::protect`]). An upload that expects
//! 100-continue and whose node died before asking for the body still has it untouched
//! (see [`crate::expect`]), so a PUT is replayed then too.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::header::HeaderValue;
use http::{Method, Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use speedbox_common::config::BalancerConfig;
use speedbox_common::headers::X_REQUEST_ID;
use speedbox_common::request_id::request_id;

use crate::cluster::Cluster;
use crate::conn::{self, SendError};
use crate::down_body::{DownBody, ResponseStream};
use crate::error::{caused_by_dead_peer, ProxyError};
use crate::expect::{AnsweredFirst, Gate};
use crate::hedge;
use crate::idle::IdleTimer;
use crate::metrics;
use crate::node::{Bypassed, InFlight, Node};
use crate::protect::{self, Protection};
use crate::resume::{self, Resume};
use crate::rewrite::{prepare_request, strip_hop_by_hop};
use crate::service::Shared;
use crate::up_body::{empty_request, RequestStream, UpBody};
use crate::ClientBody;
use crate::{page, status};

/// Nodes one request may be offered to before the client gets an error.
const MAX_ATTEMPTS: usize = 4;

/// The hyper service: every request of every client connection comes through here.
pub async fn handle(
    shared: &Shared,
    client: SocketAddr,
    request: Request<ClientBody>,
) -> Result<Response<DownBody>, Infallible> {
    let Shared {
        cluster,
        auth,
        metrics,
        ..
    } = shared;
    let request_id = request_id(request.headers());
    let mut response = if request.uri().path() == status::PATH {
        status::respond(cluster, &auth.current(), &request)
    } else if request.uri().path() == speedbox_common::metrics::PATH {
        metrics::respond(metrics, &auth.current(), &request)
    } else if page::serves(request.uri().path()) {
        page::respond(request.method(), request.uri().path())
    } else {
        let method = request.method().clone();
        forward(cluster, client, request, &request_id)
            .await
            .unwrap_or_else(|error| {
                error.log(request_id.to_str().unwrap_or_default(), &method);
                error.into_response()
            })
    };
    response.headers_mut().insert(X_REQUEST_ID, request_id);
    Ok(response)
}

async fn forward(
    cluster: &Arc<Cluster>,
    client: SocketAddr,
    request: Request<ClientBody>,
    request_id: &HeaderValue,
) -> Result<Response<DownBody>, ProxyError> {
    let snapshot = cluster.snapshot();
    let cfg = &snapshot.config.balancer;
    let (mut parts, body) = request.into_parts();
    let expect_continue =
        prepare_request(&mut parts, client.ip(), request_id, &cfg.trusted_proxies);
    let method = parts.method.clone();

    let (mut body, mut body_done, mut gate) = if body.is_end_stream() {
        (UpBody::Empty, None, None)
    } else if expect_continue {
        let (body, done, gate) = gated(body, cfg);
        (body, Some(done), Some(gate))
    } else {
        let (stream, done) = RequestStream::new(body, IdleTimer::new(cfg.idle_timeout()));
        (UpBody::Stream(stream), Some(done), None)
    };
    let mut protection = None;
    if protect::applies(&parts.method, &parts.uri, &body) {
        body = match Protection::start(cluster, &snapshot.config, &mut parts, body, gate.clone()) {
            Ok((protected, first, done)) => {
                protection = Some(protected);
                body_done = Some(done);
                first
            }
            Err(body) => body,
        };
    }
    // A request can be rebuilt after the node took it and died when it has no body and
    // is idempotent, or when its body was never asked for and it is a PUT (a protected
    // upload is continued instead, whatever the node had taken).
    let replay = (protection.is_none()
        && ((gate.is_some() && parts.method == Method::PUT)
            || (body_done.is_none() && is_idempotent(&parts.method))))
    .then(|| {
        (
            parts.method.clone(),
            parts.uri.clone(),
            parts.headers.clone(),
        )
    });
    let mut request = Request::from_parts(parts, body);
    if let Some(gate) = &gate {
        gate.watch(&mut request);
    }

    let mut failed: Vec<usize> = Vec::new();
    let mut reasons: Vec<String> = Vec::new();
    let mut sent_error: Option<ProxyError> = None;
    let hedge_after = cfg
        .first_byte_timeout()
        .filter(|_| replay.is_some() && body_done.is_none() && hedge::may_hedge(&method));
    while failed.len() < MAX_ATTEMPTS {
        let accept = |i: usize, node: &Node| node.state.is_up() && !failed.contains(&i);
        let Some(picked) = snapshot.pick(cluster.next_cursor(), accept) else {
            break;
        };
        let outcome = match (hedge_after, &replay) {
            (Some(timeout), Some(parts)) => {
                hedge::send(cluster, &snapshot, picked, request, parts, &failed, timeout).await
            }
            _ => {
                let node = &snapshot.nodes[picked];
                let in_flight = node.state.begin();
                let result = match &protection {
                    Some(protection) => protection.send(node, request, &mut body_done, cfg).await,
                    None => conn::send(node, request, &mut body_done, cfg).await,
                };
                hedge::Outcome {
                    index: picked,
                    in_flight,
                    result,
                    also_failed: None,
                }
            }
        };
        let i = outcome.index;
        let node = &snapshot.nodes[i];
        let (unsent, reason, dead) = match outcome.result {
            Ok((response, lease)) => {
                let answered_first = gate.as_ref().and_then(AnsweredFirst::check);
                let mut body = prepare_response(
                    response.map(|b| (b, outcome.in_flight, lease, answered_first)),
                    cfg,
                );
                if let (Some((_, uri, headers)), Some(plan)) =
                    (replay, resume::plan(&method, body.status(), body.headers()))
                {
                    let resume = Resume::new(
                        plan,
                        Arc::clone(cluster),
                        uri,
                        headers,
                        node.clone(),
                        request_id.clone(),
                    );
                    body = body
                        .map(|b| b.resumable(resume, cfg.first_byte_timeout(), cfg.eject_after));
                }
                return Ok(body.map(DownBody::Upstream));
            }
            Err(SendError::Timeout(timeout)) => {
                return Err(ProxyError::ResponseTimeout {
                    node: node.id.clone(),
                    timeout,
                })
            }
            Err(SendError::Connect { request, error }) => {
                (Some(request), error_chain(&error), error.marks_down())
            }
            Err(SendError::Unsent { request, error }) => {
                let dead = caused_by_dead_peer(&error);
                (Some(request), error_chain(&error), dead)
            }
            Err(SendError::Sent(error)) => (None, error_chain(&error), caused_by_dead_peer(&error)),
            Err(stalled @ SendError::Stalled(_)) => (None, stalled.to_string(), false),
        };
        if let Some(hedge) = outcome.also_failed {
            failed.push(hedge);
        }
        if dead {
            node.force_down(reason.clone());
        }
        if let (None, Some(protection)) = (&unsent, &protection) {
            failed.push(i);
            let (response, in_flight, lease, _) = protection
                .continue_upload(cluster, &snapshot, &mut failed, cfg, &reason)
                .await?;
            let response = response.map(|b| (b, in_flight, lease, None));
            return Ok(prepare_response(response, cfg).map(DownBody::Upstream));
        }
        let upstream = || ProxyError::Upstream {
            node: node.id.clone(),
            reason: reason.clone(),
        };
        request = match (unsent, &replay) {
            (Some(request), _) => *request,
            (None, Some(parts)) => {
                let body = match gate.take().map(|g| (g.withdraw(), g)) {
                    None => UpBody::Empty,
                    Some((Some(body), old)) => {
                        old.close();
                        let (body, done, new) = gated(body, cfg);
                        (body_done, gate) = (Some(done), Some(new));
                        body
                    }
                    // the node had started taking the body
                    Some((None, _)) => return Err(upstream()),
                };
                sent_error = Some(upstream());
                let mut request = empty_request(&parts.0, &parts.1, &parts.2).map(|_| body);
                if let Some(gate) = &gate {
                    gate.watch(&mut request);
                }
                request
            }
            (None, None) => return Err(upstream()),
        };
        tracing::info!(
            id = request_id.to_str().unwrap_or_default(),
            method = %request.method(),
            node = %node.id,
            "trying another node: {reason}"
        );
        reasons.push(format!("{}: {reason}", node.id));
        Bypassed::count(&node.state.bypassed.retried);
        failed.push(i);
    }
    Err(match sent_error {
        Some(error) => error,
        None if reasons.is_empty() => ProxyError::NoHealthyNode,
        None => ProxyError::Unreachable(reasons.join("; ")),
    })
}

/// An error with its causes: hyper's own messages ("error writing a body to connection")
/// leave out the part that says what happened.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let next = e.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = e.source();
    }
    text
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS
    )
}

/// A client body behind an `Expect: 100-continue` gate.
fn gated(
    body: ClientBody,
    cfg: &BalancerConfig,
) -> (UpBody, tokio::sync::oneshot::Receiver<()>, Arc<Gate>) {
    let size = body.size_hint();
    let gate = Gate::new(body);
    let idle = IdleTimer::new(cfg.idle_timeout());
    let (stream, done) = RequestStream::gated(Arc::clone(&gate), size, idle);
    (UpBody::Stream(stream), done, gate)
}

/// The node's response with hop-by-hop headers removed and its body wrapped to stream
/// back under the idle timer, holding its in-flight count and connection lease.
fn prepare_response(
    response: Response<(Incoming, InFlight, conn::Lease, Option<AnsweredFirst>)>,
    cfg: &BalancerConfig,
) -> Response<ResponseStream> {
    let (mut parts, (body, in_flight, lease, answered_first)) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let idle = IdleTimer::new(cfg.idle_timeout());
    let body = ResponseStream::new(body, idle, in_flight, lease, answered_first);
    Response::from_parts(parts, body)
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
