//! `GET /media/{name}`: where the video job of the name's current revision stands.

use http::{Response, StatusCode};
use serde_json::json;
use speedbox_common::auth::link::file_path;

use crate::error::{NodeError, Result};
use crate::respond;
use crate::server::AppState;
use crate::store::is_video;
use crate::Body;

/// The job as JSON: `{"name", "state", "progress", "attempts", "error", "facts",
/// "outputs"}`; `outputs` (`poster`, `master`, `renditions[]`, as URL paths relative to
/// the server) once the job is done. 404 when the name is not a video.
pub async fn get(state: &AppState, name: String) -> Result<Response<Body>> {
    let store = &state.store;
    let source = store
        .lookup(&name)
        .await?
        .filter(|f| f.media.is_none() && is_video(&f.content_type))
        .ok_or(NodeError::NotAVideo(name))?;
    let job = store
        .media_job_of(&source)
        .await?
        .ok_or_else(|| NodeError::Internal("the video's job vanished".into()))?;
    let done = job.state == crate::store::JobState::Done;
    let outputs = job.outputs.as_ref().filter(|_| done).map(|o| {
        let renditions: Vec<_> = o
            .renditions
            .iter()
            .map(|r| {
                json!({
                    "width": r.width, "height": r.height, "bandwidth": r.bandwidth,
                    "playlist": file_path(&r.playlist),
                })
            })
            .collect();
        json!({
            "poster": file_path(&o.poster),
            "master": file_path(&o.master),
            "renditions": renditions,
        })
    });
    Ok(respond::json(
        StatusCode::OK,
        &json!({
            "name": source.name,
            "state": job.state,
            "progress": job.progress,
            "attempts": job.attempts,
            "error": job.error,
            "facts": job.facts,
            "outputs": outputs,
        }),
    ))
}
