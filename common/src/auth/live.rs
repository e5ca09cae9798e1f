//! The `[auth]` settings of a running process, kept in step with `cluster.toml` and the key
//! files it names: a key removed from the file (or a key file replaced) takes effect within
//! [`POLL`], on the balancer and every node, without a restart.
//!
//! Polling rather than file events: it sees key files anywhere, survives editors that
//! replace files by rename, and costs a few `stat` calls per poll.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use super::{Authenticator, KeyRing, Scopes};
use crate::config::{AuthConfig, ClusterConfig};

/// How often the files are looked at.
pub const POLL: Duration = Duration::from_millis(250);

/// The current [`Authenticator`], swapped atomically when the files change.
pub struct LiveAuth {
    current: ArcSwap<Authenticator>,
    config_path: PathBuf,
}

impl LiveAuth {
    /// Builds the authenticator of `config` (read from `config_path`).
    ///
    /// Errors: every unreadable or unusable key file, one message each.
    pub fn new(config_path: &Path, config: &ClusterConfig) -> Result<LiveAuth, Vec<String>> {
        let auth = build(config_path, config.auth.as_ref())?;
        if !auth.enabled() {
            tracing::warn!(
                "access control is off ([auth] absent or enabled = false): anyone who reaches \
                 this process may read, overwrite and delete every file"
            );
        }
        Ok(LiveAuth {
            current: ArcSwap::from_pointee(auth),
            config_path: config_path.to_path_buf(),
        })
    }

    /// The authenticator in force now.
    pub fn current(&self) -> Arc<Authenticator> {
        self.current.load_full()
    }

    /// Watches the config file and the key files it names until dropped; a change that
    /// does not load (bad TOML, missing key file) is logged and the running keys stay.
    pub async fn watch(self: Arc<Self>) {
        // The key files of the config last read, even one that did not load: a key file
        // created after the edit that names it must still be noticed.
        let mut files = self.current().key_files().to_vec();
        let mut seen = fingerprint(&self.config_path, &files);
        loop {
            tokio::time::sleep(POLL).await;
            let now = fingerprint(&self.config_path, &files);
            if now == seen {
                continue;
            }
            let loaded = ClusterConfig::load(&self.config_path)
                .map_err(|e| vec![e.to_string()])
                .and_then(|c| {
                    files = key_files(c.auth.as_ref());
                    build(&self.config_path, c.auth.as_ref())
                });
            seen = fingerprint(&self.config_path, &files);
            match loaded {
                Ok(auth) => {
                    let ids: Vec<_> = auth.keys().ids().collect();
                    tracing::info!(enabled = auth.enabled(), keys = ?ids, "access control reloaded");
                    self.current.store(Arc::new(auth));
                }
                Err(problems) => tracing::error!(
                    "access control not reloaded, the running keys stay: {}",
                    problems.join("; ")
                ),
            }
        }
    }
}

/// The `secret_file`s `auth` names.
pub(crate) fn key_files(auth: Option<&AuthConfig>) -> Vec<String> {
    auth.map(|a| a.keys.iter().map(|k| k.secret_file.clone()).collect())
        .unwrap_or_default()
}

/// The authenticator `auth` describes, key files relative to `config_path`'s directory.
pub fn build(config_path: &Path, auth: Option<&AuthConfig>) -> Result<Authenticator, Vec<String>> {
    let Some(auth) = auth.filter(|a| a.enabled) else {
        return Ok(Authenticator::open().with_files(auth));
    };
    let dir = config_path.parent().unwrap_or(Path::new("."));
    let keys = KeyRing::load(auth, dir)?;
    let anonymous = Scopes::from_names(auth.anonymous.iter().map(String::as_str))
        .map_err(|e| vec![format!("auth.anonymous: {e}")])?;
    Ok(Authenticator::new(keys, anonymous).with_files(Some(auth)))
}

/// What, when changed, means reloading: the config file's and every key file's
/// modification time and size.
fn fingerprint(config_path: &Path, key_files: &[String]) -> Vec<Option<(SystemTime, u64)>> {
    let dir = config_path.parent().unwrap_or(Path::new("."));
    std::iter::once(config_path.to_path_buf())
        .chain(key_files.iter().map(|f| dir.join(f)))
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}
