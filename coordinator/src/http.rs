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
    refresh_groups(&c).await;
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

/// Descriptions (with lag) of the first `limit` groups the live agents
/// list, the number of groups listed, and how many agents did not answer.
async fn describe_groups(
    c: &Coordinator,
    limit: usize,
) -> Result<
    (
        Vec<ballast_client::group_admin::GroupDescription>,
        usize,
        usize,
    ),
    String,
> {
    use ballast_client::group_admin::{GroupAdmin, GroupAdminOptions};
    let addresses: Vec<String> = {
        let term = c
            .active_term()
            .map_err(|_| "not the active coordinator".to_string())?;
        let state = term.state();
        state
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .filter_map(|b| b.endpoints.first().map(|e| e.address.clone()))
            .filter(|a| !a.is_empty())
            .collect()
    };
    if addresses.is_empty() {
        return Ok((Vec::new(), 0, 0));
    }
    let admin =
        GroupAdmin::connect(addresses, GroupAdminOptions::default()).map_err(|e| e.to_string())?;
    let list = admin.list_groups().await.map_err(|e| e.to_string())?;
    // Eight at a time, in id order.
    let mut described = Vec::new();
    for chunk in list.groups.iter().take(limit).collect::<Vec<_>>().chunks(8) {
        let mut set = tokio::task::JoinSet::new();
        for (i, g) in chunk.iter().enumerate() {
            let (admin, id) = (admin.clone(), g.group_id.clone());
            set.spawn(async move { (i, admin.describe_group(&id).await.ok()) });
        }
        let mut got: Vec<_> = set.join_all().await;
        got.sort_by_key(|(i, _)| *i);
        described.extend(got.into_iter().filter_map(|(_, d)| d));
    }
    Ok((described, list.groups.len(), list.failed.len()))
}

/// Refresh the consumer-group gauges when they are older than
/// [`crate::metrics::GROUP_LAG_TTL`] (at most five seconds per scrape;
/// on failure the old values stay and the next scrape tries again).
async fn refresh_groups(c: &Coordinator) {
    use crate::metrics::{GROUP_LAG_TTL, MAX_GROUPS};
    let m = c.metrics();
    let fresh = m
        .group_refreshed
        .lock()
        .ok()
        .and_then(|g| *g)
        .is_some_and(|t| t.elapsed() < GROUP_LAG_TTL);
    if fresh {
        return;
    }
    if c.active_term().is_err() {
        m.groups.set(0);
        m.group_lag.clear();
        m.group_members.clear();
        return;
    }
    let got = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        describe_groups(c, MAX_GROUPS),
    )
    .await;
    let Ok(Ok((groups, listed, _))) = got else {
        return;
    };
    m.group_lag.clear();
    m.group_members.clear();
    m.groups.set(listed as i64);
    for d in &groups {
        let id = d.group.group_id.clone();
        let mut by_topic: std::collections::BTreeMap<&str, i64> = Default::default();
        for p in &d.partitions {
            if let Some(lag) = p.lag {
                *by_topic.entry(p.partition.topic.as_str()).or_default() += lag;
            }
        }
        for (topic, lag) in by_topic {
            m.group_lag
                .get_or_create(&vec![("group", id.clone()), ("topic", topic.to_string())])
                .set(lag);
        }
        m.group_members
            .get_or_create(&vec![("group", id)])
            .set(d.group.members.len() as i64);
    }
    if let Ok(mut g) = m.group_refreshed.lock() {
        *g = Some(std::time::Instant::now());
    }
}

/// The consumer groups of the cluster for the console: every live agent
/// lists the groups it coordinates; up to 50 are described with lag.
pub async fn groups_json(c: &Coordinator) -> serde_json::Value {
    use serde_json::json;
    let (described, _, failed) = match describe_groups(c, 50).await {
        Ok(x) => x,
        Err(e) => return json!({"groups": [], "error": e}),
    };
    let mut groups = Vec::new();
    for d in described {
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
            "group": d.group.group_id, "state": d.group.state, "epoch": d.group.group_epoch,
            "coordinator": d.group.coordinator, "lag": lag, "members": members,
        }));
    }
    json!({"groups": groups, "failed_agents": failed})
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
