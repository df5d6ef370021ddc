//! The controller: watches → `index` → debounced compile (`plan`) → publish → writes.
//!
//! ```text
//! watches (one per kind, one per named Secret/ConfigMap, data-plane Deployments)
//!    │ events
//!    ▼
//! index::Index ── pure: the Input, observed status, rollouts, named references, address pool
//!    │ changed? ─► readiness: every kind listed once, named references fetched, debounce
//!    ▼
//! plan::Planner::compile ─► publish (the data plane's snapshot)
//! plan::Planner::writes(now) ─► writer (only on the Lease holder: lease); each object's
//!     write is kept (plan::StatusWrites) and planned again only when its status changes
//! ```
//!
//! Every replica watches and serves; only the Lease holder writes status. Writes are
//! server-side apply with Loom's field manager, skipped when the object already shows
//! them. The run loop here does the IO: the select over watches and timers, leader
//! election (`lease`), reconnects and the per-Secret watches (`watches`).

mod index;
mod lease;
mod plan;
mod readiness;
mod watches;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt, stream};
use loom_core::input::Kind;
use loom_core::status::Status;
use loom_core::{Options, Snapshot, Staged};
use tokio::sync::watch;

use crate::addresses::{AddressPool, Ipv4Net};
use crate::provision::Provision;
use crate::resources;
use crate::writer::{StatusWrite, status_writer};
use index::Index;
use plan::{Planner, StatusWrites};
use readiness::Debounce;
use watches::{NamedWatches, watch_kind, watch_rollouts};

/// Watch events applied before the loop looks at its timers again.
const MAX_EVENTS_AT_ONCE: usize = 1024;

/// Where compiled snapshots go (the data plane's handle), with how long the compile took,
/// before their status is put together: the function returned takes the status (which the
/// controller keeps too, to plan status writes from) once it is.
pub type Publish = Arc<dyn Fn(Snapshot, Duration) -> TakeStatus + Send + Sync>;

/// Takes the status of the snapshot just published ([`Publish`]).
pub type TakeStatus = Box<dyn FnOnce(Arc<Status>) + Send>;

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct ControllerOptions {
    /// Compile options (controller name, default addresses).
    pub compile: Options,
    /// Give every Gateway without `spec.addresses` its own IP from this pool.
    pub address_pool: Option<Ipv4Net>,
    /// Networks whose addresses Gateways may ask for in `spec.addresses` (others are
    /// `AddressNotUsable`). Empty: the pool's network, or any address without a pool.
    pub usable_networks: Vec<Ipv4Net>,
    /// Least time from the end of one compile to the start of the next (and at least twice
    /// as long as that compile took). A change while idle compiles at once; changes that
    /// come faster are compiled together once this has passed.
    pub min_compile_interval: Duration,
    /// Field manager for status writes.
    pub field_manager: String,
    /// Leader election: `None` writes status without a Lease (a single replica).
    pub lease: Option<LeaseOptions>,
    /// How often status is checked again without a change (repairs failed writes).
    pub resync: Duration,
    /// How often API discovery runs again (a CRD installed later gets watched).
    pub rediscover: Duration,
    /// Create a Service per Gateway (infrastructure labels and annotations propagated), and
    /// in provisioned mode a Deployment of data-plane pods.
    pub provision: Option<Provision>,
    /// Run as the data plane of this one Gateway `(namespace, name)`: watch (read-only), serve
    /// only it, on the pod's own addresses, and never write.
    pub data_plane_of: Option<(String, String)>,
    /// The ports this process's data plane could not open (`Options::ports_not_serving`);
    /// a change compiles again, so listener status follows.
    pub ports_not_serving: Option<watch::Receiver<loom_core::PortsNotServing>>,
    /// The data plane's WASMPlugin modules: their state is asked for at every compile
    /// (`Options::plugin_modules`), and a change of state compiles again.
    pub plugin_modules: Option<PluginModules>,
    /// Compile through a `loom_core::Compiler`, which keeps what a compile did for the next
    /// (the compiled routes and virtual hosts): worth it when this process serves the
    /// snapshot, which holds them anyway. A controller that serves no Gateway (provisioned
    /// mode) would keep them for its status alone (~25 MiB at 5,000 HTTPRoutes).
    pub reuse_compiles: bool,
}

/// Wants the modules an input's WASMPlugins name and says where each is.
pub type SyncModules =
    Arc<dyn Fn(&loom_core::Input) -> Option<loom_core::compile::PluginModuleStates> + Send + Sync>;

/// What the data plane knows of WASMPlugin modules (`loom_pingora::plugin::Plugins`, kept
/// behind a function so this crate does not depend on the data plane).
#[derive(Clone)]
pub struct PluginModules {
    /// Wants the modules the input names (fetching new ones) and says where each is.
    pub sync: SyncModules,
    /// Changes when a module's state does.
    pub changes: watch::Receiver<u64>,
}

impl std::fmt::Debug for PluginModules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginModules").finish_non_exhaustive()
    }
}

/// The Lease that elects the status writer.
#[derive(Clone, Debug)]
pub struct LeaseOptions {
    pub namespace: String,
    pub name: String,
    /// This replica's identity.
    pub identity: String,
    /// Lease duration in seconds.
    pub duration_seconds: u64,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        ControllerOptions {
            compile: Options::default(),
            address_pool: None,
            usable_networks: vec![],
            min_compile_interval: Duration::from_millis(5),
            field_manager: loom_core::CONTROLLER_NAME.into(),
            lease: None,
            resync: Duration::from_secs(30),
            rediscover: Duration::from_secs(10),
            ports_not_serving: None,
            plugin_modules: None,
            provision: None,
            data_plane_of: None,
            reuse_compiles: true,
        }
    }
}

/// The finalizer a GatewayClass carries while Gateways use it ("The GatewayClass should
/// have the gateway-exists-finalizer.gateway.networking.k8s.io finalizer while any Gateway
/// references it").
pub const GATEWAY_EXISTS_FINALIZER: &str = "gateway-exists-finalizer.gateway.networking.k8s.io";

/// Runs the controller; it does not return. `publish` receives every compiled snapshot
/// (after all watches have listed once, then after each debounced change). An API server
/// that is not reachable yet, a Lease that cannot be taken yet, or a kind the API server
/// starts serving later (a CRD installed after Loom) are waited for and picked up.
pub async fn run(client: kube::Client, opts: ControllerOptions, publish: Publish) {
    let writes = opts.data_plane_of.is_none();
    let (leader_tx, leader) = watch::channel(writes && opts.lease.is_none());
    if let Some(lease) = opts.lease.clone().filter(|_| writes) {
        tokio::spawn(lease::elect(
            client.clone(),
            lease,
            opts.field_manager.clone(),
            leader_tx,
        ));
    }
    let (writes_tx, writes_rx) = watch::channel(Arc::new(Vec::<Arc<StatusWrite>>::new()));
    if writes {
        tokio::spawn(status_writer(
            client.clone(),
            opts.field_manager.clone(),
            writes_rx,
            leader.clone(),
        ));
    }
    loop {
        let found = match resources::discover(client.clone()).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!("API discovery failed ({e}); trying again in 2 s");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        for kind in &found.missing {
            tracing::info!("{kind} is not served by this cluster (CRD not installed); not watched");
        }
        watch_and_compile(&client, &opts, &publish, found, leader.clone(), &writes_tx).await;
        tracing::info!("the kinds the API server serves changed; watching them anew");
    }
}

/// Watches the discovered kinds and compiles until discovery finds a different set of
/// kinds (the data plane keeps serving the last snapshot meanwhile).
async fn watch_and_compile(
    client: &kube::Client,
    opts: &ControllerOptions,
    publish: &Publish,
    found: resources::Discovered,
    mut leader: watch::Receiver<bool>,
    writes_tx: &watch::Sender<Arc<Vec<Arc<StatusWrite>>>>,
) {
    let served: BTreeSet<Kind> = found.watched.iter().map(|w| w.kind).collect();
    let by_ref = |k: Kind| matches!(k, Kind::Secret | Kind::ConfigMap);
    let (refs_tx, mut refs_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut index = Index::new(
        found.watched.iter().map(|w| w.kind).filter(|k| !by_ref(*k)),
        found.watched.iter().map(|w| w.kind).filter(|k| by_ref(*k)),
        opts.address_pool.map(AddressPool::new),
        opts.data_plane_of.clone(),
    );
    let planner = Planner::new(
        opts.clone(),
        found
            .watched
            .iter()
            .map(|w| (w.kind, w.resource.clone()))
            .collect(),
    );
    let mut named_watches = NamedWatches::new(
        client.clone(),
        found
            .watched
            .iter()
            .filter(|w| by_ref(w.kind))
            .map(|w| (w.kind, w.resource.clone()))
            .collect::<HashMap<_, _>>(),
        refs_tx,
    );
    // The status of the last compile (its snapshot went to the data plane).
    let mut last_status: Option<Arc<Status>> = None;
    let mut status_writes = StatusWrites::default();
    let mut rollouts = watch_rollouts(client, opts);
    let mut events = stream::select_all(
        found
            .watched
            .iter()
            .filter(|w| !by_ref(w.kind))
            .map(|w| watch_kind(client, w)),
    );
    let mut debounce = Debounce::new(opts.min_compile_interval);
    // Plan the writes again (after a compile, a status change, a resync, a new leader).
    let mut replan_writes = false;
    let mut resync = tokio::time::interval(opts.resync);
    let mut rediscover = tokio::time::interval(opts.rediscover);
    rediscover.reset();
    let mut leader_open = true;
    let mut ports_not_serving = opts.ports_not_serving.clone();
    let mut plugin_changes = opts.plugin_modules.as_ref().map(|p| p.changes.clone());
    loop {
        let deadline = debounce.deadline();
        let ready = index.initial_list_complete();
        // A plan left objects for the next: planned again after what else is ready.
        let more_writes =
            status_writes.more_to_plan() && !debounce.is_pending() && *leader.borrow();
        tokio::select! {
            () = std::future::ready(()), if more_writes => replan_writes = true,
            ev = events.next() => {
                // With the events already waiting: a burst (the writer's own status writes
                // coming back) is planned for once.
                let mut next = Some(ev);
                let mut applied = 0;
                while let Some(ev) = next.take() {
                    let Some((kind, ev)) = ev else { return };
                    match ev {
                        Ok(ev) => {
                            let changed = index.apply(kind, ev);
                            if changed.compile {
                                debounce.changed(Instant::now());
                            }
                            replan_writes |= changed.observed_status;
                        }
                        Err(e) => tracing::warn!("watching {kind}: {e}"),
                    }
                    applied += 1;
                    if applied < MAX_EVENTS_AT_ONCE {
                        next = events.next().now_or_never();
                    }
                }
            }
            Some(ev) = rollouts.next() => match ev {
                Ok(ev) => {
                    if index.apply_rollout(ev) {
                        debounce.changed(Instant::now());
                    }
                }
                Err(e) => tracing::warn!("watching data-plane Deployments: {e}"),
            },
            Ok(()) = async {
                match &mut ports_not_serving {
                    Some(rx) => rx.changed().await,
                    None => std::future::pending().await,
                }
            } => debounce.changed(Instant::now()),
            Ok(()) = async {
                match &mut plugin_changes {
                    Some(rx) => rx.changed().await,
                    None => std::future::pending().await,
                }
            } => debounce.changed(Instant::now()),
            Some((key, ev)) = refs_rx.recv() => match ev {
                Ok(ev) => {
                    if index.apply_reference(&key, ev) {
                        debounce.changed(Instant::now());
                    }
                }
                Err(e) => tracing::warn!("watching {key}: {e}"),
            },
            _ = sleep_until(deadline), if ready && deadline.is_some() => {
                let now = Instant::now();
                named_watches.update(index.update_references(now));
                if index.references_fetched(now) {
                    let Staged { snapshot, status, endpoint_sources } =
                        planner.compile_staged(&mut index);
                    index.compiled(endpoint_sources);
                    let took = now.elapsed();
                    // Served first, before the statuses are put together (at thousands of
                    // routes, a third of the compile); then which objects' writes to plan
                    // again.
                    let take_status = publish(snapshot, took);
                    let status = Arc::new(status.finish());
                    take_status(status.clone());
                    let whole = now.elapsed();
                    tracing::debug!("compiled in {took:?} ({whole:?} with status)");
                    status_writes.compiled(last_status.as_deref(), &status);
                    last_status = Some(status);
                    debounce.compiled(Instant::now(), whole);
                    replan_writes = true;
                } else {
                    // A newly named Secret or ConfigMap is on its way; look again shortly.
                    debounce.retry(now);
                }
            }
            _ = resync.tick() => {
                status_writes.all_stale();
                replan_writes = true;
            }
            _ = rediscover.tick() => {
                // Bounded: the loop must not wait on a request to a server that went away.
                let found = tokio::time::timeout(
                    Duration::from_secs(5),
                    resources::discover(client.clone()),
                )
                .await;
                tracing::debug!("rediscovery: {}", if found.is_ok() { "done" } else { "timed out" });
                if let Ok(Ok(now)) = found {
                    let now: BTreeSet<Kind> = now.watched.iter().map(|w| w.kind).collect();
                    if now != served {
                        return;
                    }
                }
            }
            changed = leader.changed(), if leader_open => {
                // Closed: leader election ended; the last value (false) stays.
                leader_open = changed.is_ok();
                status_writes.all_stale();
                replan_writes = true;
            }
        }
        if replan_writes
            && !debounce.is_pending()
            && *leader.borrow()
            && let Some(status) = &last_status
        {
            replan_writes = false;
            let now = jiff::Timestamp::now()
                .round(jiff::Unit::Second)
                .unwrap_or_else(|_| jiff::Timestamp::now())
                .to_string();
            let started = Instant::now();
            status_writes.stale(index.take_observed_changes());
            let writes = planner.writes(&index, status, &mut status_writes, &now);
            tracing::debug!("planned {} writes in {:?}", writes.len(), started.elapsed());
            let _ = writes_tx.send(Arc::new(writes));
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(d.into()).await;
    }
}
