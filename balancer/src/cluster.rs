//! The cluster as the request path sees it: one immutable [`Snapshot`] of the nodes (each
//! with its live [`NodeState`]), swapped atomically on reload, and the [`Cluster`] that
//! holds the current snapshot and publishes the next one.
//!
//! Nodes and their health live in the same snapshot, so a request never sees a node list
//! from one config and health from another. A node that survives a reload (same id and
//! address) carries its [`NodeState`] over, keeping health, in-flight count and idle
//! connections (pingora's `do_update`). Which node takes a request is decided in
//! [`crate::select`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use speedbox_common::config::ClusterConfig;
use tokio::sync::Notify;

use crate::node::{Node, NodeState};
use crate::select::{rotation, select, Load};
use crate::window::UploadStats;

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

/// The balancer's shared state: the current snapshot and what changes it.
#[derive(Debug)]
pub struct Cluster {
    snapshot: ArcSwap<Snapshot>,
    cursor: AtomicUsize,
    /// Serialises writers (reload, pruning) so one never overwrites the other's swap.
    writer: Mutex<()>,
    pub config_path: PathBuf,
    /// Asks the probe loop for a round now (after a reload added nodes).
    pub probe_now: Notify,
    /// The upload windows' budget and what protected uploads did ([`crate::protect`]).
    pub uploads: Arc<UploadStats>,
}

impl Cluster {
    pub fn new(config_path: PathBuf, config: ClusterConfig) -> Self {
        Self {
            snapshot: ArcSwap::from_pointee(Snapshot::new(config, SystemTime::now())),
            cursor: AtomicUsize::new(0),
            writer: Mutex::new(()),
            config_path,
            probe_now: Notify::new(),
            uploads: Arc::default(),
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
#[path = "cluster_tests.rs"]
mod tests;
