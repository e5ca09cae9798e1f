//! `[limits]`: what one principal may use of the cluster, enforced at the balancer (the
//! one place every request passes). A principal is a token's `sub` when access control is
//! on and the request carries a valid token, else the client's address (see
//! `[balancer] trusted_proxies`). Every limit is per principal; 0 or absent means none.
//! Reloaded live with the rest of `cluster.toml`.

use serde::{Deserialize, Serialize};

/// `[limits]` (see the module doc).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Requests per second, refilled continuously (a token bucket); over it: 429.
    pub requests_per_second: u32,
    /// Requests a principal may make at once above the rate (the bucket's size); 0: one
    /// second's worth.
    pub burst: u32,
    /// Requests with a body under way at once (uploads and downloads in progress); over
    /// it: 429.
    pub concurrent_transfers: u32,
    /// Request body bytes per second across a principal's uploads: shaped (slowed), never
    /// refused.
    pub upload_bytes_per_second: u64,
    /// Answer body bytes per second across a principal's downloads: shaped likewise.
    pub download_bytes_per_second: u64,
}

impl LimitsConfig {
    /// Whether any limit is set (none: the balancer skips the principal's lookup).
    pub fn any(&self) -> bool {
        *self != LimitsConfig::default()
    }

    /// The token bucket's size: `burst`, or one second of `requests_per_second`.
    pub fn burst(&self) -> u32 {
        if self.burst > 0 {
            self.burst
        } else {
            self.requests_per_second
        }
    }

    pub(super) fn validate(&self, problems: &mut Vec<String>) {
        if self.burst > 0 && self.requests_per_second == 0 {
            problems.push(
                "limits.burst is set but limits.requests_per_second is not: a burst of what rate?"
                    .into(),
            );
        }
        for (key, rate) in [
            ("upload_bytes_per_second", self.upload_bytes_per_second),
            ("download_bytes_per_second", self.download_bytes_per_second),
        ] {
            if rate > u64::from(u32::MAX) {
                problems.push(format!(
                    "limits.{key} = {rate}: at most {} (4 GiB/s); 0 for no limit",
                    u32::MAX
                ));
            } else if rate > 0 && rate < 1024 {
                problems.push(format!(
                    "limits.{key} = {rate}: at least 1024 bytes per second; 0 for no limit"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::ClusterConfig;

    #[test]
    fn bad_limits_are_refused_by_name() {
        let text = "[mongodb]\nuri = \"mongodb://127.0.0.1:1\"\n\
            [limits]\nburst = 5\nupload_bytes_per_second = 10\n";
        let err = ClusterConfig::from_toml(text).unwrap_err().to_string();
        assert!(err.contains("limits.burst is set"), "{err}");
        assert!(err.contains("limits.upload_bytes_per_second = 10"), "{err}");
        let text = "[mongodb]\nuri = \"mongodb://127.0.0.1:1\"\n[limits]\nrate = 5\n";
        let err = ClusterConfig::from_toml(text).unwrap_err().to_string();
        assert!(err.contains("rate"), "unknown keys are refused: {err}");
    }
}
