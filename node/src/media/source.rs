//! How ffmpeg reads a job's source: from this node, over HTTP on loopback, with Range (so
//! it can seek, e.g. to an MP4's index at the end), through the same download code as
//! every client. The server listens on an ephemeral loopback port and answers only paths
//! that carry its random secret, `/<secret>/<file id>`; it serves any revision by file id,
//! so a job reads the revision it was made for even after its name moved on.

use std::net::SocketAddr;
use std::sync::Arc;

use bson::oid::ObjectId;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::error::NodeError;
use crate::store::Store;
use crate::{download, respond, Body};

/// The running loopback source server.
pub struct SourceServer {
    addr: SocketAddr,
    secret: String,
}

impl SourceServer {
    /// Binds `127.0.0.1:0` and serves until the process ends.
    pub async fn start(store: Store, chunks_per_read: u64) -> std::io::Result<Arc<Self>> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
        let server = Arc::new(Self {
            addr: listener.local_addr()?,
            secret: hex::encode(bytes),
        });
        let secret = server.secret.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (store, secret) = (store.clone(), secret.clone());
                let service = service_fn(move |req| {
                    let (store, secret) = (store.clone(), secret.clone());
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            serve(&store, &secret, req, chunks_per_read)
                                .await
                                .unwrap_or_else(respond::error),
                        )
                    }
                });
                tokio::spawn(async move {
                    let http = hyper::server::conn::http1::Builder::new();
                    if let Err(e) = http.serve_connection(TokioIo::new(stream), service).await {
                        tracing::debug!(error = %e, "media source connection ended");
                    }
                });
            }
        });
        Ok(server)
    }

    /// The URL ffmpeg reads revision `file_id` at.
    pub fn url(&self, file_id: ObjectId) -> String {
        format!("http://{}/{}/{}", self.addr, self.secret, file_id.to_hex())
    }
}

async fn serve(
    store: &Store,
    secret: &str,
    req: Request<Incoming>,
    chunks_per_read: u64,
) -> crate::error::Result<Response<Body>> {
    let path = req.uri().path();
    let id = path
        .strip_prefix('/')
        .and_then(|p| p.strip_prefix(secret))
        .and_then(|p| p.strip_prefix('/'))
        .and_then(|hex| ObjectId::parse_str(hex).ok())
        .ok_or_else(|| NodeError::NoRoute(path.to_string()))?;
    let file = store
        .revision(&format!("\u{1}media-source/{id}"), id)
        .await?
        .ok_or_else(|| NodeError::NotFound(id.to_hex()))?;
    let head = req.method() == http::Method::HEAD;
    let mut response = download::respond(store, file, None, req.headers(), head, chunks_per_read)?;
    if response.status() == StatusCode::OK {
        // ffmpeg keeps the connection for the next range request.
        response.headers_mut().remove(http::header::CONNECTION);
    }
    Ok(response)
}
