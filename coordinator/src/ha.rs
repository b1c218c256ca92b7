//! High availability: the election loop of one coordinator process.
//!
//! Each process keeps a lease, campaigns with it, and while it leads runs a
//! [`Term`]. It renews the lease every `lease_ttl / 6`; when no renewal has
//! succeeded for `renew_deadline` (shorter than the TTL) it stops acting at
//! once (no writes, no pushes), drops the term and campaigns again with a new
//! lease. So a paused or partitioned coordinator stops before its lease can
//! expire and a successor be elected; and if it wakes up late anyway, the
//! fence on every write refuses it.
//!
//! Standbys follow the election to tell callers where the active one is.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::config::CoordinatorConfig;
use crate::keys::Keys;
use crate::store::{self, MetadataStore, StoreError};
use crate::term::{LeaseHealth, ServiceError, Term};

/// What this process is right now.
#[derive(Debug, Clone)]
pub enum Role {
    /// Not leading; the active coordinator's address when known.
    Standby {
        /// Address of the active coordinator.
        active_address: Option<String>,
    },
    /// Leading.
    Active(Arc<Term>),
}

#[derive(Debug)]
struct Shared {
    config: Arc<CoordinatorConfig>,
    store: Arc<dyn MetadataStore>,
    role: RwLock<Role>,
    observed: RwLock<Option<String>>,
    lease: std::sync::Mutex<Option<i64>>,
    metrics: Arc<crate::metrics::Metrics>,
}

/// A coordinator process's handle: cheap to clone.
#[derive(Debug, Clone)]
pub struct Coordinator {
    shared: Arc<Shared>,
}

impl Coordinator {
    /// A coordinator over `store`. Fails when the config is inconsistent.
    pub fn new(config: CoordinatorConfig, store: Arc<dyn MetadataStore>) -> Result<Self, String> {
        config.validate()?;
        Ok(Coordinator {
            shared: Arc::new(Shared {
                config: Arc::new(config),
                store,
                role: RwLock::new(Role::Standby {
                    active_address: None,
                }),
                observed: RwLock::new(None),
                lease: std::sync::Mutex::new(None),
                metrics: Arc::new(crate::metrics::Metrics::new()),
            }),
        })
    }

    /// The process's metrics.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.shared.metrics
    }

    /// The configuration.
    pub fn config(&self) -> &CoordinatorConfig {
        &self.shared.config
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.shared
            .role
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_role(&self, role: Role) {
        *self.shared.role.write().unwrap_or_else(|e| e.into_inner()) = role;
    }

    /// The active term, or `NotActive` with the active address.
    pub fn active_term(&self) -> Result<Arc<Term>, ServiceError> {
        match self.role() {
            Role::Active(term) if term.is_fresh() => Ok(term),
            Role::Active(_) => Err(ServiceError::NotActive(None)),
            Role::Standby { .. } => Err(ServiceError::NotActive(self.active_address())),
        }
    }

    /// The active coordinator's address as last observed.
    pub fn active_address(&self) -> Option<String> {
        match self.role() {
            Role::Active(_) => Some(self.shared.config.advertised_address.clone()),
            Role::Standby { .. } => self
                .shared
                .observed
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .filter(|a| !a.is_empty()),
        }
    }

    /// Run the election loop until `shutdown` resolves. On shutdown an active
    /// coordinator resigns, so a standby takes over without waiting for the
    /// lease to expire.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let keys = Keys::new(&self.shared.config.cluster_id);
        let election = keys.election();
        let name = election.strip_suffix(b"/").unwrap_or(&election).to_vec();
        let observer = self.spawn_observer(name.clone());
        tokio::pin!(shutdown);
        let mut backoff = Duration::from_millis(100);
        loop {
            let round = self.one_round(&name);
            tokio::pin!(round);
            tokio::select! {
                () = &mut shutdown => break,
                result = &mut round => {
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "coordinator election round ended");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    } else {
                        backoff = Duration::from_millis(100);
                    }
                }
            }
        }
        if let Role::Active(term) = self.role() {
            term.step_down();
            term.pushers.stop_all();
        }
        self.set_role(Role::Standby {
            active_address: None,
        });
        observer.abort();
        // Resigning happens in one_round's guard; make sure the lease goes.
        if let Some(lease) = self.shared.current_lease() {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                self.shared.store.lease_revoke(lease),
            )
            .await;
        }
    }

    fn spawn_observer(&self, name: Vec<u8>) -> tokio::task::JoinHandle<()> {
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let mut rx = store::observe(shared.store.clone(), &name);
            while let Some(leader) = rx.recv().await {
                let address = leader.map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
                *shared.observed.write().unwrap_or_else(|e| e.into_inner()) = address;
            }
        })
    }

    /// One lease: campaign, lead until the lease goes stale, step down.
    async fn one_round(&self, name: &[u8]) -> Result<(), StoreError> {
        let cfg = self.shared.config.clone();
        let store = self.shared.store.clone();
        let granted_at = Instant::now();
        let lease = store.lease_grant(cfg.lease_ttl).await?;
        self.shared.set_lease(Some(lease.id));
        let health = LeaseHealth::new(granted_at, cfg.renew_deadline);
        let stop_renewals = spawn_renewals(store.clone(), lease.id, health.clone(), cfg.lease_ttl);
        let result = self.lead(name, lease.id, &health).await;
        health.mark_lost();
        let _ = stop_renewals.send(());
        if let Role::Active(term) = self.role() {
            term.pushers.stop_all();
        }
        self.set_role(Role::Standby {
            active_address: None,
        });
        let _ = tokio::time::timeout(Duration::from_secs(2), store.lease_revoke(lease.id)).await;
        self.shared.set_lease(None);
        result
    }

    async fn lead(
        &self,
        name: &[u8],
        lease: i64,
        health: &Arc<LeaseHealth>,
    ) -> Result<(), StoreError> {
        let cfg = self.shared.config.clone();
        let store = self.shared.store.clone();
        let address = cfg.advertised_address.clone().into_bytes();
        let leader = tokio::select! {
            r = store::campaign(store.as_ref(), name, address, lease) => r?,
            () = health.lost() => return Ok(()),
        };
        let epoch = leader.epoch();
        tracing::info!(epoch, address = %cfg.advertised_address, "elected active coordinator; loading state");
        let term = match Term::load(
            epoch,
            leader.fence(),
            cfg.clone(),
            store.clone(),
            health.clone(),
            self.shared.metrics.clone(),
        )
        .await
        {
            Ok(t) => t,
            Err(e) => {
                let _ = store::resign(store.as_ref(), &leader).await;
                return Err(StoreError::Unavailable(format!(
                    "loading state failed: {e}"
                )));
            }
        };
        self.set_role(Role::Active(term.clone()));
        tracing::info!(epoch, "active");
        let tick_every = (cfg.session_timeout / 4)
            .min(cfg.heartbeat_interval)
            .max(Duration::from_millis(50));
        let mut ticker = tokio::time::interval(tick_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let imbalance_every = cfg.leader_imbalance_check_interval;
        let mut next_imbalance = Instant::now() + imbalance_every;
        let mut last_tick = Instant::now();
        loop {
            tokio::select! {
                () = health.lost() => break,
                _ = ticker.tick() => {
                    // A stalled loop (e.g. the process was paused) must not
                    // fence everyone at once: brokers heartbeated meanwhile.
                    let gap = last_tick.elapsed();
                    last_tick = Instant::now();
                    if gap > cfg.session_timeout / 2 {
                        tracing::warn!(?gap, "coordinator loop stalled; granting brokers a grace period");
                        term.grant_grace();
                    }
                    let due = !imbalance_every.is_zero() && Instant::now() >= next_imbalance;
                    if due {
                        next_imbalance = Instant::now() + imbalance_every;
                    }
                    let pass = tracing::debug_span!("reconcile", coordinator_epoch = epoch);
                    // A pass stuck on the store (a partition, or a pause
                    // that outlived the lease) is dropped the moment the
                    // lease goes stale, as a crash would end it: what it
                    // left half done, the successor resumes.
                    tokio::select! {
                        r = tracing::Instrument::instrument(term.tick(&term, due), pass) => {
                            if let Err(e) = r {
                                tracing::warn!(error = %e, "periodic work failed");
                            }
                        }
                        () = health.lost() => break,
                    }
                }
            }
        }
        tracing::warn!(epoch, "lease stale or lost: stopped acting");
        term.pushers.stop_all();
        Ok(())
    }
}

impl Shared {
    fn set_lease(&self, lease: Option<i64>) {
        *self.lease.lock().unwrap_or_else(|e| e.into_inner()) = lease;
    }

    fn current_lease(&self) -> Option<i64> {
        *self.lease.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Renews the lease on a thread of its own with its own single-threaded
/// runtime and (for etcd) its own connection, so that the renew deadline
/// measures this process's ability to reach the store, not the queue of
/// the main runtime (which builds pushes and serves requests). Sending on
/// (or dropping) the returned channel stops it.
fn spawn_renewals(
    store: Arc<dyn MetadataStore>,
    lease: i64,
    health: Arc<LeaseHealth>,
    ttl: Duration,
) -> tokio::sync::oneshot::Sender<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("lease-renewal".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the lease renewal runtime");
                    health.mark_lost();
                    return;
                }
            };
            runtime.block_on(async move {
                let renew = async {
                    let own = match store.renewal_connection().await {
                        Ok(Some(s)) => s,
                        Ok(None) => store,
                        Err(e) => {
                            tracing::warn!(error = %e, "no separate connection for lease renewals; sharing the main one");
                            store
                        }
                    };
                    keep_alive(own, lease, health, ttl).await;
                };
                tokio::select! {
                    () = renew => {}
                    _ = stopped => {}
                }
            });
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the lease renewal thread");
    }
    stop
}

async fn keep_alive(
    store: Arc<dyn MetadataStore>,
    lease: i64,
    health: Arc<LeaseHealth>,
    ttl: Duration,
) {
    let every = (ttl / 6).max(Duration::from_millis(100));
    loop {
        let sent = Instant::now();
        match tokio::time::timeout(every * 2, store.lease_keep_alive(lease)).await {
            Ok(Ok(_)) => health.renewed(sent),
            Ok(Err(StoreError::LeaseNotFound(_))) => {
                tracing::warn!(lease, "leadership lease expired");
                health.mark_lost();
                return;
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "lease renewal failed"),
            Err(_) => tracing::warn!("lease renewal timed out"),
        }
        if !health.is_fresh() {
            health.mark_lost();
            return;
        }
        let next = sent + every;
        tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
    }
}
