//! The coordinator's HTTP endpoint (`--http-listen`): `GET /metrics` in
//! Prometheus text format, the web console at `GET /ui` (one static page,
//! compiled in: nothing is downloaded at run time) and the JSON it polls,
//! `GET /api/cluster`. Read-only; the gauges are refreshed from the active
//! term's state at each scrape.

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

/// The console page.
const UI: &str = include_str!("ui.html");

async fn ui() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        UI,
    )
}

/// What the console shows, as JSON.
pub fn cluster_json(c: &Coordinator) -> serde_json::Value {
    use serde_json::json;
    let Ok(term) = c.active_term() else {
        return json!({
            "active": false,
            "active_address": c.active_address().unwrap_or_default(),
        });
    };
    let (_, stuck) = term.reassignment_summary();
    let auto_balance = term.auto_balance_summary();
    let r = term.describe_reassignment();
    let state = term.state();
    let brokers: Vec<serde_json::Value> = crate::push::broker_infos(&state)
        .into_iter()
        .map(|b| {
            json!({
                "id": b.broker_id,
                "rack": b.rack,
                "fenced": b.fenced,
                "replicas": b.replicas,
                "leaders": b.leaders,
                "address": b.endpoints.first().map(|e| e.address.clone()).unwrap_or_default(),
            })
        })
        .collect();
    let (total, offline, under, under_min) = crate::service::counts(&state);
    let topics: Vec<serde_json::Value> = state
        .topics
        .values()
        .map(|t| {
            let d = crate::service::describe_topic(t, pb::PartitionFilter::All);
            let problems: Vec<serde_json::Value> = d
                .partitions
                .iter()
                .filter(|p| p.offline || p.under_replicated || p.under_min_isr)
                .map(|p| {
                    json!({
                        "partition": p.partition, "leader": p.leader,
                        "replicas": p.replicas, "isr": p.isr,
                        "offline": p.offline, "under_replicated": p.under_replicated,
                        "under_min_isr": p.under_min_isr,
                    })
                })
                .collect();
            json!({
                "name": d.name,
                "partitions": d.partitions.len(),
                "replication_factor": d.replication_factor,
                "internal": d.internal,
                "problems": problems,
            })
        })
        .collect();
    drop(state);
    let move_state = |s: i32| match pb::PartitionMoveState::try_from(s) {
        Ok(pb::PartitionMoveState::Pending) => "pending",
        Ok(pb::PartitionMoveState::Moving) => "moving",
        Ok(pb::PartitionMoveState::Complete) => "complete",
        Ok(pb::PartitionMoveState::Cancelled) => "cancelled",
        Ok(pb::PartitionMoveState::Failed) => "failed",
        Ok(pb::PartitionMoveState::Reverting) => "reverting",
        _ => "unknown",
    };
    let reassignment = json!({
        "exists": r.exists,
        "id": r.id,
        "state": r.state,
        "partitions": r.partitions.iter().map(|p| json!({
            "topic": p.topic, "partition": p.partition, "state": move_state(p.state),
            "original": p.original, "target": p.target,
            "bytes_total": p.bytes_total, "bytes_copied": p.bytes_copied,
            "detail": p.detail, "stuck": p.stuck,
        })).collect::<Vec<_>>(),
    });
    json!({
        "active": true,
        "cluster_id": c.config().cluster_id,
        "epoch": term.epoch,
        "auto_balance": auto_balance,
        "stuck": stuck,
        "counts": {
            "partitions": total, "offline": offline,
            "under_replicated": under, "under_min_isr": under_min,
        },
        "brokers": brokers,
        "topics": topics,
        "reassignment": reassignment,
    })
}

async fn api_cluster(
    axum::extract::State(c): axum::extract::State<Coordinator>,
) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        cluster_json(&c).to_string(),
    )
}

/// The consumer groups of the cluster for the console: every live agent
/// lists the groups it coordinates; up to 50 are described with lag.
pub async fn groups_json(c: &Coordinator) -> serde_json::Value {
    use ballast_client::group_admin::{GroupAdmin, GroupAdminOptions};
    use serde_json::json;
    let Ok(term) = c.active_term() else {
        return json!({"groups": [], "error": "not the active coordinator"});
    };
    let addresses: Vec<String> = {
        let state = term.state();
        state
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .filter_map(|b| b.endpoints.first().map(|e| e.address.clone()))
            .filter(|a| !a.is_empty())
            .collect()
    };
    drop(term);
    if addresses.is_empty() {
        return json!({"groups": []});
    }
    let admin = match GroupAdmin::connect(addresses, GroupAdminOptions::default()) {
        Ok(a) => a,
        Err(e) => return json!({"groups": [], "error": e.to_string()}),
    };
    let list = match admin.list_groups().await {
        Ok(l) => l,
        Err(e) => return json!({"groups": [], "error": e.to_string()}),
    };
    let mut groups = Vec::new();
    for g in list.groups.iter().take(50) {
        let Ok(d) = admin.describe_group(&g.group_id).await else {
            continue;
        };
        let lag: i64 = d.partitions.iter().filter_map(|p| p.lag).sum();
        let members: Vec<serde_json::Value> = d
            .group
            .members
            .iter()
            .map(|m| {
                let assignment: Vec<String> = m
                    .assignment
                    .iter()
                    .map(|t| {
                        format!(
                            "{}:{}",
                            t.topic,
                            t.partitions
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(",")
                        )
                    })
                    .collect();
                json!({
                    "member_id": m.member_id, "client_id": m.client_id,
                    "state": m.state, "assignment": assignment,
                })
            })
            .collect();
        groups.push(json!({
            "group": g.group_id, "state": d.group.state, "epoch": d.group.group_epoch,
            "coordinator": d.group.coordinator, "lag": lag, "members": members,
        }));
    }
    json!({"groups": groups, "failed_agents": list.failed.len()})
}

async fn api_groups(
    axum::extract::State(c): axum::extract::State<Coordinator>,
) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        groups_json(&c).await.to_string(),
    )
}

/// The router.
pub fn router(c: Coordinator) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/ui", get(ui))
        .route("/ui/", get(ui))
        .route("/api/cluster", get(api_cluster))
        .route("/api/groups", get(api_groups))
        .with_state(c)
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
