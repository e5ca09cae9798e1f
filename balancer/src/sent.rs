//! The signal that a request body has been handed over whole: the response-header timer
//! starts then ([`crate::conn::send`]), since an upload may legitimately take hours.

use tokio::sync::oneshot;

/// Fires its receiver once, when the body's last byte has been handed to the node's
/// connection (or never, if the body is dropped first: the receiver then sees an error).
#[derive(Debug)]
pub struct BodySent(Option<oneshot::Sender<()>>);

impl BodySent {
    /// The signal and the receiver it fires.
    pub fn new() -> (Self, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        (Self(Some(tx)), rx)
    }

    /// Fires the receiver (once; later calls do nothing).
    pub fn fire(&mut self) {
        if let Some(done) = self.0.take() {
            let _ = done.send(());
        }
    }
}
