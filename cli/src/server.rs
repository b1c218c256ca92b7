//! Long-running server roles: `ballast coordinator`, and `ballast dev` (a whole
//! cluster in one process on the embedded store).
//!
//! Each prints one line on stdout once it serves (tests and scripts wait for
//! it), logs to stderr with `tracing`, and stops cleanly on SIGINT/SIGTERM.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ballast_coordinator::store::{EtcdOptions, EtcdStore, EtcdTls, LocalStore, MetadataStore};
use ballast_coordinator::{Coordinator, CoordinatorConfig, Role};
use clap::Args;

/// Flags of `ballast coordinator`.
#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    /// etcd endpoints, comma-separated (http://host:port).
    #[arg(
        long,
        env = "BALLAST_ETCD",
        value_delimiter = ',',
        required_unless_present = "local_store"
    )]
    etcd: Vec<String>,
    /// TLS to etcd (`https://` endpoints): the CA (PEM) etcd's certificate
    /// chains to.
    #[arg(long, env = "BALLAST_ETCD_CA", value_name = "FILE")]
    etcd_ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for etcd's `--client-cert-auth`.
    #[arg(
        long,
        env = "BALLAST_ETCD_CERT",
        value_name = "FILE",
        requires = "etcd_key"
    )]
    etcd_cert: Option<std::path::PathBuf>,
    /// Key (PEM) of --etcd-cert.
    #[arg(
        long,
        env = "BALLAST_ETCD_KEY",
        value_name = "FILE",
        requires = "etcd_cert"
    )]
    etcd_key: Option<std::path::PathBuf>,
    /// Use the embedded store in this file instead of etcd (one machine only).
    #[arg(long, env = "BALLAST_LOCAL_STORE", conflicts_with = "etcd")]
    local_store: Option<std::path::PathBuf>,
    /// Address to serve the admin and broker-control API on.
    #[arg(long, env = "BALLAST_LISTEN", default_value = "127.0.0.1:9410")]
    listen: String,
    /// Address others reach this coordinator at (default: the bound address).
    #[arg(long, env = "BALLAST_ADVERTISE")]
    advertise: Option<String>,
    /// Cluster id (the etcd key prefix is /ballast/<cluster id>/).
    #[arg(long, default_value = "ballast", env = "BALLAST_CLUSTER_ID")]
    cluster_id: String,
    /// TTL of the leadership lease.
    #[arg(long, env = "BALLAST_LEASE_TTL", default_value = "6s", value_parser = humantime::parse_duration)]
    lease_ttl: Duration,
    /// Stop acting when the lease was not renewed for this long (< lease TTL).
    #[arg(long, env = "BALLAST_RENEW_DEADLINE", default_value = "4s", value_parser = humantime::parse_duration)]
    renew_deadline: Duration,
    /// Heartbeat interval given to agents.
    #[arg(long, env = "BALLAST_HEARTBEAT_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    heartbeat_interval: Duration,
    /// Fence a broker after this long without a heartbeat.
    #[arg(long, env = "BALLAST_SESSION_TIMEOUT", default_value = "9s", value_parser = humantime::parse_duration)]
    session_timeout: Duration,
    /// Partitions of __consumer_offsets (fixed once it exists).
    #[arg(long, env = "BALLAST_OFFSETS_PARTITIONS", default_value_t = 50)]
    offsets_partitions: i32,
    /// Replication factor of __consumer_offsets (capped at the live brokers).
    #[arg(long, env = "BALLAST_OFFSETS_REPLICATION_FACTOR", default_value_t = 3)]
    offsets_replication_factor: i32,
    /// How often to check leader imbalance (0s: never).
    #[arg(long, env = "BALLAST_LEADER_IMBALANCE_CHECK_INTERVAL", default_value = "300s", value_parser = humantime::parse_duration)]
    leader_imbalance_check_interval: Duration,
    /// Full push to every agent at least this often.
    #[arg(long, env = "BALLAST_FULL_SYNC_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    full_sync_interval: Duration,
    /// Default bound of reassignment moves in flight involving one broker
    /// (`reassign execute --max-moves-per-broker` overrides it per plan).
    #[arg(
        long,
        env = "BALLAST_REASSIGNMENT_MAX_MOVES_PER_BROKER",
        default_value_t = 5
    )]
    reassignment_max_moves_per_broker: u32,
    /// Default bound of reassignment moves in flight in the cluster.
    #[arg(long, env = "BALLAST_REASSIGNMENT_MAX_MOVES", default_value_t = 50)]
    reassignment_max_moves: u32,
    /// Throttle for followers out of the ISR catching up (e.g. a broker back
    /// from a long outage), per broker: `50MiB/s`; default unthrottled.
    #[arg(long, env = "BALLAST_CATCH_UP_THROTTLE", value_parser = crate::reassign::parse_rate)]
    catch_up_throttle: Option<u64>,
    /// Continuous balancing: when a broker joins empty, a broker has been
    /// down longer than --auto-balance-grace, or replica counts drift past
    /// --auto-balance-threshold, propose and execute a plan by itself.
    #[arg(long, env = "BALLAST_AUTO_BALANCE")]
    auto_balance: bool,
    /// At most one automatic reassignment this often.
    #[arg(long, env = "BALLAST_AUTO_BALANCE_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    auto_balance_interval: Duration,
    /// How often the continuous balancer looks at the cluster.
    #[arg(long, env = "BALLAST_AUTO_BALANCE_CHECK_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    auto_balance_check_interval: Duration,
    /// Drain a broker that has been down (fenced) this long.
    #[arg(long, env = "BALLAST_AUTO_BALANCE_GRACE", default_value = "10m", value_parser = humantime::parse_duration)]
    auto_balance_grace: Duration,
    /// Rebalance when replica counts per broker spread (max - min) past this
    /// percentage of the mean.
    #[arg(long, env = "BALLAST_AUTO_BALANCE_THRESHOLD", default_value_t = 10)]
    auto_balance_threshold: u32,
    /// Throttle of automatic reassignments, per broker (`50MiB/s`).
    #[arg(long, env = "BALLAST_AUTO_BALANCE_THROTTLE", value_parser = crate::reassign::parse_rate)]
    auto_balance_throttle: Option<u64>,
    /// Serve `GET /metrics` (Prometheus text format) over HTTP on this
    /// address (default: off).
    #[arg(long, env = "BALLAST_HTTP_LISTEN")]
    http_listen: Option<String>,
    /// Report a moving partition as stuck when its new replicas copy
    /// nothing for this long (shown by `cluster status`).
    #[arg(long, env = "BALLAST_REASSIGNMENT_STUCK_AFTER", default_value = "5m", value_parser = humantime::parse_duration)]
    reassignment_stuck_after: Duration,
    /// Log lines as text or JSON (one object per line).
    #[arg(long, env = "BALLAST_LOG_FORMAT", value_enum, default_value_t = crate::agent::LogFormat::Text)]
    log_format: crate::agent::LogFormat,
    /// A file holding the admin token: admin requests without
    /// `authorization: Bearer <token>` are refused with PermissionDenied
    /// (the token is never logged or printed).
    #[arg(long, env = "BALLAST_ADMIN_TOKEN_FILE", value_name = "FILE")]
    admin_token_file: Option<std::path::PathBuf>,
    /// Admin operations are also allowed to clients whose certificate
    /// (verified against --tls-ca) has this organizational unit
    /// (`OU=<ROLE>`) in its subject.
    #[arg(long, env = "BALLAST_ADMIN_CERT_ROLE", value_name = "ROLE")]
    admin_cert_role: Option<String>,
    /// Read options from this TOML file (keys are the flag names); the
    /// environment (`BALLAST_<NAME>`) and flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
}

/// Install the stderr logger (RUST_LOG overrides the default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// `ballast coordinator`.
pub fn coordinator(
    args: CoordinatorArgs,
    security: &crate::security::SecurityArgs,
) -> anyhow::Result<String> {
    // `--config` was expanded into flags before parsing (`config.rs`).
    debug_assert!(args.config.is_none());
    let serve_security = ballast_coordinator::service::ServeSecurity {
        tls: security.server()?,
        admin: ballast_net::AdminAuth {
            token: args
                .admin_token_file
                .as_deref()
                .map(|p| ballast_net::read_token("--admin-token-file", p))
                .transpose()?,
            cert_role: args.admin_cert_role.clone(),
        },
    };
    if serve_security.admin.cert_role.is_some()
        && serve_security
            .tls
            .as_ref()
            .is_none_or(|t| t.client_ca.is_none())
    {
        bail!("--admin-cert-role needs mutual TLS: --tls-ca, --tls-cert and --tls-key");
    }
    crate::agent::init_logging(args.log_format)?;
    runtime()?.block_on(async move {
        let store: Arc<dyn MetadataStore> = match &args.local_store {
            Some(path) => Arc::new(
                LocalStore::open(path)
                    .await
                    .with_context(|| format!("--local-store {}", path.display()))?,
            ),
            None => {
                if args.etcd.is_empty() {
                    bail!("--etcd: give at least one endpoint (or --local-store)");
                }
                connect_etcd(&args.etcd, etcd_tls(&args)?).await?
            }
        };
        let (listener, bound) = ballast_coordinator::service::bind(&args.listen)
            .await
            .with_context(|| format!("--listen {}", args.listen))?;
        let advertised = args.advertise.clone().unwrap_or_else(|| bound.to_string());
        let mut config = CoordinatorConfig::new(args.cluster_id.clone(), advertised.clone());
        config.lease_ttl = args.lease_ttl;
        config.renew_deadline = args.renew_deadline;
        config.heartbeat_interval = args.heartbeat_interval;
        config.session_timeout = args.session_timeout;
        config.offsets_partitions = args.offsets_partitions;
        config.offsets_replication_factor = args.offsets_replication_factor;
        config.leader_imbalance_check_interval = args.leader_imbalance_check_interval;
        config.full_sync_interval = args.full_sync_interval;
        config.reassignment_max_moves_per_broker = args.reassignment_max_moves_per_broker;
        config.reassignment_max_moves = args.reassignment_max_moves;
        config.catch_up_throttle_bytes_per_sec = args.catch_up_throttle.unwrap_or(0);
        config.auto_balance = args.auto_balance;
        config.auto_balance_interval = args.auto_balance_interval;
        config.auto_balance_check_interval = args.auto_balance_check_interval;
        config.auto_balance_grace = args.auto_balance_grace;
        config.auto_balance_threshold_percent = args.auto_balance_threshold;
        config.auto_balance_throttle_bytes_per_sec = args.auto_balance_throttle.unwrap_or(0);
        config.reassignment_stuck_after = args.reassignment_stuck_after;
        let coordinator = Coordinator::new(config, store)
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        println!("coordinator listening on {advertised}");
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let http = match &args.http_listen {
            Some(address) => {
                let (l, bound) = ballast_coordinator::service::bind(address)
                    .await
                    .with_context(|| format!("--http-listen {address}"))?;
                println!("coordinator http on {bound}");
                Some(tokio::spawn(ballast_coordinator::http::serve(
                    coordinator.clone(),
                    l,
                    wait_true(stop_rx.clone()),
                )))
            }
            None => None,
        };
        let serve = tokio::spawn(ballast_coordinator::service::serve_secured(
            coordinator.clone(),
            listener,
            serve_security,
            wait_true(stop_rx.clone()),
        ));
        let run = tokio::spawn(coordinator.clone().run(wait_true(stop_rx)));
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
        let _ = run.await;
        let _ = serve.await;
        if let Some(h) = http {
            let _ = h.await;
        }
        Ok(String::new())
    })
}

async fn wait_true(mut rx: tokio::sync::watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Connect to etcd, retrying while it is unreachable ("metadata store
/// unavailable" in the log) instead of giving up: the coordinator must come
/// up by itself once etcd does.
/// `--etcd-ca`, `--etcd-cert`, `--etcd-key` read (`None` without a CA).
fn etcd_tls(args: &CoordinatorArgs) -> anyhow::Result<Option<EtcdTls>> {
    let read = |flag: &str, p: &std::path::Path| {
        std::fs::read(p).with_context(|| format!("{flag} {}", p.display()))
    };
    let Some(ca) = &args.etcd_ca else {
        if args.etcd_cert.is_some() {
            bail!("--etcd-cert needs --etcd-ca");
        }
        return Ok(None);
    };
    let identity = match (&args.etcd_cert, &args.etcd_key) {
        (Some(c), Some(k)) => Some((read("--etcd-cert", c)?, read("--etcd-key", k)?)),
        _ => None,
    };
    Ok(Some(EtcdTls {
        ca: read("--etcd-ca", ca)?,
        identity,
    }))
}

async fn connect_etcd(
    endpoints: &[String],
    tls: Option<EtcdTls>,
) -> anyhow::Result<Arc<dyn MetadataStore>> {
    let mut backoff = Duration::from_millis(200);
    let options = EtcdOptions {
        tls,
        ..EtcdOptions::default()
    };
    loop {
        match EtcdStore::connect(endpoints, options.clone()).await {
            Ok(s) => return Ok(Arc::new(s)),
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, "metadata store unavailable; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => bail!("--etcd {}: {e}", endpoints.join(",")),
        }
    }
}

/// Wait until `coordinator` is active and every `(broker id, control
/// address)` is registered with it from this run (after a restart the store
/// still lists the brokers of the previous run, at their old addresses).
pub async fn wait_ready(
    coordinator: &Coordinator,
    brokers: &[(i32, String)],
    timeout: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        if let Role::Active(term) = coordinator.role() {
            let state = term.state();
            let ready = brokers.iter().all(|(id, address)| {
                state
                    .brokers
                    .get(id)
                    .is_some_and(|b| !b.fenced && b.control_address == *address)
            });
            if ready {
                return Ok(());
            }
        }
        if start.elapsed() > timeout {
            bail!("the cluster did not become ready within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Flags of `ballast dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Where the cluster keeps its metadata and the brokers their data; kept
    /// across restarts.
    #[arg(long, default_value = "./ballast-data")]
    data_dir: std::path::PathBuf,
    /// Number of broker agents (1 to 16).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=16))]
    brokers: u16,
    /// Address of the coordinator's API.
    #[arg(long, default_value = "127.0.0.1:9410")]
    listen: String,
    /// Address of the web console (`/ui`) and `/metrics`.
    #[arg(long, default_value = "127.0.0.1:9420")]
    http_listen: String,
}

/// `ballast dev`: the embedded store, one coordinator and N agents in one
/// process, on loopback.
pub fn dev(args: DevArgs) -> anyhow::Result<String> {
    init_logging();
    crate::agent::report_open_files(u64::from(args.brokers));
    runtime()?.block_on(async move {
        let started = Instant::now();
        let data_dir = &args.data_dir;
        std::fs::create_dir_all(data_dir).with_context(|| format!("--data-dir {}", data_dir.display()))?;
        let store_path = data_dir.join("metadata.redb");
        let store: Arc<dyn MetadataStore> = Arc::new(
            LocalStore::open(&store_path)
                .await
                .with_context(|| format!("opening {} (is another `ballast dev` using this --data-dir?)", store_path.display()))?,
        );
        let (listener, bound) = ballast_coordinator::service::bind(&args.listen)
            .await
            .with_context(|| format!("--listen {}", args.listen))?;
        let address = bound.to_string();
        let mut config = CoordinatorConfig::new("dev", address.clone());
        config.heartbeat_interval = Duration::from_millis(500);
        config.session_timeout = Duration::from_secs(6);
        config.offsets_replication_factor = 3.min(i32::from(args.brokers));
        let coordinator = Coordinator::new(config, store).map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let serve = tokio::spawn(ballast_coordinator::service::serve(coordinator.clone(), listener, wait_true(stop_rx.clone())));
        let (http_listener, http_bound) = ballast_coordinator::service::bind(&args.http_listen)
            .await
            .with_context(|| format!("--http-listen {}", args.http_listen))?;
        let http = tokio::spawn(ballast_coordinator::http::serve(
            coordinator.clone(),
            http_listener,
            wait_true(stop_rx.clone()),
        ));
        let run = tokio::spawn(coordinator.clone().run(wait_true(stop_rx)));

        let mut agents = Vec::new();
        for id in 1..=i32::from(args.brokers) {
            let dir = data_dir.join(format!("broker-{id}"));
            let config = ballast_broker_agent::AgentConfig::new(id, dir, vec![address.clone()]);
            let handle = ballast_broker_agent::start(config)
                .await
                .with_context(|| format!("starting broker {id}"))?;
            agents.push(handle);
        }
        let expected: Vec<(i32, String)> = agents
            .iter()
            .map(|a| (a.broker_id(), a.advertised_address().to_owned()))
            .collect();
        wait_ready(&coordinator, &expected, Duration::from_secs(60)).await?;

        let mut out = String::new();
        out.push_str(&format!(
            "ballast dev: cluster ready in {:.1}s (data in {})\n",
            started.elapsed().as_secs_f64(),
            data_dir.display()
        ));
        out.push_str(&format!("  coordinator listening on {address}\n"));
        out.push_str(&format!("  web console http://{http_bound}/ui  (metrics: http://{http_bound}/metrics)\n"));
        for a in &agents {
            out.push_str(&format!(
                "  broker {:<3} {}  data {}\n",
                a.broker_id(),
                a.advertised_address(),
                data_dir.join(format!("broker-{}", a.broker_id())).display()
            ));
        }
        let rf = 3.min(args.brokers);
        out.push_str(&format!(
            "\nNext, in another terminal:\n  ballast topics create orders --partitions 6 --replication-factor {rf}\n  ballast topics describe orders\n  seq 1 5 | ballast produce --topic orders --acks all\n  ballast consume --topic orders --from-beginning --timeout-ms 2000\n  ballast brokers list\n  ballast cluster status\n(add --coordinator {address} if you changed --listen)\nPress Ctrl-C to stop; the cluster keeps its state for the next start.\n"
        ));
        print!("{out}");
        let _ = std::io::Write::flush(&mut std::io::stdout());

        shutdown_signal().await;
        tracing::info!("stopping");
        for a in agents {
            if let Err(e) = a.shutdown().await {
                tracing::warn!(error = %e, "agent stop");
            }
        }
        let _ = stop_tx.send(true);
        let _ = run.await;
        let _ = serve.await;
        let _ = http.await;
        Ok("ballast dev: stopped\n".to_owned())
    })
}
