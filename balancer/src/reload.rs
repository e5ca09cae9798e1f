//! Live configuration: when `cluster.toml` changes (or on SIGHUP) the balancer reloads it,
//! validates it, and swaps it in keeping the health of surviving nodes. A bad edit is
//! refused with a log line naming every problem, and the running config stays.
//!
//! The file's directory is watched, not the file: editors and `mv` replace a file by
//! rename, which would silently end a watch on the old inode.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::event::{MetadataKind, ModifyKind};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use speedbox_common::config::ClusterConfig;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Notify;

use crate::cluster::Cluster;

/// An editor's save is often several events (truncate, write, rename); wait for quiet.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// Reloads on file changes and SIGHUP until its task is aborted.
pub async fn run(cluster: Arc<Cluster>) {
    let path = cluster.config_path.clone();
    let changed = Arc::new(Notify::new());
    // Dropping the watcher stops it, so it lives as long as this loop.
    let _watcher = match watch(&path, Arc::clone(&changed)) {
        Ok(watcher) => Some(watcher),
        Err(e) => {
            tracing::warn!("cannot watch {}: {e}; reload with SIGHUP", path.display());
            None
        }
    };
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(hangup) => Some(hangup),
        Err(e) => {
            tracing::warn!("cannot handle SIGHUP: {e}");
            None
        }
    };
    // The file may have changed between the first load and the watch starting.
    reload(&cluster);
    loop {
        tokio::select! {
            _ = changed.notified() => {
                debounce(&changed).await;
                tracing::info!("{} changed, reloading", path.display());
            }
            Some(()) = async { hangup.as_mut()?.recv().await } => {
                tracing::info!("SIGHUP received, reloading {}", path.display());
            }
        }
        reload(&cluster);
    }
}

async fn debounce(changed: &Notify) {
    loop {
        tokio::select! {
            _ = changed.notified() => {}
            _ = tokio::time::sleep(DEBOUNCE) => return,
        }
    }
}

/// Loads, validates and applies the config file; false if it was refused or unchanged.
pub fn reload(cluster: &Cluster) -> bool {
    let config = match ClusterConfig::load(&cluster.config_path) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("config reload refused, keeping the running config: {e}");
            return false;
        }
    };
    let current = cluster.snapshot();
    if config == current.config {
        tracing::debug!("config unchanged");
        return false;
    }
    let (old_listen, new_listen) = (current.config.balancer.listen, config.balancer.listen);
    if old_listen != new_listen {
        tracing::warn!(
            "balancer.listen changed from {old_listen} to {new_listen}: \
             still listening on {old_listen} until a restart"
        );
    }
    drop(current);
    let diff = cluster.apply(config);
    tracing::info!(
        added = ?diff.added,
        removed = ?diff.removed,
        kept = ?diff.kept,
        "config reloaded"
    );
    true
}

fn watch(path: &Path, changed: Arc<Notify>) -> notify::Result<RecommendedWatcher> {
    let file_name: OsString = path.file_name().unwrap_or(path.as_os_str()).to_owned();
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
        if event.is_ok_and(|e| concerns(&e, &file_name)) {
            changed.notify_one();
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// A change to the file's content or its name; not mere reads (our own reload reads it).
fn concerns(event: &Event, file_name: &OsStr) -> bool {
    let relevant = match &event.kind {
        EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => false,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
        _ => false,
    };
    relevant && event.paths.iter().any(|p| p.file_name() == Some(file_name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, AccessMode, CreateKind, DataChange, RenameMode};

    fn event(kind: EventKind, path: &str) -> Event {
        Event::new(kind).add_path(PathBuf::from(path))
    }

    #[test]
    fn only_changes_to_the_config_file_count() {
        let name = OsStr::new("cluster.toml");
        let write = EventKind::Modify(ModifyKind::Data(DataChange::Content));
        assert!(concerns(&event(write, "/etc/speedbox/cluster.toml"), name));
        let rename = EventKind::Modify(ModifyKind::Name(RenameMode::To));
        assert!(concerns(&event(rename, "/etc/speedbox/cluster.toml"), name));
        let create = EventKind::Create(CreateKind::File);
        assert!(concerns(&event(create, "/x/cluster.toml"), name));
        assert!(!concerns(&event(write, "/etc/speedbox/other.toml"), name));
        let read = EventKind::Access(AccessKind::Close(AccessMode::Read));
        assert!(!concerns(&event(read, "/etc/speedbox/cluster.toml"), name));
        let atime = EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime));
        assert!(!concerns(&event(atime, "/etc/speedbox/cluster.toml"), name));
    }

    const CONFIG: &str = "[balancer]\nlisten = \"127.0.0.1:3999\"\n\
        [mongodb]\nuri = \"mongodb://127.0.0.1:27017\"\n\
        [[nodes]]\nid = \"a\"\nlisten = \"127.0.0.1:8001\"\n";

    #[test]
    fn a_bad_edit_is_refused_and_a_good_one_applied() {
        let dir = std::env::temp_dir().join(format!("speedbox-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cluster.toml");
        std::fs::write(&path, CONFIG).unwrap();
        let cluster = Cluster::new(path.clone(), ClusterConfig::load(&path).unwrap());
        cluster.snapshot().nodes[0].force_down("refused".into());

        assert!(!reload(&cluster), "unchanged file");
        std::fs::write(&path, CONFIG.replace("id = \"a\"", "id = \"a b\"")).unwrap();
        assert!(!reload(&cluster), "invalid id refused");
        assert_eq!(cluster.snapshot().nodes[0].id, "a");

        let more = format!("{CONFIG}[[nodes]]\nid = \"b\"\nlisten = \"127.0.0.1:8002\"\n");
        std::fs::write(&path, more).unwrap();
        assert!(reload(&cluster));
        let snap = cluster.snapshot();
        assert_eq!(snap.nodes.len(), 2);
        assert!(!snap.nodes[0].state.is_up(), "a keeps its health");
        assert!(snap.nodes[1].state.is_up());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
