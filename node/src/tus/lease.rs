//! The write lease one PATCH holds on an upload, released when the request ends however it
//! ends (the lease itself, with its fencing token, lives in [`crate::store`]).

use crate::error::Result;
use crate::store::{FileInfo, Store};

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

    /// Ends the request's hold once [`crate::tus::write_patch`] returned `written`: the
    /// lease is released before the answer goes out, so the client's next PATCH (sent the
    /// moment it reads our 204) finds it free instead of getting 423; unless the upload
    /// was published, whose `done` update already cleared it (no round trip).
    pub(crate) async fn end(mut self, written: &Result<(i64, Option<FileInfo>)>) {
        let id = std::mem::take(&mut self.id);
        if matches!(written, Ok((_, Some(_)))) {
            return;
        }
        if let Err(e) = self.store.tus_release(&id, self.token).await {
            tracing::debug!(upload = %id, error = %e, "lease left to expire");
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
