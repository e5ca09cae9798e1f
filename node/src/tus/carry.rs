//! What a node remembers between the PATCHes of one upload: the running whole-file digests.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::digest::Hasher;

/// How many uploads' running digests a node keeps at most.
const CARRY_MAX: usize = 1024;

/// Whole-file digests carried between PATCHes that reach this node in order, so the last
/// PATCH need not read the file back to compute them. Only a shortcut: when a PATCH lands on
/// another node (or this one restarted), the digests come from the stored chunks instead.
#[derive(Default)]
pub struct HashCarry {
    running: Mutex<HashMap<String, (i64, Hasher)>>,
}

impl HashCarry {
    /// The digests of the first `offset` bytes of upload `id`, if this node has them.
    pub fn take(&self, id: &str, offset: i64) -> Option<Hasher> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        match running.remove(id) {
            Some((at, hasher)) if at == offset => Some(hasher),
            _ => None,
        }
    }

    pub fn put(&self, id: &str, offset: i64, hasher: Hasher) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.len() >= CARRY_MAX {
            // Forgetting costs one read-back at the end, never correctness.
            running.clear();
        }
        running.insert(id.to_string(), (offset, hasher));
    }
}
