//! The request path: [`handle`] gives each request its id and the headers every answer
//! carries; [`dispatch`] sends each [`Route`] to its one handler; an error becomes a JSON
//! response in one place.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use speedbox_common::auth::{link, LiveAuth};
use speedbox_common::config::ClusterConfig;
use speedbox_common::headers::{X_REQUEST_ID, X_SPEEDBOX_NODE};
use speedbox_common::linger;
use speedbox_common::observe::{Observed, Observer, PrincipalNote};
use speedbox_common::request_id::request_id;
use tracing::Instrument;

use crate::access::RevokedSet;
use crate::error::Result;
use crate::metrics::NodeMetrics;
use crate::routes::{self, Route};
use crate::store::Store;
use crate::upload::Limits;
use crate::{access, admin, cors, files, maintenance, media, respond, tus, Body, ReqBody};

/// What every request handler shares.
pub struct AppState {
    pub store: Store,
    pub node_id: String,
    pub limits: Limits,
    pub chunks_per_read: u64,
    pub tus: tus::Tus,
    /// `[auth]` as the config file says now.
    pub auth: Arc<LiveAuth>,
    /// The revoked tokens and principals.
    pub revoked: Arc<RevokedSet>,
    pub metrics: Arc<NodeMetrics>,
}

impl AppState {
    /// Connects node `node_id` of `config` (read from `config_path`) to its database, puts
    /// the indexes in place (waiting a bounded time, see
    /// [`maintenance::indexes_at_start`]), and starts the background sweeps and the
    /// watch on `[auth]`.
    ///
    /// Errors: [`StartError`] when a key file is unusable or the `[mongodb]` settings are.
    pub async fn start(
        config_path: &Path,
        config: &ClusterConfig,
        node_id: &str,
    ) -> std::result::Result<Arc<Self>, StartError> {
        let auth = Arc::new(LiveAuth::new(config_path, config).map_err(StartError::Auth)?);
        tokio::spawn(Arc::clone(&auth).watch());
        let storage = &config.storage;
        let store = Store::connect(&config.mongodb, storage, node_id).await?;
        let revoked = Arc::new(RevokedSet::default());
        tokio::spawn(Arc::clone(&revoked).watch(store.clone(), Arc::clone(&auth)));
        let indexes_ready = maintenance::indexes_at_start(&store).await;
        maintenance::spawn(
            store.clone(),
            maintenance::Intervals {
                grace: Duration::from_secs(storage.gc_grace_secs),
                sweep: Duration::from_secs(storage.sweep_interval_secs),
                size: Duration::from_secs(storage.size_interval_secs),
            },
            indexes_ready,
        );
        let idle = Duration::from_secs(storage.body_idle_timeout_secs);
        let chunks_per_write = storage.chunks_per_write as usize;
        let chunks_per_read = u64::from(storage.chunks_per_read);
        let media_metrics = Arc::new(media::MediaMetrics::default());
        let metrics = Arc::new(NodeMetrics::new(store.metrics(), &media_metrics));
        let limits = Limits {
            chunks_per_write,
            idle,
            max_size: storage.max_file_size,
        };
        media::start(
            store.clone(),
            &config.media,
            node_id,
            limits,
            chunks_per_read,
            media_metrics,
        )
        .await;
        Ok(Arc::new(AppState {
            store,
            node_id: node_id.to_string(),
            limits,
            chunks_per_read,
            tus: tus::Tus {
                limits: tus::TusLimits {
                    max_size: storage.max_file_size,
                    chunks_per_write,
                    chunks_per_read,
                    idle,
                    expires_after: Duration::from_secs(storage.tus_expiry_secs),
                },
            },
            auth,
            revoked,
            metrics,
        }))
    }
}

/// hyper's service function: never fails, errors become responses. Each request is
/// counted and logged by `observer` (see [`speedbox_common::observe`]).
pub async fn handle(
    state: Arc<AppState>,
    observer: Observer,
    client: SocketAddr,
    req: Request<Incoming>,
) -> std::result::Result<Response<Observed<Body>>, Infallible> {
    let (mut req, exchange) = observer.begin(req, client);
    // Access control, inside, finds out who the request comes from.
    if let Some(note) = exchange.principal_note() {
        req.extensions_mut().insert(note);
    }
    // An answer given before the body's end must still reach a client that sends on.
    let (req, linger) = linger::hold(req);
    let request_id = request_id(req.headers());
    let span = tracing::info_span!(
        "request",
        request_id = request_id.to_str().unwrap_or_default(),
        method = %req.method(),
        path = %req.uri().path(),
    );
    let origin = req.headers().get(http::header::ORIGIN).cloned();
    let is_tus = routes::is_tus(req.uri().path());
    async move {
        let mut response = match dispatch(&state, req).await {
            Ok(response) => response,
            Err(e) => {
                let status = e.status();
                if status.is_server_error() {
                    tracing::warn!(%status, error = %e, "request failed");
                } else {
                    tracing::info!(%status, error = %e, "request refused");
                }
                respond::error(e)
            }
        };
        let status = response.status();
        tracing::debug!(%status, "response");
        let headers = response.headers_mut();
        headers.insert(X_REQUEST_ID, request_id);
        if let Ok(v) = HeaderValue::from_str(&state.node_id) {
            headers.insert(X_SPEEDBOX_NODE, v);
        }
        if is_tus {
            tus::add_headers(status, headers);
        }
        cors::add_cors(origin.as_ref(), headers);
        linger.after(&mut response);
        Ok(exchange.respond(response))
    }
    .instrument(span)
    .await
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("[auth]: {}", .0.join("; "))]
    Auth(Vec<String>),
    #[error("invalid [mongodb] settings: {0}")]
    Database(#[from] crate::error::NodeError),
}

/// Access control, then one handler per route.
async fn dispatch(state: &AppState, req: Request<ReqBody>) -> Result<Response<Body>> {
    let (headers, query) = (req.headers(), req.uri().query());
    // A signed link's path form, `/s/<sig>/files/…`, is the file API under a signature.
    let (path_link, path) = link::split_path(req.uri().path());
    let route = routes::parse(req.method(), headers, path, query)?;
    let (auth, revoked) = (state.auth.current(), state.revoked.current());
    let proof = access::Proof {
        headers,
        query,
        link: path_link.or_else(|| link::from_query(query)),
    };
    let principal = &access::check(&auth, &revoked, &route, proof)?;
    if let (Some(sub), Some(note)) = (&principal.sub, req.extensions().get::<PrincipalNote>()) {
        note.set(sub);
    }
    let _uploading = state.metrics.uploading(&route);
    match route {
        Route::Preflight => cors::preflight(),
        Route::Health => health(&state.store, &state.node_id).await,
        Route::Metrics => Ok(state.metrics.respond()),
        Route::Get { name, head } => files::get(state, name, head, &req).await,
        Route::Put(name) => files::put(state, principal, name, req).await,
        Route::Delete(name) => files::delete(state, name, &req).await,
        Route::List(query) => files::list(state, principal, query).await,
        Route::Media(name) => media::status::get(state, name).await,
        Route::Multipart => files::post_form(state, principal, req).await,
        Route::Revoke => admin::revoke(state, principal, req).await,
        Route::Revoked => admin::revoked(state).await,
        Route::MintToken => admin::mint(state, req).await,
        Route::Sign => admin::sign(state, principal, req).await,
        Route::Tus(route) => tus::handle(&state.store, &state.tus, principal, route, req).await,
    }
}

/// `GET /healthz`: 200 when a real read of the database succeeds, else 503 with the error,
/// so a balancer stops sending requests to a node that cannot serve them.
async fn health(store: &Store, node_id: &str) -> Result<Response<Body>> {
    Ok(match store.check().await {
        Ok(()) => respond::json(StatusCode::OK, &json!({"status": "ok", "node": node_id})),
        Err(e) => respond::json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "unavailable", "node": node_id, "error": e.to_string()}),
        ),
    })
}
