//! The agent's HTTP endpoint (`--http-listen`): `GET /metrics` in
//! Prometheus text format. Read-only.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::replica::ReplicaManager;

async fn metrics(State(replicas): State<Arc<ReplicaManager>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        replicas.metrics_text(),
    )
}

/// Serve on `listener` until `shutdown` resolves.
pub async fn serve(
    replicas: Arc<ReplicaManager>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = Router::new()
        .route("/metrics", get(metrics))
        .with_state(replicas);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
