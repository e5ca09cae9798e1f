//! One node as the request path sees it: its `[[nodes]]` entry and its live
//! [`NodeState`] (up or down, in-flight count, idle keep-alives, last check), plus the
//! up/down flips and their log lines.
//!
//! The state is shared: a reload that keeps a node (same id and address) carries its
//! `NodeState` over (see [`crate::cluster`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::health::{Flip, RiseFall};
use crate::keepalive::IdleConns;

/// What the status page shows about a node's health.
#[derive(Debug, Clone, Default)]
pub struct Health {
    pub rise_fall: RiseFall,
    pub last_error: Option<String>,
    pub last_check_latency_ms: Option<u64>,
}

/// The live, shared part of a node: survives reloads that keep the node.
#[derive(Debug, Default)]
pub struct NodeState {
    /// Mirrors `health.rise_fall.is_up()` so selection reads no lock.
    up: AtomicBool,
    in_flight: AtomicUsize,
    /// First-byte timeouts in a row (see [`Node::late`]).
    late: AtomicU32,
    /// How often clients were spared this node's failures, since the balancer started.
    pub bypassed: Bypassed,
    /// How often it went down, by reason, since the balancer started.
    pub downs: Downs,
    /// Durations of its passed health checks.
    pub checks: CheckSeconds,
    health: Mutex<Health>,
    pub idle: IdleConns,
}

impl NodeState {
    pub fn new() -> Self {
        Self {
            up: AtomicBool::new(Health::default().rise_fall.is_up()),
            ..Self::default()
        }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts one request until the returned guard is dropped.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    pub fn health(&self) -> Health {
        self.lock_health().clone()
    }

    fn lock_health(&self) -> MutexGuard<'_, Health> {
        // Health is plain data: a panic elsewhere cannot leave it half-written.
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Counters of the failures of one node that clients never saw (`/_cluster`), since the
/// balancer started.
#[derive(Debug, Default)]
pub struct Bypassed {
    /// Requests this node sent no response head for within `first_byte_timeout`, sent to
    /// another node as well (hedged).
    pub hedged: AtomicU64,
    /// Downloads this node broke off or stalled, finished by another node.
    pub continued: AtomicU64,
    /// Times it was ejected for `eject_after` late answers in a row.
    pub ejected: AtomicU64,
    /// Requests it failed that were sent to another node (never sent, or replayed).
    pub retried: AtomicU64,
}

/// Why a node went from up to down, counted (ejections are [`Bypassed::ejected`]).
#[derive(Debug, Default)]
pub struct Downs {
    /// `fall` failed health checks in a row.
    pub checks: AtomicU64,
    /// A refused or reset connection (passive health).
    pub connection: AtomicU64,
}

/// Health-check durations in seconds: a histogram from 0.5 ms to 2.5 s.
#[derive(Debug, Clone)]
pub struct CheckSeconds(pub prometheus_client::metrics::histogram::Histogram);

impl Default for CheckSeconds {
    fn default() -> Self {
        let buckets = [
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ];
        CheckSeconds(prometheus_client::metrics::histogram::Histogram::new(
            buckets,
        ))
    }
}

impl Bypassed {
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// `(hedged, continued, ejected)`.
    pub fn read(&self) -> (u64, u64, u64) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        (get(&self.hedged), get(&self.continued), get(&self.ejected))
    }
}

/// One request counted against a node; dropping it ends the count.
#[derive(Debug)]
pub struct InFlight(Arc<NodeState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A `[[nodes]]` entry of the running config with its live state.
#[derive(Debug, Clone)]
pub struct Node {
    pub id: String,
    pub addr: SocketAddr,
    pub weight: u32,
    pub state: Arc<NodeState>,
}

impl Node {
    /// Records an active check; logs and returns a flip.
    pub fn observe_check(
        &self,
        result: Result<Duration, String>,
        rise: u32,
        fall: u32,
    ) -> Option<Flip> {
        let mut health = self.state.lock_health();
        let flip = health.rise_fall.observe(result.is_ok(), rise, fall);
        match result {
            Ok(latency) => {
                self.state.checks.0.observe(latency.as_secs_f64());
                health.last_check_latency_ms = Some(latency.as_millis() as u64);
                health.last_error = None;
            }
            Err(error) => health.last_error = Some(error),
        }
        self.state
            .up
            .store(health.rise_fall.is_up(), Ordering::Relaxed);
        let error = health.last_error.clone();
        drop(health);
        match flip {
            Some(Flip::Down) => Bypassed::count(&self.state.downs.checks),
            Some(Flip::Up) | None => {}
        }
        match flip {
            Some(Flip::Down) => tracing::warn!(node = %self.id, addr = %self.addr,
                error = error.as_deref().unwrap_or(""), "node down: failed {fall} health checks"),
            Some(Flip::Up) => tracing::info!(node = %self.id, addr = %self.addr,
                "node up: passed {rise} health checks"),
            None => {}
        }
        flip
    }

    /// Outlier detection: the node sent nothing within `first_byte_timeout`. After
    /// `eject_after` of these in a row (0: never) it is ejected, down at once and back only
    /// after `rise` good health checks, like a node that refused a connection.
    pub fn late(&self, eject_after: u32) {
        let late = self.state.late.fetch_add(1, Ordering::Relaxed) + 1;
        if eject_after > 0 && late >= eject_after {
            self.state.late.store(0, Ordering::Relaxed);
            Bypassed::count(&self.state.bypassed.ejected);
            self.down(format!(
                "ejected: {late} requests in a row got no first byte within first_byte_timeout"
            ));
        }
    }

    /// The node answered within `first_byte_timeout`: its run of late answers is over.
    pub fn on_time(&self) {
        if self.state.late.load(Ordering::Relaxed) != 0 {
            self.state.late.store(0, Ordering::Relaxed);
        }
    }

    /// Passive health: a refused or reset connection takes the node down at once.
    pub fn force_down(&self, error: String) -> Option<Flip> {
        let flip = self.down(error);
        if flip.is_some() {
            Bypassed::count(&self.state.downs.connection);
        }
        flip
    }

    fn down(&self, error: String) -> Option<Flip> {
        let mut health = self.state.lock_health();
        let flip = health.rise_fall.force_down();
        self.state.up.store(false, Ordering::Relaxed);
        if flip.is_some() {
            tracing::warn!(node = %self.id, addr = %self.addr, %error, "node down: {error}");
        }
        health.last_error = Some(error);
        flip
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_a() -> Node {
        Node {
            id: "a".into(),
            addr: SocketAddr::from(([127, 0, 0, 1], 8001)),
            weight: 1,
            state: Arc::new(NodeState::new()),
        }
    }

    #[test]
    fn checks_flip_a_node_and_record_errors() {
        let a = node_a();
        assert_eq!(a.observe_check(Err("503".into()), 2, 2), None);
        assert_eq!(
            a.observe_check(Err("refused".into()), 2, 2),
            Some(Flip::Down)
        );
        assert!(!a.state.is_up());
        assert_eq!(a.state.health().last_error.as_deref(), Some("refused"));
        a.observe_check(Ok(Duration::from_millis(3)), 2, 2);
        assert_eq!(
            a.observe_check(Ok(Duration::from_millis(4)), 2, 2),
            Some(Flip::Up)
        );
        let health = a.state.health();
        assert!(a.state.is_up());
        assert_eq!(health.last_error, None);
        assert_eq!(health.last_check_latency_ms, Some(4));
    }

    #[test]
    fn late_answers_in_a_row_eject_a_node() {
        let a = node_a();
        a.observe_check(Ok(Duration::from_millis(1)), 1, 1);
        a.late(3);
        a.late(3);
        a.on_time();
        a.late(3);
        a.late(3);
        assert!(a.state.is_up(), "an answer in time breaks the run");
        a.late(3);
        assert!(!a.state.is_up());
        let error = a.state.health().last_error.unwrap_or_default();
        assert!(error.starts_with("ejected: 3 requests"), "{error}");
        assert_eq!(a.state.bypassed.read(), (0, 0, 1));
        // back after `rise` good checks
        a.observe_check(Ok(Duration::from_millis(1)), 1, 1);
        assert!(a.state.is_up());
        for _ in 0..10 {
            a.late(0);
        }
        assert!(a.state.is_up(), "eject_after = 0 never ejects");
    }
}
