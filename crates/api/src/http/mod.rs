//! Meridian's HTTP/JSON API (axum).
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/kv/{key}` | one key (`?consistency=`, `?min_revision=`, `?revision=`); `staleness_ms` |
//! | `PUT /v1/kv/{key}` | write the raw body as the value (`?prev_kv=true`, `Idempotency-Key`) |
//! | `DELETE /v1/kv/{key}` | delete a key, or with `?prefix=true` a prefix |
//! | `GET /v1/kv?prefix=` | one page of a scan (`limit`, `after`, `revision`, `consistency`, `min_revision`, `keys_only`) |
//! | `POST /v1/txn` | a transaction ([`txn`]) |
//! | `POST /v1/compact` | compact below `{"revision":N}` |
//! | `GET /v1/cluster` | the cluster view |
//! | `GET /v1/placement`, `GET/PUT/DELETE /v1/placement/{prefix}` | placement rules ([`placement`]) |
//! | `POST /v1/cluster/nodes/{id}/drain` | start draining a node; what it still holds |
//! | `DELETE /v1/cluster/nodes/{id}` | remove a drained node (409 `not_drained` before) |
//! | `/v1/streams/...` | event streams: create, publish, read, follow, consumer groups ([`streams`]) |
//! | `GET /v1/watch?key=` or `?prefix=` | a watch as server-sent events (`from_revision`, `prev_kv`, `progress_ms`; [`watch`]) |
//! | `/v1/leases...` | grant, list, time-to-live, keep-alive, revoke ([`lease`]) |
//! | `GET /healthz`, `/readyz`, `/metrics` | liveness, readiness, OpenMetrics text |
//! | `/v1/queues/...` | work queues ([`queue`]) |
//!
//! Keys in paths and query strings are UTF-8; `?encoding=base64` reads them as base64 instead.
//! Every error is `{"error":{"code":"...","message":"..."}}` ([`error`]).

pub mod error;
pub mod json;
pub mod kv;
pub mod lease;
pub mod placement;
pub mod queue;
pub mod request_id;
pub mod streams;
pub mod txn;
pub mod watch;

use crate::http::error::{HttpError, error_response};
use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use meridian_node::{ClientApi, ClusterView};
use meridian_types::MeridianError;

/// Content type of `/metrics`.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The HTTP routes alone, without a fallback. Bodies over `limits().request_bytes_max` are
/// refused with 413 `request_too_large`.
pub fn routes<A: ClientApi>(api: A) -> Router {
    let body_max = api.limits().request_bytes_max;
    Router::new()
        .route("/v1/kv", get(kv::scan::<A>))
        .route("/v1/kv/", any(kv::empty_key))
        .route(
            "/v1/kv/{*key}",
            get(kv::get_key::<A>)
                .put(kv::put_key::<A>)
                .delete(kv::delete_key::<A>),
        )
        .route("/v1/txn", post(txn::txn::<A>))
        .route("/v1/compact", post(kv::compact::<A>))
        .route("/v1/cluster", get(cluster::<A>))
        .route("/v1/placement", get(placement::list::<A>))
        .route(
            "/v1/placement/",
            get(placement::get_default::<A>)
                .put(placement::put_default::<A>)
                .delete(placement::delete_default::<A>),
        )
        .route(
            "/v1/placement/{*prefix}",
            get(placement::get_prefix::<A>)
                .put(placement::put_prefix::<A>)
                .delete(placement::delete_prefix::<A>),
        )
        .route("/v1/cluster/nodes/{id}/drain", post(drain_node::<A>))
        .route(
            "/v1/cluster/nodes/{id}",
            axum::routing::delete(remove_node::<A>),
        )
        .route(
            "/v1/streams",
            get(streams::list::<A>).post(streams::create::<A>),
        )
        .route(
            "/v1/streams/{name}",
            get(streams::get::<A>).delete(streams::delete::<A>),
        )
        .route("/v1/streams/{name}/messages", post(streams::publish::<A>))
        .route(
            "/v1/streams/{name}/partitions/{partition}/messages",
            get(streams::read::<A>),
        )
        .route(
            "/v1/streams/{name}/partitions/{partition}/follow",
            get(streams::follow::<A>),
        )
        .route(
            "/v1/streams/{name}/groups/{group}",
            get(streams::group_status::<A>),
        )
        .route(
            "/v1/streams/{name}/groups/{group}/heartbeat",
            post(streams::heartbeat::<A>),
        )
        .route(
            "/v1/streams/{name}/groups/{group}/leave",
            post(streams::leave::<A>),
        )
        .route(
            "/v1/streams/{name}/groups/{group}/commit",
            post(streams::commit::<A>),
        )
        .route("/v1/watch", get(watch::watch::<A>))
        .route("/v1/leases", get(lease::list::<A>).post(lease::grant::<A>))
        .route(
            "/v1/leases/{id}",
            get(lease::time_to_live::<A>).delete(lease::revoke::<A>),
        )
        .route("/v1/leases/{id}/keepalive", post(lease::keep_alive::<A>))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz::<A>))
        .route("/metrics", get(metrics::<A>))
        .merge(queue::routes::<A>())
        .layer(DefaultBodyLimit::max(body_max))
        .with_state(api)
}

/// A path no route serves: JSON 404.
pub async fn not_found(method: Method, uri: Uri) -> Response {
    let err = MeridianError::invalid(format!("no route for {method} {}", uri.path()));
    error_response(StatusCode::NOT_FOUND, &err)
}

/// A route that does not take this method: JSON 405.
pub async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let err = MeridianError::invalid(format!("{method} is not allowed on {}", uri.path()));
    error_response(StatusCode::METHOD_NOT_ALLOWED, &err)
}

async fn cluster<A: ClientApi>(State(api): State<A>) -> Result<Json<ClusterView>, HttpError> {
    Ok(Json(api.cluster_view().await?))
}

/// A node id from the path; a bad one is a JSON `invalid_argument`, not axum's plain text.
type NodePath = Result<axum::extract::Path<u64>, axum::extract::rejection::PathRejection>;

async fn drain_node<A: ClientApi>(
    State(api): State<A>,
    path: NodePath,
) -> Result<Json<meridian_node::DrainStatus>, HttpError> {
    let axum::extract::Path(id) = path.map_err(error::path_error)?;
    Ok(Json(api.drain_node(id).await?))
}

async fn remove_node<A: ClientApi>(
    State(api): State<A>,
    path: NodePath,
) -> Result<Json<serde_json::Value>, HttpError> {
    let axum::extract::Path(id) = path.map_err(error::path_error)?;
    api.remove_node(id).await?;
    Ok(Json(serde_json::json!({ "removed": id })))
}

async fn healthz() -> &'static str {
    "ok"
}

/// 200 `ok` when the node is in an initialised cluster and reaches the meta leader, else 503
/// with the reason.
async fn readyz<A: ClientApi>(State(api): State<A>) -> Response {
    match api.ready().await {
        Ok(()) => "ok".into_response(),
        Err(e) => error_response(StatusCode::SERVICE_UNAVAILABLE, &e),
    }
}

async fn metrics<A: ClientApi>(State(api): State<A>) -> Response {
    (
        [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        api.metrics_text(),
    )
        .into_response()
}
