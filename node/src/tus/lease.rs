//! The write lease one PATCH holds on an upload, released when the request ends however it
//! ends (the lease itself, with its fencing token, lives in [`crate::store`]).

use crate::store::Store;

/// Releases the lease when the request ends, however it ends.
pub(crate) struct LeaseGuard {
    store: Store,
    id: String,
    token: i64,
}

impl LeaseGuard {
    pub(crate) fn new(store: &Store, id: &str, token: i64) -> Self {
        Self {
            store: store.clone(),
            id: id.to_string(),
            token,
        }
    }

    /// Releases the lease before the answer goes out, so the client's next PATCH (sent the
    /// moment it reads our 204) finds it free instead of getting 423.
    pub(crate) async fn release(mut self) {
        let id = std::mem::take(&mut self.id);
        if let Err(e) = self.store.tus_release(&id, self.token).await {
            tracing::debug!(upload = %id, error = %e, "lease left to expire");
        }
    }
}

impl LeaseGuard {
    /// Ends the request's hold after [`crate::tus::write_patch`]: released (see
    /// [`LeaseGuard::release`]), unless `published`, when the step that published the
    /// upload (its `done` update) already cleared it: no round trip.
    pub(crate) async fn end(mut self, published: bool) {
        if published {
            self.id.clear();
        } else {
            self.release().await;
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if self.id.is_empty() {
            return; // released already
        }
        let (store, id, token) = (self.store.clone(), std::mem::take(&mut self.id), self.token);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = store.tus_release(&id, token).await {
                    tracing::debug!(upload = %id, error = %e, "lease left to expire");
                }
            });
        }
    }
}
