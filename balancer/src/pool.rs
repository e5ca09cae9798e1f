//! The cluster as the request path sees it: one immutable [`Snapshot`] of the nodes, each
//! with its live health and counters, swapped atomically on reload, plus the pure
//! [`select`] function that picks a node.
//!
//! Nodes and their health live in the same snapshot, so a request never sees a node list
//! from one config and health from another. A node that survives a reload (same id and
//! address) carries its [`NodeState`] over, keeping health, in-flight count and idle
//! connections (pingora's `do_update`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use speedbox_common::config::{Algorithm, ClusterConfig};
use tokio::sync::Notify;

use crate::conn::IdleConns;
use crate::health::{Flip, RiseFall};

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
            Some(Flip::Down) => tracing::warn!(node = %self.id, addr = %self.addr,
                error = error.as_deref().unwrap_or(""), "node down: failed {fall} health checks"),
            Some(Flip::Up) => tracing::info!(node = %self.id, addr = %self.addr,
                "node up: passed {rise} health checks"),
            None => {}
        }
        flip
    }

    /// Passive health: a refused or reset connection takes the node down at once.
    pub fn force_down(&self, error: String) -> Option<Flip> {
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

/// How a reload changed the node list, by id.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Diff {
    pub added: Vec<String>,
    pub kept: Vec<String>,
    pub removed: Vec<String>,
}

/// Everything a request needs to know about the cluster, immutable once published.
#[derive(Debug)]
pub struct Snapshot {
    pub config: ClusterConfig,
    pub loaded_at: SystemTime,
    /// The nodes new requests may go to, in config order.
    pub nodes: Vec<Node>,
    /// Removed nodes that still have transfers in flight; they get no new requests.
    pub draining: Vec<Node>,
    /// Node indexes in smooth weighted round-robin order, one entry per unit of weight.
    rotation: Vec<usize>,
}

impl Snapshot {
    pub fn new(config: ClusterConfig, loaded_at: SystemTime) -> Self {
        Self::empty(config, loaded_at)
            .reload(ClusterConfig::clone, loaded_at)
            .0
    }

    fn empty(config: ClusterConfig, loaded_at: SystemTime) -> Self {
        Self {
            config,
            loaded_at,
            nodes: Vec::new(),
            draining: Vec::new(),
            rotation: Vec::new(),
        }
    }

    /// The snapshot for `new_config`, keeping the state of every node with the same id
    /// and address (also one that was draining and comes back).
    fn reload(
        &self,
        new_config: impl FnOnce(&ClusterConfig) -> ClusterConfig,
        loaded_at: SystemTime,
    ) -> (Snapshot, Diff) {
        let config = new_config(&self.config);
        let mut diff = Diff::default();
        let mut old: Vec<&Node> = self.nodes.iter().chain(&self.draining).collect();
        let mut nodes = Vec::with_capacity(config.nodes.len());
        for entry in &config.nodes {
            let found = old
                .iter()
                .position(|n| n.id == entry.id && n.addr == entry.listen);
            let state = match found {
                Some(i) => {
                    diff.kept.push(entry.id.clone());
                    Arc::clone(&old.remove(i).state)
                }
                None => {
                    diff.added.push(entry.id.clone());
                    Arc::new(NodeState::new())
                }
            };
            nodes.push(Node {
                id: entry.id.clone(),
                addr: entry.listen,
                weight: entry.weight,
                state,
            });
        }
        let mut draining = Vec::new();
        for gone in old {
            if self
                .nodes
                .iter()
                .any(|n| Arc::ptr_eq(&n.state, &gone.state))
            {
                diff.removed.push(gone.id.clone());
            }
            // Idle keep-alives of a removed node are of no further use.
            gone.state.idle.clear();
            if gone.state.in_flight() > 0 {
                draining.push(gone.clone());
            }
        }
        let weights: Vec<u32> = nodes.iter().map(|n| n.weight).collect();
        let snapshot = Snapshot {
            config,
            loaded_at,
            rotation: rotation(&weights),
            nodes,
            draining,
        };
        (snapshot, diff)
    }

    /// This snapshot minus draining nodes that have finished, if there are any.
    fn without_drained(&self) -> Option<Snapshot> {
        if self.draining.iter().all(|n| n.state.in_flight() > 0) {
            return None;
        }
        Some(Snapshot {
            config: self.config.clone(),
            loaded_at: self.loaded_at,
            nodes: self.nodes.clone(),
            draining: self
                .draining
                .iter()
                .filter(|n| n.state.in_flight() > 0)
                .cloned()
                .collect(),
            rotation: self.rotation.clone(),
        })
    }

    /// Picks a node for a request among those `accept` allows, by the configured algorithm.
    pub fn pick(&self, cursor: usize, accept: impl Fn(usize, &Node) -> bool) -> Option<usize> {
        select(
            self.config.balancer.algorithm,
            &self.rotation,
            self.nodes.len(),
            cursor,
            |i| {
                let node = &self.nodes[i];
                accept(i, node).then(|| Load {
                    in_flight: node.state.in_flight() as u64,
                    weight: node.weight,
                })
            },
        )
    }
}

/// A candidate node's current load, as [`select`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    pub in_flight: u64,
    pub weight: u32,
}

impl Load {
    /// `a.in_flight / a.weight` against `b`'s, without division.
    fn cmp_relative(self, other: Load) -> std::cmp::Ordering {
        (self.in_flight * u64::from(other.weight)).cmp(&(other.in_flight * u64::from(self.weight)))
    }
}

/// Picks a node index (pingora's `select_with`): `load(i)` is `None` for a node that may
/// not take this request (down, or already tried by this request).
///
/// Round robin walks `rotation` from `cursor`. Least-outstanding takes the lowest
/// in-flight relative to weight; ties go to the first tied node in `rotation` from
/// `cursor`, so an idle cluster still spreads requests by weight.
pub fn select(
    algorithm: Algorithm,
    rotation: &[usize],
    node_count: usize,
    cursor: usize,
    load: impl Fn(usize) -> Option<Load>,
) -> Option<usize> {
    if rotation.is_empty() {
        return None;
    }
    let start = cursor % rotation.len();
    let in_turn = || (0..rotation.len()).map(move |k| rotation[(start + k) % rotation.len()]);
    match algorithm {
        Algorithm::RoundRobin => in_turn().find(|&i| load(i).is_some()),
        Algorithm::LeastOutstanding => {
            let mut best: Option<(usize, Load)> = None;
            let mut tied = 0;
            for i in 0..node_count {
                let Some(l) = load(i) else { continue };
                match best.map(|(_, b)| l.cmp_relative(b)) {
                    None | Some(std::cmp::Ordering::Less) => {
                        best = Some((i, l));
                        tied = 1;
                    }
                    Some(std::cmp::Ordering::Equal) => tied += 1,
                    Some(std::cmp::Ordering::Greater) => {}
                }
            }
            let (first, best) = best?;
            if tied == 1 {
                return Some(first);
            }
            // Loads move under our feet; if no tied node is found again, the first will do.
            let tie = in_turn().find(|&i| load(i).is_some_and(|l| l.cmp_relative(best).is_eq()));
            Some(tie.unwrap_or(first))
        }
    }
}

/// Smooth weighted round robin (nginx): weights 5,1,1 give `a a b a c a a`, not
/// `a a a a a b c`. Weights are divided by their common divisor first to keep it short.
pub fn rotation(weights: &[u32]) -> Vec<usize> {
    let divisor = weights.iter().copied().fold(0, gcd).max(1);
    let weights: Vec<i64> = weights.iter().map(|&w| i64::from(w / divisor)).collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut order = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, w) in weights.iter().enumerate() {
            current[i] += w;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        order.push(best);
    }
    order
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The balancer's shared state: the current snapshot and what changes it.
#[derive(Debug)]
pub struct Pool {
    snapshot: ArcSwap<Snapshot>,
    cursor: AtomicUsize,
    /// Serialises writers (reload, pruning) so one never overwrites the other's swap.
    writer: Mutex<()>,
    pub config_path: PathBuf,
    /// Asks the probe loop for a round now (after a reload added nodes).
    pub probe_now: Notify,
}

impl Pool {
    pub fn new(config_path: PathBuf, config: ClusterConfig) -> Self {
        Self {
            snapshot: ArcSwap::from_pointee(Snapshot::new(config, SystemTime::now())),
            cursor: AtomicUsize::new(0),
            writer: Mutex::new(()),
            config_path,
            probe_now: Notify::new(),
        }
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// A new starting point for each pick, so ties and round robin rotate.
    pub fn next_cursor(&self) -> usize {
        self.cursor.fetch_add(1, Ordering::Relaxed)
    }

    /// Publishes `config`, keeping the state of surviving nodes.
    pub fn apply(&self, config: ClusterConfig) -> Diff {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let (next, diff) = self.snapshot.load().reload(|_| config, SystemTime::now());
        self.snapshot.store(Arc::new(next));
        self.probe_now.notify_one();
        diff
    }

    /// Forgets removed nodes whose last transfer has ended.
    pub fn prune_drained(&self) {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(next) = self.snapshot.load().without_drained() {
            self.snapshot.store(Arc::new(next));
        }
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
