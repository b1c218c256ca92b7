//! The cluster pieces the coordinator bench puts together: the in-process
//! coordinator, the stand-in brokers and in-memory agents, the creation
//! driver (which times the calls it makes), and the `ballast coordinator`
//! processes with their logs. Bench code: it bails with a message rather
//! than recover, and asserts nothing about durations.

use super::*;

pub(crate) async fn wait_true(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// A coordinator running inside the bench process, serving gRPC on a free
/// loopback port.
#[derive(Debug)]
pub(crate) struct InProcess {
    coordinator: Coordinator,
    pub(crate) address: String,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl InProcess {
    pub(crate) async fn start(endpoints: &[String], cluster: &str) -> Result<InProcess> {
        let store = EtcdStore::connect(endpoints, EtcdOptions::default()).await?;
        let (listener, bound) = service::bind("127.0.0.1:0").await?;
        let address = bound.to_string();
        let coordinator = Coordinator::new(
            CoordinatorConfig::new(cluster, address.clone()),
            Arc::new(store),
        )
        .map_err(|e| anyhow!("coordinator config: {e}"))?;
        let (stop, rx) = watch::channel(false);
        let serve = tokio::spawn({
            let c = coordinator.clone();
            let rx = rx.clone();
            async move {
                if let Err(e) = service::serve(c, listener, wait_true(rx)).await {
                    eprintln!("coordinator gRPC server failed: {e}");
                }
            }
        });
        let run = tokio::spawn(coordinator.clone().run(wait_true(rx)));
        Ok(InProcess {
            coordinator,
            address,
            stop,
            tasks: vec![serve, run],
        })
    }

    pub(crate) fn term(&self) -> Result<Arc<Term>> {
        match self.coordinator.role() {
            Role::Active(term) => Ok(term),
            Role::Standby { .. } => bail!("the in-process coordinator is not active"),
        }
    }

    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

/// An agent that keeps what it is pushed in memory and acknowledges it:
/// the coordinator pays its whole push cost, the agent side costs only the
/// decoding and a map update (no disk, no replication).
#[derive(Debug, Clone)]
pub(crate) struct MemAgent {
    broker_id: i32,
    state: Arc<std::sync::Mutex<MemState>>,
}

#[derive(Debug, Default)]
pub(crate) struct MemState {
    applied: u64,
    partitions: HashMap<(String, i32), pb::AssignedPartition>,
}

/// The largest push any in-memory agent received: (encoded bytes,
/// partitions listed).
pub(crate) static LARGEST_PUSH: std::sync::Mutex<(usize, usize)> = std::sync::Mutex::new((0, 0));

impl MemAgent {
    fn state(&self) -> std::sync::MutexGuard<'_, MemState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[tonic::async_trait]
impl AgentControl for MemAgent {
    async fn apply(
        &self,
        request: tonic::Request<pb::ApplyRequest>,
    ) -> Result<tonic::Response<pb::ApplyResponse>, tonic::Status> {
        let req = request.into_inner();
        {
            let bytes = prost::Message::encoded_len(&req);
            let mut largest = LARGEST_PUSH.lock().unwrap_or_else(|e| e.into_inner());
            if bytes > largest.0 {
                *largest = (bytes, req.partitions.len());
            }
        }
        let mut state = self.state();
        if req.full {
            state.partitions.clear();
        }
        for r in &req.removed {
            state.partitions.remove(&(r.topic.clone(), r.partition));
        }
        for p in req.partitions {
            state.partitions.insert((p.topic.clone(), p.partition), p);
        }
        state.applied = req.version;
        Ok(tonic::Response::new(pb::ApplyResponse {
            applied_version: req.version,
            hosted: Vec::new(),
        }))
    }

    async fn get_state(
        &self,
        _: tonic::Request<pb::GetAgentStateRequest>,
    ) -> Result<tonic::Response<pb::GetAgentStateResponse>, tonic::Status> {
        let state = self.state();
        Ok(tonic::Response::new(pb::GetAgentStateResponse {
            broker_id: self.broker_id,
            applied_version: state.applied,
            partitions: state.partitions.values().cloned().collect(),
            registered: true,
            ..Default::default()
        }))
    }
}

/// A broker that registers and heartbeats like [`BrokerStandIn`] but names a
/// reachable control address served by a [`MemAgent`], so pushes succeed.
/// Dropping it stops heartbeats and the server (as a crash would).
#[derive(Debug)]
pub(crate) struct MemBroker {
    pub(crate) control: String,
    tasks: Vec<JoinHandle<()>>,
}

impl MemBroker {
    pub(crate) async fn start(id: i32, coordinators: Vec<String>) -> Result<MemBroker> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let control = listener.local_addr()?.to_string();
        let agent = MemAgent {
            broker_id: id,
            state: Arc::default(),
        };
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(
                    AgentControlServer::new(agent)
                        .max_decoding_message_size(1 << 30)
                        .max_encoding_message_size(1 << 30),
                )
                .serve_with_incoming(
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                )
                .await;
        });
        let registrar = tokio::spawn(register_and_heartbeat(id, control.clone(), coordinators));
        Ok(MemBroker {
            control,
            tasks: vec![server, registrar],
        })
    }
}

impl Drop for MemBroker {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The shared stand-in loop, with a control address of our choosing.
async fn register_and_heartbeat(id: i32, control: String, coordinators: Vec<String>) {
    ballast_tests::cluster::register_and_heartbeat(
        id,
        String::new(),
        control,
        coordinators,
        std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0)),
    )
    .await;
}

/// Which stand-in brokers a scenario registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BrokerKind {
    /// [`BrokerStandIn`]: pushes to it fail (connection refused) and are
    /// retried by the coordinator as full syncs with capped backoff.
    StandIn,
    /// [`MemBroker`]: pushes succeed and are kept in memory.
    Memory,
    /// Registers and heartbeats with a control address that is not a valid
    /// URI, so the coordinator starts no push task for it at all: what is
    /// left is the coordinator's state and request handling.
    NoPush,
}

impl BrokerKind {
    pub(crate) fn short(self) -> &'static str {
        match self {
            BrokerKind::StandIn => "standin",
            BrokerKind::Memory => "agents",
            BrokerKind::NoPush => "nopush",
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            BrokerKind::StandIn => "stand-in brokers (pushes refused)",
            BrokerKind::Memory => "in-memory agents (pushes applied and acknowledged)",
            BrokerKind::NoPush => "brokers without a control address (no pushes at all)",
        }
    }
}

#[derive(Debug)]
pub(crate) enum Brokers {
    StandIn(#[allow(dead_code)] Vec<BrokerStandIn>),
    Memory(#[allow(dead_code)] Vec<MemBroker>),
    NoPush(Vec<JoinHandle<()>>),
}

impl Drop for Brokers {
    fn drop(&mut self) {
        if let Brokers::NoPush(tasks) = self {
            for t in tasks {
                t.abort();
            }
        }
    }
}

/// A control address the coordinator cannot even parse (see
/// [`BrokerKind::NoPush`]).
pub(crate) const NO_AGENT: &str = "no agent";

pub(crate) async fn start_brokers(
    kind: BrokerKind,
    count: i32,
    coordinators: &[String],
) -> Result<Brokers> {
    Ok(match kind {
        BrokerKind::StandIn => Brokers::StandIn(
            (1..=count)
                .map(|id| BrokerStandIn::start(id, "", coordinators.to_vec()))
                .collect(),
        ),
        BrokerKind::Memory => {
            let mut v = Vec::new();
            for id in 1..=count {
                v.push(MemBroker::start(id, coordinators.to_vec()).await?);
            }
            Brokers::Memory(v)
        }
        BrokerKind::NoPush => Brokers::NoPush(
            (1..=count)
                .map(|id| {
                    tokio::spawn(register_and_heartbeat(
                        id,
                        NO_AGENT.to_owned(),
                        coordinators.to_vec(),
                    ))
                })
                .collect(),
        ),
    })
}

/// Wait until `address` is active with `brokers` live brokers and the
/// offsets topic exists.
pub(crate) async fn wait_ready(address: &str, brokers: u32) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut client = admin(address);
        if let Ok(info) = client.get_cluster_info(pb::GetClusterInfoRequest {}).await {
            let info = info.into_inner();
            if info.active
                && info.live_brokers == brokers
                && let Ok(t) = client
                    .list_topics(pb::ListTopicsRequest {
                        include_internal: true,
                    })
                    .await
                && t.get_ref().topics.iter().any(|t| t.name == OFFSETS_TOPIC)
            {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!(
                "{address}: not active with {brokers} live brokers and {OFFSETS_TOPIC} within {WAIT:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What [`create_topics`] measured.
#[derive(Debug)]
pub(crate) struct Created {
    pub(crate) elapsed: Duration,
    pub(crate) latencies: Vec<Duration>,
    /// Calls that failed on `address` and were retried on whichever of the
    /// fallback addresses was active (leadership moved meanwhile).
    pub(crate) retried: usize,
}

/// Create `names` (each `partitions` x `rf`) on `address` with
/// `concurrency` callers, each on its own connection. A call refused
/// because leadership moved is retried through the active one of
/// `fallback` (same request id, so at most one creation) when `fallback`
/// is not empty, else it fails the run.
pub(crate) async fn create_topics(
    address: &str,
    fallback: &[String],
    names: &[String],
    partitions: i32,
    rf: i32,
    concurrency: usize,
) -> Result<Created> {
    let names = Arc::new(names.to_vec());
    let fallback = Arc::new(fallback.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let retried = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..concurrency).map(|_| admin(address)).collect();
    // Connect every caller before the clock starts.
    for c in &clients {
        c.clone()
            .get_cluster_info(pb::GetClusterInfoRequest {})
            .await?;
    }
    let start = Instant::now();
    let workers: Vec<JoinHandle<Result<Vec<Duration>>>> = clients
        .into_iter()
        .map(|mut client| {
            let (names, fallback, next, retried) = (
                names.clone(),
                fallback.clone(),
                next.clone(),
                retried.clone(),
            );
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(name) = names.get(i) else {
                        return Ok(latencies);
                    };
                    let req = pb::CreateTopicRequest {
                        name: name.clone(),
                        partitions,
                        replication_factor: rf,
                        request_id: name.clone(),
                        ..Default::default()
                    };
                    let sent = Instant::now();
                    match client.create_topic(req.clone()).await {
                        Ok(_) => {}
                        Err(s)
                            if !fallback.is_empty()
                                && matches!(
                                    s.code(),
                                    tonic::Code::FailedPrecondition
                                        | tonic::Code::Unavailable
                                        | tonic::Code::Unknown
                                        | tonic::Code::DeadlineExceeded
                                ) =>
                        {
                            retried.fetch_add(1, Ordering::Relaxed);
                            on_active(&fallback, WAIT, |mut c| {
                                let req = req.clone();
                                async move { c.create_topic(req).await }
                            })
                            .await
                            .with_context(|| format!("CreateTopic {name} (retried)"))?;
                        }
                        Err(s) => return Err(anyhow!("CreateTopic {name}: {s}")),
                    }
                    latencies.push(sent.elapsed());
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(names.len());
    for w in workers {
        latencies.extend(w.await??);
    }
    Ok(Created {
        elapsed: start.elapsed(),
        latencies,
        retried: retried.load(Ordering::Relaxed),
    })
}

pub(crate) fn percentile(latencies: &mut [Duration], q: f64) -> Duration {
    if latencies.is_empty() {
        return Duration::ZERO;
    }
    latencies.sort();
    let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
    latencies[i]
}

/// The cluster-wide partition count and topics as the active coordinator
/// describes them (internal topics included).
pub(crate) async fn describe_all(address: &str) -> Result<Vec<pb::TopicDescription>> {
    Ok(admin(address)
        .describe_topics(pb::DescribeTopicsRequest {
            names: Vec::new(),
            filter: pb::PartitionFilter::All as i32,
            include_internal: true,
        })
        .await?
        .into_inner()
        .topics)
}

pub(crate) fn check_binary() -> Result<()> {
    ballast_tests::bin_path::workspace_bin("ballast").map_err(|e| {
        anyhow!(
            "{e}: the process scenarios run the `ballast` binary of the bench's profile; \
             build it first with `cargo build --release -p ballast-cli`"
        )
    })?;
    Ok(())
}

/// `ballast coordinator` on `endpoints` at a fixed loopback port (so a
/// restart keeps its address), with [`FAST`] timings, `extra` flag / value pairs overriding them.
pub(crate) fn coordinator_process(
    endpoints: &[String],
    port: u16,
    extra: &[&str],
) -> Result<BallastProcess> {
    let etcd = endpoints.join(",");
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec![
        "coordinator",
        "--etcd",
        &etcd,
        "--listen",
        &listen,
        "--cluster-id",
        CLUSTER,
    ];
    // FAST is flag / value pairs; a flag in `extra` replaces FAST's value.
    for pair in FAST.chunks(2) {
        if !extra.chunks(2).any(|e| e[0] == pair[0]) {
            args.extend_from_slice(pair);
        }
    }
    args.extend_from_slice(extra);
    BallastProcess::start(&args, Duration::from_secs(20))
}

/// With `BALLAST_BENCH_KEEP_LOGS=<dir>`, copy each process's log there as
/// `<scenario>-<i>.log` (the temp dirs go when the processes are dropped).
pub(crate) fn keep_logs(scenario: &str, procs: &[&BallastProcess]) {
    let Some(dir) = std::env::var_os("BALLAST_BENCH_KEEP_LOGS") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let _ = std::fs::create_dir_all(&dir);
    for (i, p) in procs.iter().enumerate() {
        let to = dir.join(format!("{scenario}-{i}.log"));
        if let Err(e) = std::fs::copy(p.log_path(), &to) {
            eprintln!("cannot keep {}: {e}", p.log_path().display());
        }
    }
}

/// Print the last lines of each process's log (after a failure).
pub(crate) fn dump_logs(procs: &[&BallastProcess]) {
    for p in procs {
        let log = p.log();
        let lines: Vec<&str> = log.lines().collect();
        eprintln!(
            "---- last lines of {} ({}) ----\n{}",
            p.address(),
            p.log_path().display(),
            lines[lines.len().saturating_sub(30)..].join("\n")
        );
    }
}
