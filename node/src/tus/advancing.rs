//! The durable offset a PATCH (or protected PUT) records while its body is read on
//! ([`crate::tus::patch`]): one record under way at a time.
//!
//! Awaited in line, each record's journaled round trip held up the read of the next batch:
//! 512 MiB protected PUTs through the balancer ran at 166 MB/s against 201 with the record
//! under way meanwhile (secantusd-rs, median of 8 alternating with the old node binary on
//! one database). The price is one more batch a node may hold unrecorded
//! ([`speedbox_common::config::StorageConfig::unrecorded_max_bytes`]).

use std::future::Future;

use tokio::task::JoinHandle;

use crate::error::{NodeError, Result};

/// The durable offset being recorded while the body is read on: at most one record at a
/// time, so that none is overtaken by an older one (`tus_advance` proves the lease, not
/// that its offset is the newest).
///
/// Each record is a task of its own, so it goes on, and hands its database connection
/// back, while the request waits for something else (a write slot, the client). A record
/// polled only when the request got round to it held a pooled connection meanwhile; ten
/// uploads waiting for write slots could hold the driver's whole pool, and with it the
/// chunk writes those slots wait for. Dropped with its request, the record under way is
/// aborted, as an awaited one would be cancelled.
#[derive(Debug, Default)]
pub(super) struct Advancing(Option<JoinHandle<Result<()>>>);

impl Advancing {
    /// Starts `advance` once the record under way has landed (its error, if any, and
    /// `advance` is dropped unstarted).
    pub(super) async fn start(
        &mut self,
        advance: impl Future<Output = Result<()>> + Send + 'static,
    ) -> Result<()> {
        self.land().await?;
        self.0 = Some(tokio::spawn(advance));
        Ok(())
    }

    /// Waits for the record under way to land, with its outcome (`Ok` when there is none).
    pub(super) async fn land(&mut self) -> Result<()> {
        let Some(record) = self.0.as_mut() else {
            return Ok(());
        };
        let landed = record.await;
        self.0 = None;
        landed.map_err(|e| NodeError::Internal(format!("offset record task: {e}")))?
    }
}

impl Drop for Advancing {
    fn drop(&mut self) {
        if let Some(record) = &self.0 {
            record.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;

    #[tokio::test]
    async fn nothing_under_way_lands_at_once() {
        assert!(Advancing::default().land().await.is_ok());
    }

    #[tokio::test]
    async fn a_record_runs_to_its_end_without_the_request_polling_it() {
        let mut advancing = Advancing::default();
        let (go, wait) = oneshot::channel::<()>();
        let (done, landed) = oneshot::channel::<()>();
        let record = async move {
            wait.await.ok();
            done.send(()).ok();
            Ok(())
        };
        assert!(advancing.start(record).await.is_ok());
        go.send(()).ok();
        // Nobody awaits `advancing` here: the record must still get to its end.
        let ran = tokio::time::timeout(Duration::from_secs(5), landed).await;
        assert!(matches!(ran, Ok(Ok(()))), "the record stalled unpolled");
        assert!(advancing.land().await.is_ok());
    }

    #[tokio::test]
    async fn a_lost_lease_stops_the_next_record() {
        let mut advancing = Advancing::default();
        let lost = async { Err(NodeError::Locked("upload u".into())) };
        assert!(advancing.start(lost).await.is_ok());
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

    #[tokio::test]
    async fn a_dropped_request_aborts_its_record() {
        let mut advancing = Advancing::default();
        let (_never, wait) = oneshot::channel::<()>();
        let (kept, gone) = oneshot::channel::<()>();
        let record = async move {
            wait.await.ok();
            kept.send(()).ok();
            Ok(())
        };
        assert!(advancing.start(record).await.is_ok());
        drop(advancing);
        // Aborted: the task and the sender it owns are dropped without sending.
        let ended = tokio::time::timeout(Duration::from_secs(5), gone).await;
        assert!(matches!(ended, Ok(Err(_))), "{ended:?}");
    }
}
