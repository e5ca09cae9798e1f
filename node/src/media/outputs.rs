//! Storing a finished attempt's outputs: every file of the scratch directory stored
//! unpublished first, then published in the order a player needs them to exist, each
//! guarded by [`OutputGuard`].

use std::path::Path;

use bytes::Bytes;
use futures::Stream;
use tokio::io::AsyncReadExt;

use super::Media;
use crate::error::{NodeError, Result};
use crate::name::check_name;
use crate::store::{MediaJob, MediaOutput, OutputGuard, Outputs, Rendition};
use crate::upload;

impl Media {
    /// Stores every output of `dir` unpublished, then publishes them in the order a
    /// player needs them to exist (segments, media playlists, poster, master playlist),
    /// each guarded by [`OutputGuard`].
    pub(super) async fn publish(
        &self,
        job: &MediaJob,
        token: i64,
        dir: &Path,
        plan: &[Rendition],
    ) -> Result<Outputs> {
        let mut files: Vec<String> = Vec::new();
        for r in plan {
            let folder = format!("{}p", r.height);
            let mut segments: Vec<String> = std::fs::read_dir(dir.join(&folder))
                .map_err(scratch_error)?
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|f| f.ends_with(".ts"))
                .map(|f| format!("{folder}/{f}"))
                .collect();
            segments.sort();
            files.extend(segments);
        }
        files.extend(plan.iter().map(|r| r.playlist.clone()));
        files.extend(["poster.jpg".to_string(), "master.m3u8".to_string()]);
        let named = |rel: &str| check_name(format!("{}.media/{rel}", job.name));
        let mut stored = Vec::with_capacity(files.len());
        for rel in &files {
            let name = named(rel)
                .map_err(|e| NodeError::BadRequest(format!("the output name of {rel}: {e}")))?;
            let body = file_body(dir.join(rel)).await?;
            let received = upload::receive(&self.store, &name, body, self.limits).await?;
            stored.push((received, content_type(rel)));
        }
        let output = MediaOutput {
            source: job.file_id,
            generation: job.generation,
            token,
        };
        let guard = OutputGuard(output);
        for (received, content_type) in stored {
            let done = received.finished(content_type.to_string(), Some(output));
            received.upload.commit(done, Some(&guard)).await?;
        }
        let full = |rel: &str| format!("{}.media/{rel}", job.name);
        Ok(Outputs {
            poster: full("poster.jpg"),
            master: full("master.m3u8"),
            renditions: plan
                .iter()
                .map(|r| Rendition {
                    playlist: full(&r.playlist),
                    ..r.clone()
                })
                .collect(),
        })
    }
}

/// The Content-Type of an output file, by its extension (RFC 8216 §4 for HLS).
fn content_type(rel: &str) -> &'static str {
    match rel.rsplit('.').next() {
        Some("ts") => "video/mp2t",
        Some("m3u8") => "application/vnd.apple.mpegurl",
        Some("jpg") => "image/jpeg",
        _ => "application/octet-stream",
    }
}

/// A local file as a body for [`upload::receive`], read 1 MiB at a time.
async fn file_body(path: std::path::PathBuf) -> Result<impl Stream<Item = Result<Bytes>>> {
    let file = tokio::fs::File::open(&path).await.map_err(scratch_error)?;
    Ok(futures::stream::try_unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 1 << 20];
        let n = file.read(&mut buf).await.map_err(scratch_error)?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), file)))
    }))
}

fn scratch_error(e: std::io::Error) -> NodeError {
    NodeError::Internal(format!("reading the scratch directory: {e}"))
}
