//! Continuing a download on another node when its node breaks off mid-body.
//!
//! The client already has the response head (status, `Content-Length`, `ETag`), so the
//! balancer asks another node for exactly the bytes still owed, `Range: bytes=<next>-<last>`
//! (RFC 9110 §14.2), on condition that the file is still the one under way, `If-Match:
//! <etag>` (§13.1.1). Only a `206` whose `Content-Range` is exactly that range of the same
//! total and whose `ETag` is the same is spliced on; a `412` means the file changed, and the
//! client's connection is then cut (an error, never bytes of another revision).
//!
//! [`plan`] decides from the response head alone whether a download can be continued
//! (pure, unit-tested); [`Resume`] fetches the rest from the cluster.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode, Uri};
use hyper::body::Incoming;

use crate::cluster::Cluster;
use crate::conn::{self, Lease};
use crate::error::{caused_by_dead_peer, BodyError};
use crate::node::{Bypassed, InFlight, Node};
use crate::up_body::empty_request;

/// Continuations one response may go through; a file that breaks off this often is not a
/// node dying, and the client is better told.
const MAX_RESUMES: u32 = 8;
/// Nodes one continuation may ask before giving up.
const MAX_ASKED: usize = 4;

/// The bytes a response carries, as absolute offsets into the file, and the revision
/// they belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    etag: HeaderValue,
    /// Offset of the body's first byte in the file.
    first: u64,
    /// Offset of its last byte (inclusive).
    last: u64,
    /// The file's length (the `/total` of `Content-Range`).
    total: u64,
}

impl Plan {
    /// Body bytes the response owes the client in all.
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    /// The `Range` asking for what is left after `sent` body bytes.
    fn range(&self, sent: u64) -> String {
        format!("bytes={}-{}", self.first + sent, self.last)
    }

    /// Whether a continuation's head is exactly the rest of this response.
    fn check(&self, status: StatusCode, headers: &HeaderMap, sent: u64) -> Result<(), Refusal> {
        if status == StatusCode::PRECONDITION_FAILED {
            return Err(Refusal::Changed);
        }
        if status != StatusCode::PARTIAL_CONTENT {
            return Err(Refusal::Unusable(format!("answered {status}")));
        }
        if headers.get(header::ETAG) != Some(&self.etag) {
            return Err(Refusal::Changed);
        }
        let want = (self.first + sent, self.last, self.total);
        match content_range(headers) {
            Some(got) if got == want => Ok(()),
            got => Err(Refusal::Unusable(format!(
                "Content-Range {got:?} is not {want:?}"
            ))),
        }
    }
}

/// Why a node's answer cannot be spliced on.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// The file is no longer the revision under way.
    Changed,
    /// A wrong or unexpected answer (e.g. 503): another node may do better.
    Unusable(String),
}

/// The [`Plan`] of a response to `method`, or `None` when it cannot be continued: not a
/// GET, not 200/206, no strong `ETag`, no exact length, or a multipart range answer.
pub fn plan(method: &Method, status: StatusCode, headers: &HeaderMap) -> Option<Plan> {
    if method != Method::GET {
        return None;
    }
    let etag = headers.get(header::ETAG)?;
    if etag.as_bytes().starts_with(b"W/") || headers.contains_key(header::CONTENT_ENCODING) {
        return None;
    }
    let length: u64 = headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    let (first, last, total) = match status {
        StatusCode::OK => {
            let ranges = headers.get(header::ACCEPT_RANGES)?;
            if ranges != "bytes" || length == 0 {
                return None;
            }
            (0, length - 1, length)
        }
        StatusCode::PARTIAL_CONTENT => content_range(headers)?,
        _ => return None,
    };
    (last - first + 1 == length).then(|| Plan {
        etag: etag.clone(),
        first,
        last,
        total,
    })
}

/// `Content-Range: bytes FIRST-LAST/TOTAL` (RFC 9110 §14.4) as numbers.
fn content_range(headers: &HeaderMap) -> Option<(u64, u64, u64)> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let (span, total) = value.strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    let (first, last, total) = (first.parse().ok()?, last.parse().ok()?, total.parse().ok()?);
    (first <= last && last < total).then_some((first, last, total))
}

/// A continuation's body and what it holds while it streams.
pub struct Continued {
    pub body: Incoming,
    pub in_flight: InFlight,
    pub lease: Lease,
    pub node: Node,
}

/// The future of a continuation: the rest of the body from some node, or why not.
pub type Pending = Pin<Box<dyn Future<Output = Result<Continued, BodyError>> + Send>>;

/// What a download needs to be continued elsewhere.
#[derive(Debug)]
pub struct Resume {
    plan: Plan,
    cluster: Arc<Cluster>,
    uri: Uri,
    /// The forwarded request's headers without its own preconditions and range.
    headers: HeaderMap,
    /// The node the body comes from now.
    pub node: Node,
    /// Nodes that broke off this response.
    broke: Vec<String>,
    resumes: u32,
    request_id: HeaderValue,
}

impl Resume {
    pub fn new(
        plan: Plan,
        cluster: Arc<Cluster>,
        uri: Uri,
        mut headers: HeaderMap,
        node: Node,
        request_id: HeaderValue,
    ) -> Self {
        for name in [
            header::RANGE,
            header::IF_RANGE,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            header::IF_UNMODIFIED_SINCE,
        ] {
            headers.remove(name);
        }
        Self {
            plan,
            cluster,
            uri,
            headers,
            node,
            broke: Vec::new(),
            resumes: 0,
            request_id,
        }
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Notes that the current node broke off (taking it down at once when the cause says
    /// it is dead), so continuations prefer the others.
    pub fn broke_off(&mut self, error: &BodyError) {
        if let BodyError::Hyper(e) = error {
            if caused_by_dead_peer(e) {
                self.node.force_down(format!("download broke off: {e}"));
            }
        }
        if !self.broke.contains(&self.node.id) {
            self.broke.push(self.node.id.clone());
        }
    }

    /// Logs that this download is cut after all: the client's connection breaks off.
    pub fn give_up(&self, sent: u64, error: &BodyError) {
        tracing::warn!(
            id = self.request_id.to_str().unwrap_or_default(),
            node = %self.node.id,
            offset = self.plan.first + sent,
            "download cut: {error}"
        );
    }

    /// Starts fetching the bytes after the first `sent`; `None` once this response has
    /// been continued [`MAX_RESUMES`] times.
    pub fn start(&mut self, sent: u64) -> Option<Pending> {
        if self.resumes >= MAX_RESUMES || sent >= self.plan.len() {
            return None;
        }
        self.resumes += 1;
        Bypassed::count(&self.node.state.bypassed.continued);
        let mut headers = self.headers.clone();
        let range = HeaderValue::from_str(&self.plan.range(sent)).ok()?;
        headers.insert(header::RANGE, range);
        headers.insert(header::IF_MATCH, self.plan.etag.clone());
        tracing::info!(
            id = self.request_id.to_str().unwrap_or_default(),
            node = %self.node.id,
            offset = self.plan.first + sent,
            "continuing a download on another node"
        );
        let (cluster, uri, plan) = (
            Arc::clone(&self.cluster),
            self.uri.clone(),
            self.plan.clone(),
        );
        let broke = self.broke.clone();
        Some(Box::pin(fetch(cluster, uri, headers, plan, sent, broke)))
    }
}

/// Asks up to [`MAX_ASKED`] nodes for the rest: those that did not break off this response
/// first, then (a lone survivor may have had a passing fault) those that did.
async fn fetch(
    cluster: Arc<Cluster>,
    uri: Uri,
    headers: HeaderMap,
    plan: Plan,
    sent: u64,
    broke: Vec<String>,
) -> Result<Continued, BodyError> {
    let snapshot = cluster.snapshot();
    let cfg = &snapshot.config.balancer;
    let mut asked: Vec<usize> = Vec::new();
    let mut reasons = Vec::new();
    while asked.len() < MAX_ASKED {
        let fresh =
            |i: usize, n: &Node| n.state.is_up() && !asked.contains(&i) && !broke.contains(&n.id);
        let Some(i) = snapshot.pick(cluster.next_cursor(), fresh).or_else(|| {
            snapshot.pick(cluster.next_cursor(), |i, n| {
                n.state.is_up() && !asked.contains(&i)
            })
        }) else {
            break;
        };
        asked.push(i);
        let node = snapshot.nodes[i].clone();
        let in_flight = node.state.begin();
        let request = empty_request(&Method::GET, &uri, &headers);
        match conn::send(&node, request, &mut None, cfg).await {
            Ok((response, lease)) => {
                match plan.check(response.status(), response.headers(), sent) {
                    Ok(()) => {
                        return Ok(Continued {
                            body: response.into_body(),
                            in_flight,
                            lease,
                            node,
                        })
                    }
                    Err(Refusal::Changed) => return Err(BodyError::Changed),
                    Err(Refusal::Unusable(why)) => reasons.push(format!("{}: {why}", node.id)),
                }
            }
            Err(e) => {
                if e.dead_peer() {
                    node.force_down(e.to_string());
                }
                reasons.push(format!("{}: {e}", node.id));
            }
        }
    }
    if reasons.is_empty() {
        reasons.push("no node is up".into());
    }
    Err(BodyError::NotContinued(reasons.join("; ")))
}

#[cfg(test)]
#[path = "resume_tests.rs"]
mod tests;
