//! A job's scratch directory: made empty for one attempt, measured while ffmpeg writes,
//! and removed when the attempt ends however it ends (dropped).

use std::path::{Path, PathBuf};

/// One attempt's directory under the node's scratch root.
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// Makes `root/<id>` afresh (whatever an earlier attempt left there goes).
    pub fn create(root: &Path, id: &str) -> std::io::Result<Self> {
        let dir = root.join(id);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Bytes in the directory's files (one level of sub-directories, as ffmpeg writes).
    pub fn size(&self) -> u64 {
        fn files(dir: &Path, depth: u8) -> u64 {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return 0;
            };
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() && depth > 0 => files(&e.path(), depth - 1),
                    Ok(m) if m.is_file() => m.len(),
                    _ => 0,
                })
                .sum()
        }
        files(&self.dir, 1)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "scratch directory left behind");
        }
    }
}

/// The node's scratch root, emptied (at start: what a killed node left goes).
pub fn root(configured: &str, node_id: &str) -> std::io::Result<PathBuf> {
    let base = if configured.is_empty() {
        std::env::temp_dir()
    } else {
        PathBuf::from(configured)
    };
    let root = base.join(format!("speedbox-media-{node_id}"));
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    std::fs::create_dir_all(&root)?;
    Ok(root)
}
