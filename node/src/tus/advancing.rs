//! The durable offset a PATCH (or protected PUT) records while its body is read on
//! ([`crate::tus::patch`]): one record under way at a time.
//!
//! Awaited in line, each record's journaled round trip stalled the read of the next batch:
//! protected 1 GiB PUTs ran at 166 MB/s against 201 with the record under way meanwhile
//! (median of 8, alternating, same database). The price is one more batch a node may hold
//! unrecorded ([`speedbox_common::config::StorageConfig::unrecorded_max_bytes`]).

use std::future::Future;

use futures::future::BoxFuture;

use crate::error::Result;

/// The durable offset being recorded while the body is read on: at most one at a time,
/// so that no record is overtaken by an older one (`tus_advance` proves the lease, not
/// that its offset is the newest).
#[derive(Default)]
pub(super) struct Advancing(Option<BoxFuture<'static, Result<()>>>);

impl Advancing {
    /// Starts `advance` once the record under way has landed (its error, if any, and
    /// `advance` is dropped unstarted).
    pub(super) async fn start(
        &mut self,
        advance: impl Future<Output = Result<()>> + Send + 'static,
    ) -> Result<()> {
        self.land().await?;
        self.0 = Some(Box::pin(advance));
        Ok(())
    }

    /// Waits for the record under way to land, with its outcome (`Ok` when there is none).
    pub(super) async fn land(&mut self) -> Result<()> {
        if self.0.is_none() {
            return Ok(());
        }
        self.landed().await
    }

    /// Resolves when the record under way lands, with its outcome; never while there is
    /// none. Cancel-safe: the record stays here until it lands.
    pub(super) async fn landed(&mut self) -> Result<()> {
        let Some(advance) = self.0.as_mut() else {
            return std::future::pending().await;
        };
        let landed = advance.await;
        self.0 = None;
        landed
    }
}

#[cfg(test)]
mod tests {
    use std::task::Poll;

    use futures::poll;
    use tokio::sync::oneshot;

    use super::*;
    use crate::error::NodeError;

    #[tokio::test]
    async fn nothing_under_way_lands_at_once_and_is_never_landed() {
        let mut advancing = Advancing::default();
        assert!(advancing.land().await.is_ok());
        let landed = advancing.landed();
        futures::pin_mut!(landed);
        assert!(poll!(landed).is_pending());
    }

    #[tokio::test]
    async fn a_record_lands_once_with_its_outcome() {
        let mut advancing = Advancing::default();
        let (tx, rx) = oneshot::channel::<()>();
        let first = async move { rx.await.map_err(|_| NodeError::Locked("upload u".into())) };
        assert!(advancing.start(first).await.is_ok());
        {
            // Not yet landed: a select that gives up on it keeps it under way.
            let landed = advancing.landed();
            futures::pin_mut!(landed);
            assert!(poll!(landed).is_pending());
        }
        tx.send(()).ok();
        assert!(matches!(
            poll!(Box::pin(advancing.landed())),
            Poll::Ready(Ok(()))
        ));
        // Landed: nothing is under way any more.
        let again = advancing.landed();
        futures::pin_mut!(again);
        assert!(poll!(again).is_pending());
    }

    #[tokio::test]
    async fn a_lost_lease_comes_back_from_land() {
        let mut advancing = Advancing::default();
        let lost = async { Err(NodeError::Locked("upload u".into())) };
        assert!(advancing.start(lost).await.is_ok());
        // The next record does not start after a lost lease.
        let (tx, rx) = oneshot::channel::<()>();
        let next = async move {
            tx.send(()).ok();
            Ok(())
        };
        assert!(matches!(
            advancing.start(next).await,
            Err(NodeError::Locked(_))
        ));
        assert!(advancing.land().await.is_ok());
        assert!(rx.await.is_err(), "the next record never ran");
    }
}
