//! `[limits]` enforced per principal (see [`speedbox_common::config::LimitsConfig`]):
//! a request rate (token bucket, 429 with `Retry-After` over it), a number of transfers at
//! once (429), and upload and download bandwidth, shaped by [`crate::shape`] (slowed,
//! never refused).
//!
//! The buckets are `governor`'s keyed GCRA limiters, one per limit, keyed by principal.
//! They are rebuilt when a reload changes `[limits]` (a new quota starts every principal
//! with a full bucket) and forget idle principals every [`FORGET_EVERY`], so memory stays
//! bounded by the principals active lately.
//!
//! The 429's `RateLimit-Policy` and `RateLimit` fields follow the IETF draft
//! (draft-ietf-httpapi-ratelimit-headers-10 §3, §4): structured-field lists of named
//! policies with `q` (quota), `w` (window, seconds), `qu` (quota unit), `r` (remaining)
//! and `t` (seconds until reset).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use http::{header, HeaderMap, HeaderValue};
use speedbox_common::config::LimitsConfig;

use crate::shape::Shaper;

/// How often limiters drop the principals whose buckets are full again.
pub const FORGET_EVERY: Duration = Duration::from_secs(10);

/// Whose request it is: a token's `sub`, or the client's address.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub enum Principal {
    Sub(Arc<str>),
    Addr(IpAddr),
}

/// A keyed byte or request bucket.
pub type Bucket = DefaultKeyedRateLimiter<Principal>;

/// The limits in force and what they did, shared by every connection.
#[derive(Debug, Default)]
pub struct Limits {
    active: ArcSwap<Active>,
    /// Requests refused for the rate (`requests`) and for transfers at once (`transfers`).
    pub refused_rate: AtomicU64,
    pub refused_transfers: AtomicU64,
    /// Bytes that waited for their principal's bandwidth, by direction.
    pub shaped_up: Arc<AtomicU64>,
    pub shaped_down: Arc<AtomicU64>,
}

#[derive(Default)]
struct Active {
    config: LimitsConfig,
    requests: Option<Bucket>,
    upload: Option<Arc<Bucket>>,
    download: Option<Arc<Bucket>>,
    transfers: Arc<Mutex<HashMap<Principal, u32>>>,
    forgotten_at: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Active {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Active")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What an admitted request carries: its transfer slot and its shapers.
#[derive(Debug, Default)]
pub struct Admitted {
    pub transfer: Option<Transfer>,
    pub upload: Option<Shaper>,
    pub download: Option<Shaper>,
}

/// One transfer counted against its principal until dropped.
#[derive(Debug)]
pub struct Transfer {
    principal: Principal,
    counts: Arc<Mutex<HashMap<Principal, u32>>>,
}

impl Drop for Transfer {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&self.principal) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.principal);
            }
        }
    }
}

/// Why a request was refused (answered as [`crate::error::ProxyError::Limited`]).
#[derive(Debug)]
pub struct Refused {
    retry_after: Duration,
    /// The policy's name in the RateLimit fields.
    name: &'static str,
    /// Its parameters in `RateLimit-Policy` (`q=…;w=…`).
    params: String,
}

impl Limits {
    /// Admits a request of `principal` under `config` (the running `[limits]`), or refuses
    /// it. `transfer`: whether the request counts against `concurrent_transfers`.
    pub fn admit(
        &self,
        config: &LimitsConfig,
        principal: Principal,
        transfer: bool,
    ) -> Result<Admitted, Refused> {
        let active = self.active(config);
        if let Some(requests) = &active.requests {
            if let Err(not_until) = requests.check_key(&principal) {
                self.refused_rate.fetch_add(1, Ordering::Relaxed);
                let wait = not_until.wait_time_from(requests.clock().now());
                let (rate, burst) = (config.requests_per_second, config.burst());
                let window = burst.div_ceil(rate.max(1)).max(1);
                return Err(Refused {
                    retry_after: wait,
                    name: "requests",
                    params: format!("q={burst};w={window}"),
                });
            }
        }
        let transfer = match (transfer, config.concurrent_transfers) {
            (true, max) if max > 0 => Some(self.take_transfer(&active, principal.clone(), max)?),
            _ => None,
        };
        let shaper = |bucket: &Option<Arc<Bucket>>, counter: &Arc<AtomicU64>, rate: u64| {
            bucket.as_ref().map(|b| {
                Shaper::new(
                    Arc::clone(b),
                    principal.clone(),
                    burst_bytes(rate),
                    Arc::clone(counter),
                )
            })
        };
        Ok(Admitted {
            transfer,
            upload: shaper(
                &active.upload,
                &self.shaped_up,
                config.upload_bytes_per_second,
            ),
            download: shaper(
                &active.download,
                &self.shaped_down,
                config.download_bytes_per_second,
            ),
        })
    }

    fn take_transfer(
        &self,
        active: &Active,
        principal: Principal,
        max: u32,
    ) -> Result<Transfer, Refused> {
        let mut counts = active
            .transfers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let n = counts.entry(principal.clone()).or_insert(0);
        if *n >= max {
            drop(counts);
            self.refused_transfers.fetch_add(1, Ordering::Relaxed);
            return Err(Refused {
                retry_after: Duration::from_secs(1),
                name: "transfers",
                params: format!("q={max};qu=\"concurrent-requests\""),
            });
        }
        *n += 1;
        Ok(Transfer {
            principal,
            counts: Arc::clone(&active.transfers),
        })
    }

    /// The limiters of `config`, rebuilt if a reload changed it; idle principals are
    /// forgotten now and then.
    fn active(&self, config: &LimitsConfig) -> Arc<Active> {
        let active = self.active.load_full();
        if active.config == *config {
            if active.forget_due() {
                for bucket in [
                    active.upload.as_deref(),
                    active.download.as_deref(),
                    active.requests.as_ref(),
                ]
                .into_iter()
                .flatten()
                {
                    bucket.retain_recent();
                }
            }
            return active;
        }
        let next = Arc::new(Active::new(*config, &active));
        self.active.store(Arc::clone(&next));
        next
    }
}

impl Active {
    fn new(config: LimitsConfig, before: &Active) -> Active {
        let quota = |rate: u64, burst: u64| {
            let rate = NonZeroU32::new(u32::try_from(rate).unwrap_or(u32::MAX))?;
            let burst = NonZeroU32::new(u32::try_from(burst).unwrap_or(u32::MAX)).unwrap_or(rate);
            Some(Quota::per_second(rate).allow_burst(burst))
        };
        let bytes = |rate: u64| {
            quota(rate, u64::from(burst_bytes(rate))).map(|q| Arc::new(Bucket::keyed(q)))
        };
        Active {
            config,
            requests: quota(config.requests_per_second.into(), config.burst().into())
                .map(Bucket::keyed),
            upload: bytes(config.upload_bytes_per_second),
            download: bytes(config.download_bytes_per_second),
            // Transfers under way stay counted across a reload.
            transfers: Arc::clone(&before.transfers),
            forgotten_at: Mutex::new(None),
        }
    }

    /// Whether [`FORGET_EVERY`] passed since idle principals were last forgotten (then
    /// it is now).
    fn forget_due(&self) -> bool {
        let mut at = self
            .forgotten_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let due = at.is_none_or(|at| at.elapsed() >= FORGET_EVERY);
        if due {
            *at = Some(Instant::now());
        }
        due
    }
}

/// A byte bucket's size: a tenth of a second of `rate`, at least 64 KiB, so shaping is
/// smooth and a shaped transfer's time is size / rate within a tenth of a second.
fn burst_bytes(rate: u64) -> u32 {
    u32::try_from((rate / 10).max(64 * 1024)).unwrap_or(u32::MAX)
}

impl Refused {
    /// Whole seconds until a retry may succeed, at least 1 (`Retry-After`, RFC 9110
    /// §10.2.3).
    pub fn retry_secs(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }

    /// Adds `Retry-After` and the draft's `RateLimit-Policy` and `RateLimit` fields.
    pub fn add_headers(&self, headers: &mut HeaderMap) {
        let secs = self.retry_secs();
        let name = self.name;
        let mut set = |field: &'static str, value: String| {
            if let Ok(v) = HeaderValue::try_from(value) {
                headers.insert(field, v);
            }
        };
        set(header::RETRY_AFTER.as_str(), secs.to_string());
        set("ratelimit-policy", format!("\"{name}\";{}", self.params));
        set("ratelimit", format!("\"{name}\";r=0;t={secs}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ProxyError;
    use bytes::Bytes;
    use http::StatusCode;
    use http_body_util::Full;

    fn limits(text: &str) -> LimitsConfig {
        let text = format!("[mongodb]\nuri = \"mongodb://127.0.0.1:1\"\n[limits]\n{text}");
        speedbox_common::config::ClusterConfig::from_toml(&text)
            .unwrap()
            .limits
    }

    fn alice() -> Principal {
        Principal::Sub("alice".into())
    }

    #[test]
    fn a_burst_over_the_rate_is_refused_with_a_sane_retry_after() {
        let l = Limits::default();
        let cfg = limits("requests_per_second = 2\nburst = 3\n");
        for _ in 0..3 {
            assert!(l.admit(&cfg, alice(), false).is_ok());
        }
        let refused = l.admit(&cfg, alice(), false).unwrap_err();
        assert!(
            refused.retry_after <= Duration::from_millis(500),
            "{:?}",
            refused.retry_after
        );
        let response = ProxyError::Limited(refused).into_response::<Full<Bytes>>();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let h = response.headers();
        assert_eq!(h["retry-after"], "1");
        assert_eq!(h["ratelimit-policy"], "\"requests\";q=3;w=2");
        assert_eq!(h["ratelimit"], "\"requests\";r=0;t=1");
        // another principal is not affected
        assert!(l
            .admit(&cfg, Principal::Addr([127, 0, 0, 1].into()), false)
            .is_ok());
        assert_eq!(l.refused_rate.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn transfers_at_once_are_counted_until_they_end_and_across_reloads() {
        let l = Limits::default();
        let cfg = limits("concurrent_transfers = 2\n");
        let a = l.admit(&cfg, alice(), true).unwrap();
        let _b = l.admit(&cfg, alice(), true).unwrap();
        assert!(l.admit(&cfg, alice(), false).is_ok(), "not a transfer");
        assert!(l.admit(&cfg, alice(), true).is_err());
        drop(a);
        let _c = l.admit(&cfg, alice(), true).unwrap();
        let wider = limits("concurrent_transfers = 3\n");
        let _d = l.admit(&wider, alice(), true).unwrap();
        assert!(
            l.admit(&wider, alice(), true).is_err(),
            "b, c and d still count"
        );
    }

    #[test]
    fn no_limits_admit_everything_without_shapers() {
        let l = Limits::default();
        let cfg = LimitsConfig::default();
        for _ in 0..1000 {
            let admitted = l.admit(&cfg, alice(), true).unwrap();
            assert!(admitted.transfer.is_none() && admitted.upload.is_none());
        }
    }
}
