//! The idle keep-alive connections each node keeps: a capped list, the most recently used
//! taken first. When one may be reused and when it goes back is up to [`crate::conn`].

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hyper::client::conn::http1::SendRequest;
use tokio::time::Instant;

use crate::up_body::UpBody;

/// Idle keep-alive connections kept per node (nginx `keepalive 32`).
const MAX_IDLE_PER_NODE: usize = 32;

/// One HTTP/1 connection to a node, as hyper's client hands it out.
pub type Sender = SendRequest<UpBody>;

/// Idle keep-alive connections to one node, the most recently used last.
#[derive(Debug, Default)]
pub struct IdleConns {
    list: Mutex<Vec<(Sender, Instant)>>,
}

impl IdleConns {
    /// The most recent connection still ready, if none idles longer than `max_age`.
    pub(crate) fn take(&self, max_age: Duration) -> Option<Sender> {
        let mut list = self.list.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some((sender, since)) = list.pop() {
            if since.elapsed() > max_age {
                // the rest are older still
                list.clear();
                return None;
            }
            if sender.is_ready() {
                return Some(sender);
            }
        }
        None
    }

    /// Keeps `sender` for reuse, dropping the oldest when the list is full.
    pub(crate) fn put(&self, sender: Sender) {
        let mut list = self.list.lock().unwrap_or_else(PoisonError::into_inner);
        if list.len() >= MAX_IDLE_PER_NODE {
            list.remove(0);
        }
        list.push((sender, Instant::now()));
    }

    pub fn clear(&self) {
        self.list
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}
