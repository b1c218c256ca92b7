//! The coordinator's HTTP endpoint (`--http-listen`): `GET /metrics` in
//! Prometheus text format. Read-only; the gauges are refreshed from the
//! active term's state at each scrape.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use ballast_proto::v1::{self as pb};

use crate::ha::Coordinator;

/// Set the state gauges from the active term (zeros on a standby).
pub fn refresh(c: &Coordinator) {
    let m = c.metrics();
    let Ok(term) = c.active_term() else {
        m.active.set(0);
        m.epoch.set(0);
        m.brokers.clear();
        m.problem_partitions.clear();
        m.reassignment_partitions.clear();
        m.reassignment_bytes_left.set(0);
        return;
    };
    m.active.set(1);
    m.epoch.set(term.epoch);
    {
        let state = term.state();
        let fenced = state.brokers.values().filter(|b| b.fenced).count() as i64;
        m.brokers
            .get_or_create(&vec![("state", "alive")])
            .set(state.brokers.len() as i64 - fenced);
        m.brokers
            .get_or_create(&vec![("state", "fenced")])
            .set(fenced);
        m.topics.set(state.topics.len() as i64);
        let (total, offline, under, under_min) = crate::service::counts(&state);
        m.partitions.set(total as i64);
        for (problem, n) in [
            ("offline", offline),
            ("under_replicated", under),
            ("under_min_isr", under_min),
        ] {
            m.problem_partitions
                .get_or_create(&vec![("problem", problem)])
                .set(n as i64);
        }
    }
    let r = term.describe_reassignment();
    let mut by_state = [0i64; 7];
    let mut left = 0u64;
    for p in &r.partitions {
        if let Some(n) = by_state.get_mut(p.state as usize) {
            *n += 1;
        }
        if p.state == pb::PartitionMoveState::Moving as i32
            || p.state == pb::PartitionMoveState::Pending as i32
        {
            left += p.bytes_total.saturating_sub(p.bytes_copied);
        }
    }
    for (i, name) in [
        (1, "pending"),
        (2, "moving"),
        (3, "complete"),
        (4, "cancelled"),
        (5, "failed"),
        (6, "reverting"),
    ] {
        m.reassignment_partitions
            .get_or_create(&vec![("state", name)])
            .set(by_state[i]);
    }
    m.reassignment_bytes_left.set(left as i64);
}

async fn metrics(axum::extract::State(c): axum::extract::State<Coordinator>) -> impl IntoResponse {
    refresh(&c);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        c.metrics().encode(),
    )
}

/// The router.
pub fn router(c: Coordinator) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(c)
}

/// Serve `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    c: Coordinator,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(c))
        .with_graceful_shutdown(shutdown)
        .await
}
