//! The controller loop: watches → one `Input` → debounced compile → publish → status.
//!
//! Every replica watches and serves; only the Lease holder writes status. Writes are
//! server-side apply with Loom's field manager, skipped when the object already shows
//! them.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use loom_core::input::{Gateway, Input, Kind, Object, ObjectKey, Service};
use loom_core::status::{ConditionType, ObjectStatus, Status, StatusAddress};
use loom_core::{Compiled, NotServing, Options};
use serde_json::Value;
use tokio::sync::watch;

use crate::addresses::{AddressPool, Ipv4Net};
use crate::provision::{self, CONTROLLER_ANNOTATION, DATA_PLANE_SELECTOR, Provision};
use crate::refs::{REF_WAIT, Refs};
use crate::resources::{self, Watched};
use crate::status::next_status;
use crate::writer::{StatusWrite, Write, status_writer};

/// Where compiled snapshots go (the data plane's handle).
pub type Publish = Arc<dyn Fn(Compiled, Duration) + Send + Sync>;

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
    /// Quiet time after the last change before compiling.
    pub debounce: Duration,
    /// Longest a change waits for a compile while changes keep coming.
    pub max_delay: Duration,
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
    pub provision: Option<crate::provision::Provision>,
    /// Run as the data plane of this one Gateway `(namespace, name)`: watch (read-only), serve
    /// only it, on the pod's own addresses, and never write.
    pub data_plane_of: Option<(String, String)>,
}

/// The Lease that elects the status writer.
#[derive(Clone, Debug)]
pub struct LeaseOptions {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
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
            debounce: Duration::from_millis(20),
            max_delay: Duration::from_millis(250),
            field_manager: loom_core::CONTROLLER_NAME.into(),
            lease: None,
            resync: Duration::from_secs(30),
            rediscover: Duration::from_secs(10),
            provision: None,
            data_plane_of: None,
        }
    }
}

/// The finalizer a GatewayClass carries while Gateways use it ("The GatewayClass should
/// have the gateway-exists-finalizer.gateway.networking.k8s.io finalizer while any Gateway
/// references it").
pub const GATEWAY_EXISTS_FINALIZER: &str = "gateway-exists-finalizer.gateway.networking.k8s.io";

/// What the loop knows of an object that carries status.
struct Current {
    resource_version: String,
    status: Option<Value>,
    finalizers: Vec<String>,
}

struct State {
    opts: ControllerOptions,
    input: Input,
    resources: HashMap<Kind, ApiResource>,
    /// Keys per kind, to replace a kind's objects after a relist.
    keys: HashMap<Kind, HashSet<ObjectKey>>,
    /// Relists in progress.
    relist: HashMap<Kind, Vec<DynamicObject>>,
    unsynced: HashSet<Kind>,
    current: HashMap<ObjectKey, Current>,
    pool: Option<AddressPool>,
    /// The status of the last compile (its snapshot went to the data plane).
    last: Option<loom_core::status::Status>,
    /// Secrets and ConfigMaps: one watch per object the configuration names.
    refs: Refs,
    /// Provisioned data-plane Deployments by (namespace, name), and a relist in progress.
    rollouts: HashMap<(String, String), Rollout>,
    rollouts_relist: Option<HashMap<(String, String), Rollout>>,
}

/// How far a data-plane Deployment is, and which controller made it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rollout {
    replicas: i32,
    available: i32,
    controller: String,
}

/// Runs the controller; it does not return. `publish` receives every compiled snapshot
/// (after all watches have listed once, then after each debounced change). An API server
/// that is not reachable yet, a Lease that cannot be taken yet, or a kind the API server
/// starts serving later (a CRD installed after Loom) are waited for and picked up.
pub async fn run(client: kube::Client, opts: ControllerOptions, publish: Publish) {
    let writes = opts.data_plane_of.is_none();
    let (leader_tx, leader) = watch::channel(writes && opts.lease.is_none());
    if let Some(lease) = opts.lease.clone().filter(|_| writes) {
        tokio::spawn(elect(
            client.clone(),
            lease,
            opts.field_manager.clone(),
            leader_tx,
        ));
    }
    let (writes_tx, writes_rx) = watch::channel(Arc::new(Vec::<StatusWrite>::new()));
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
                log::warn!("API discovery failed ({e}); trying again in 2 s");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        for kind in &found.missing {
            log::info!("{kind} is not served by this cluster (CRD not installed); not watched");
        }
        watch_and_compile(&client, &opts, &publish, found, leader.clone(), &writes_tx).await;
        log::info!("the kinds the API server serves changed; watching them anew");
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
    writes_tx: &watch::Sender<Arc<Vec<StatusWrite>>>,
) {
    let served: BTreeSet<Kind> = found.watched.iter().map(|w| w.kind).collect();
    let by_ref = |k: Kind| matches!(k, Kind::Secret | Kind::ConfigMap);
    let (refs_tx, mut refs_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut state = State {
        pool: opts.address_pool.map(AddressPool::new),
        resources: found
            .watched
            .iter()
            .map(|w| (w.kind, w.resource.clone()))
            .collect(),
        unsynced: found
            .watched
            .iter()
            .map(|w| w.kind)
            .filter(|k| !by_ref(*k))
            .collect(),
        opts: opts.clone(),
        input: Input::default(),
        keys: HashMap::new(),
        relist: HashMap::new(),
        current: HashMap::new(),
        last: None,
        refs: Refs {
            client: client.clone(),
            resources: found
                .watched
                .iter()
                .filter(|w| by_ref(w.kind))
                .map(|w| (w.kind, w.resource.clone()))
                .collect(),
            watches: HashMap::new(),
            tx: refs_tx,
        },
        rollouts: HashMap::new(),
        rollouts_relist: None,
    };
    let mut rollouts = watch_rollouts(client, opts);
    let mut events = stream::select_all(
        found
            .watched
            .iter()
            .filter(|w| !by_ref(w.kind))
            .map(|w| watch_kind(client, w)),
    );
    let mut dirty: Option<(Instant, Instant)> = None; // (first change, last change)
    let mut status_dirty = false;
    let mut resync = tokio::time::interval(state.opts.resync);
    let mut rediscover = tokio::time::interval(state.opts.rediscover);
    rediscover.reset();
    let mut leader_open = true;
    loop {
        let deadline = dirty
            .map(|(first, last)| (last + state.opts.debounce).min(first + state.opts.max_delay));
        let ready = state.unsynced.is_empty();
        tokio::select! {
            ev = events.next() => {
                let Some((kind, ev)) = ev else { return };
                match ev {
                    Ok(ev) => {
                        let (spec, status) = state.apply(kind, ev);
                        if spec {
                            let now = Instant::now();
                            dirty = Some((dirty.map_or(now, |d| d.0), now));
                        }
                        status_dirty |= status;
                    }
                    Err(e) => log::warn!("watching {kind}: {e}"),
                }
            }
            Some(ev) = rollouts.next() => match ev {
                Ok(ev) => {
                    if state.apply_rollout(ev) {
                        let now = Instant::now();
                        dirty = Some((dirty.map_or(now, |d| d.0), now));
                    }
                }
                Err(e) => log::warn!("watching data-plane Deployments: {e}"),
            },
            Some((key, ev)) = refs_rx.recv() => match ev {
                Ok(ev) => {
                    if state.apply_ref(key, ev) {
                        let now = Instant::now();
                        dirty = Some((dirty.map_or(now, |d| d.0), now));
                    }
                }
                Err(e) => log::warn!("watching {key}: {e}"),
            },
            _ = sleep_until(deadline), if ready && deadline.is_some() => {
                if state.refs_ready() {
                    dirty = None;
                    state.compile(publish);
                    status_dirty = true;
                } else {
                    // A newly named Secret or ConfigMap is on its way; look again shortly.
                    let now = Instant::now();
                    dirty = Some((now, now));
                }
            }
            _ = resync.tick() => status_dirty = true,
            _ = rediscover.tick() => {
                // Bounded: the loop must not wait on a request to a server that went away.
                let found = tokio::time::timeout(
                    Duration::from_secs(5),
                    resources::discover(client.clone()),
                )
                .await;
                log::debug!("rediscovery: {}", if found.is_ok() { "done" } else { "timed out" });
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
                status_dirty = true;
            }
        }
        if status_dirty && dirty.is_none() && *leader.borrow() && state.last.is_some() {
            status_dirty = false;
            let _ = writes_tx.send(Arc::new(state.status_writes()));
        }
    }
}

/// How soon a failed watch tries again: 100 ms, doubling up to 2 s, with jitter; back to
/// 100 ms after any event. kube's default grows to 30 s, so after an API server outage of a
/// minute, changes made once it was back waited another minute and a half to be seen.
#[derive(Debug)]
pub(crate) struct Reconnect {
    next: Duration,
}

impl Reconnect {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(2);
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect { next: Self::FIRST }
    }
}

impl Iterator for Reconnect {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        // Up to a quarter more, so that many watches do not retry in step.
        Some(d + d.mul_f64(fastrand::f64() / 4.0))
    }
}

impl kube::runtime::utils::Backoff for Reconnect {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(d.into()).await;
    }
}

type KindEvents =
    futures::stream::BoxStream<'static, (Kind, watcher::Result<Event<DynamicObject>>)>;

fn watch_kind(client: &kube::Client, w: &Watched) -> KindEvents {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &w.resource);
    let kind = w.kind;
    watcher::watcher(api, watcher::Config::default())
        .backoff(Reconnect::default())
        .map(move |e| (kind, e))
        .boxed()
}

/// Provisioned data-plane Deployments (only Loom's, by label); nothing in other modes.
fn watch_rollouts(
    client: &kube::Client,
    opts: &ControllerOptions,
) -> futures::stream::BoxStream<'static, watcher::Result<Event<Deployment>>> {
    if opts
        .provision
        .as_ref()
        .is_none_or(|p| p.data_plane.is_none())
    {
        return stream::pending().boxed();
    }
    let api: Api<Deployment> = Api::all(client.clone());
    watcher::watcher(api, watcher::Config::default().labels(DATA_PLANE_SELECTOR))
        .backoff(Reconnect::default())
        .boxed()
}

/// Leader election: keeps trying to set up the Lease manager (the API server may not be
/// reachable yet, or RBAC not in place), then reports every change of leadership.
async fn elect(
    client: kube::Client,
    lease: LeaseOptions,
    field_manager: String,
    tx: watch::Sender<bool>,
) {
    let manager = loop {
        let built = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &lease.name)
            .with_namespace(&lease.namespace)
            .with_identity(&lease.identity)
            .with_duration(lease.duration_seconds)
            .with_grace(lease.duration_seconds.div_ceil(3).max(1))
            .with_field_manager(format!("{field_manager}/lease"))
            .build()
            .await;
        match built {
            Ok(m) => break m,
            Err(e) => {
                log::warn!(
                    "leader election: Lease {}/{} not usable yet ({e}); trying again in 2 s",
                    lease.namespace,
                    lease.name
                );
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    let (mut rx, task) = manager.watch().await;
    let name = format!("{}/{}", lease.namespace, lease.name);
    loop {
        let leading = *rx.borrow_and_update();
        log::info!(
            "{} the status-writer lease {name}",
            if leading { "holding" } else { "not holding" }
        );
        if tx.send(leading).is_err() || rx.changed().await.is_err() {
            break;
        }
    }
    let _ = tx.send(false);
    if let Ok(Err(e)) = task.await {
        log::error!("leader election stopped: {e}");
    }
}

impl State {
    /// Starts watches for the Secrets and ConfigMaps the input names and stops the others;
    /// whether every named one has been fetched (or waited for long enough).
    fn refs_ready(&mut self) -> bool {
        let wanted: HashSet<ObjectKey> = self
            .input
            .referenced_secrets_and_config_maps()
            .into_iter()
            .filter(|k| self.refs.resources.contains_key(&k.kind))
            .collect();
        let gone: Vec<ObjectKey> = self
            .refs
            .watches
            .keys()
            .filter(|k| !wanted.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            self.refs.watches.remove(&key);
            self.remove(&key);
        }
        for key in wanted {
            if !self.refs.watches.contains_key(&key) {
                let watch = self.refs.start(&key);
                self.refs.watches.insert(key, watch);
            }
        }
        let now = Instant::now();
        self.refs
            .watches
            .values()
            .all(|w| w.synced || now.duration_since(w.started) > REF_WAIT)
    }

    /// Applies one event of the data-plane Deployment watch. Returns whether a Gateway's
    /// readiness changed.
    fn apply_rollout(&mut self, ev: Event<Deployment>) -> bool {
        fn entry(d: &Deployment) -> ((String, String), Rollout) {
            let status = d.status.as_ref();
            (
                (
                    d.metadata.namespace.clone().unwrap_or_default(),
                    d.metadata.name.clone().unwrap_or_default(),
                ),
                Rollout {
                    replicas: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                    available: status.and_then(|s| s.available_replicas).unwrap_or(0),
                    controller: d
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(CONTROLLER_ANNOTATION))
                        .cloned()
                        .unwrap_or_default(),
                },
            )
        }
        let before = self.rollouts.clone();
        match ev {
            Event::Init => self.rollouts_relist = Some(HashMap::new()),
            Event::InitApply(d) => {
                let (k, v) = entry(&d);
                self.rollouts_relist.get_or_insert_default().insert(k, v);
            }
            Event::InitDone => self.rollouts = self.rollouts_relist.take().unwrap_or_default(),
            Event::Apply(d) => {
                let (k, v) = entry(&d);
                self.rollouts.insert(k, v);
            }
            Event::Delete(d) => {
                self.rollouts.remove(&entry(&d).0);
            }
        }
        self.rollouts != before
    }

    /// Applies one event of a Secret or ConfigMap watch. Returns whether the input changed.
    fn apply_ref(&mut self, key: ObjectKey, ev: Event<DynamicObject>) -> bool {
        let Some(w) = self.refs.watches.get_mut(&key) else {
            return false; // no longer named (the watch was stopped)
        };
        match ev {
            Event::Init => {
                w.pending = None;
                false
            }
            Event::InitApply(o) => {
                w.pending = Some(o);
                false
            }
            Event::InitDone => {
                w.synced = true;
                match w.pending.take() {
                    Some(o) => self.upsert(key.kind, &o).0,
                    None => self.remove(&key),
                }
            }
            Event::Apply(o) => self.upsert(key.kind, &o).0,
            Event::Delete(_) => self.remove(&key),
        }
    }

    /// Applies one watch event. Returns (the compiled input changed, a status changed).
    fn apply(&mut self, kind: Kind, ev: Event<DynamicObject>) -> (bool, bool) {
        match ev {
            Event::Init => {
                self.relist.insert(kind, vec![]);
                (false, false)
            }
            Event::InitApply(o) => {
                self.relist.entry(kind).or_default().push(o);
                (false, false)
            }
            Event::InitDone => {
                let listed = self.relist.remove(&kind).unwrap_or_default();
                let mut seen = HashSet::new();
                let mut changed = false;
                let mut status = false;
                for o in &listed {
                    let (c, s, key) = self.upsert(kind, o);
                    changed |= c;
                    status |= s;
                    seen.extend(key);
                }
                let gone: Vec<ObjectKey> = self
                    .keys
                    .get(&kind)
                    .map(|k| k.difference(&seen).cloned().collect())
                    .unwrap_or_default();
                let removed = gone.len();
                for key in gone {
                    changed |= self.remove(&key);
                }
                let first = self.unsynced.remove(&kind);
                log::debug!("{kind}: listed {} objects, {removed} gone", listed.len());
                (changed || first, status)
            }
            Event::Apply(o) => {
                let (c, s, _) = self.upsert(kind, &o);
                (c, s)
            }
            Event::Delete(o) => match resources::to_object(kind, &o) {
                Ok(obj) => (self.remove(&obj.key()), false),
                Err(_) => (false, false),
            },
        }
    }

    fn upsert(&mut self, kind: Kind, o: &DynamicObject) -> (bool, bool, Option<ObjectKey>) {
        let mut obj = match resources::to_object(kind, o) {
            Ok(obj) => obj,
            Err(e) => {
                log::warn!(
                    "{kind} {}/{} is not understood and is ignored: {e}",
                    o.metadata.namespace.as_deref().unwrap_or(""),
                    o.metadata.name.as_deref().unwrap_or("")
                );
                return (false, false, None);
            }
        };
        let key = obj.key();
        if let Some(gateway) = &self.opts.data_plane_of {
            if !for_gateway(&obj, gateway) {
                // Another data plane's (and maybe ours before this change): not kept.
                return (self.remove(&key), false, None);
            }
            if let Object::Gateway(gw) = &mut obj {
                // The pod listens on its own addresses; the Service carries spec.addresses.
                gw.spec.addresses.clear();
            }
        }
        let mut status = false;
        if has_status(kind) {
            let now = Current {
                resource_version: o.metadata.resource_version.clone().unwrap_or_default(),
                status: resources::status_of(o).cloned(),
                finalizers: o.metadata.finalizers.clone().unwrap_or_default(),
            };
            status = self
                .current
                .get(&key)
                .is_none_or(|b| b.status != now.status);
            self.current.insert(key.clone(), now);
        }
        self.keys.entry(kind).or_default().insert(key.clone());
        let changed = match self.input.upsert(obj.clone()) {
            Some(old) => old != obj,
            None => true,
        };
        (changed, status, Some(key))
    }

    fn remove(&mut self, key: &ObjectKey) -> bool {
        self.current.remove(key);
        if let Some(keys) = self.keys.get_mut(&key.kind) {
            keys.remove(key);
        }
        if key.kind == Kind::Gateway
            && let Some(pool) = &mut self.pool
        {
            pool.release(&key.namespace, &key.name);
        }
        self.input.remove(key).is_some()
    }

    fn compile(&mut self, publish: &Publish) {
        let started = Instant::now();
        let mut opts = self.opts.compile.clone();
        let requested = requested_ips(&self.input);
        let usable: Vec<Ipv4Net> = match (&self.opts.usable_networks[..], self.opts.address_pool) {
            ([], pool) => pool.into_iter().collect(),
            (nets, _) => nets.to_vec(),
        };
        if !usable.is_empty() {
            opts.usable_addresses = Some(
                requested
                    .iter()
                    .filter(|ip| usable.iter().any(|n| n.contains(**ip)))
                    .map(Ipv4Addr::to_string)
                    .collect(),
            );
        }
        // Gateways whose own Service sends traffic to their pods report its address.
        let behind_services = match &self.opts.provision {
            Some(p) if p.data_plane.is_some() => {
                service_readiness(&self.input, Some(&self.rollouts), &mut opts);
                true
            }
            Some(p)
                if (!p.selector.is_empty() || p.endpoints_from.is_some())
                    && self.pool.is_none() =>
            {
                service_readiness(&self.input, None, &mut opts);
                true
            }
            _ => false,
        };
        if let Some(pool) = &mut self.pool {
            let gateways: Vec<ObjectKey> = self
                .keys
                .get(&Kind::Gateway)
                .map(|k| k.iter().cloned().collect())
                .unwrap_or_default();
            let mut sorted = gateways;
            sorted.sort();
            for key in sorted {
                let reported = reported_ips(self.current.get(&key));
                match pool.assign(&key.namespace, &key.name, &reported, &requested) {
                    Some(ip) => {
                        opts.gateway_addresses.insert(
                            (key.namespace.clone(), key.name.clone()),
                            vec![StatusAddress {
                                type_: "IPAddress".into(),
                                value: ip.to_string(),
                            }],
                        );
                    }
                    None => log::error!("no address left in the pool for {key}"),
                }
            }
        }
        let mut compiled = loom_core::compile_with(&self.input, &opts);
        if behind_services {
            // The pods listen on their own addresses (--bind); the Service's are reported.
            for g in compiled.snapshot.gateways.values_mut() {
                g.addresses.clear();
            }
        }
        let took = started.elapsed();
        log::debug!("compiled in {took:?}");
        self.last = Some(compiled.status.clone());
        publish(compiled, took);
    }

    /// Every status write the last compile calls for.
    fn status_writes(&self) -> Vec<StatusWrite> {
        let Some(status) = &self.last else {
            return vec![];
        };
        let controller = &self.opts.compile.controller_name;
        let now = jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .unwrap_or_else(|_| jiff::Timestamp::now())
            .to_string();
        let mut out = vec![];
        let mut keys: BTreeMap<&ObjectKey, ()> = BTreeMap::new();
        keys.extend(status.objects.keys().map(|k| (k, ())));
        keys.extend(self.current.keys().map(|k| (k, ())));
        for key in keys.into_keys() {
            let Some(current) = self.current.get(key) else {
                continue; // not (or no longer) in the cluster
            };
            let Some(resource) = self.resources.get(&key.kind) else {
                continue;
            };
            let desired = status.get(key);
            if let Some(status) = next_status(desired, current.status.as_ref(), controller, &now) {
                out.push(StatusWrite {
                    namespace: key.namespace.clone(),
                    name: key.name.clone(),
                    resource: resource.clone(),
                    base: current.resource_version.clone(),
                    what: Write::Status(status),
                });
            }
        }
        if let Some(p) = &self.opts.provision {
            out.extend(self.provision_writes(status, p));
        }
        // GatewayClasses of Loom's: the finalizer while Gateways use them.
        for class in self
            .input
            .gateway_classes
            .iter()
            .filter(|c| c.spec.controller_name == *controller)
        {
            let key = ObjectKey {
                kind: Kind::GatewayClass,
                namespace: String::new(),
                name: class.metadata.name.clone(),
            };
            let (Some(current), Some(resource)) = (
                self.current.get(&key),
                self.resources.get(&Kind::GatewayClass),
            ) else {
                continue;
            };
            let used = self
                .input
                .gateways
                .iter()
                .any(|g| g.spec.gateway_class_name == class.metadata.name);
            let has = current
                .finalizers
                .iter()
                .any(|f| f == GATEWAY_EXISTS_FINALIZER);
            if used != has {
                out.push(StatusWrite {
                    namespace: String::new(),
                    name: key.name,
                    resource: resource.clone(),
                    base: current.resource_version.clone(),
                    what: Write::Finalizers(if used {
                        vec![GATEWAY_EXISTS_FINALIZER]
                    } else {
                        vec![]
                    }),
                });
            }
        }
        out
    }

    /// The objects of every Gateway Loom accepted: its Service, and in provisioned mode its
    /// ServiceAccount and Deployment, plus the binding of all data-plane ServiceAccounts.
    fn provision_writes(&self, status: &Status, p: &Provision) -> Vec<StatusWrite> {
        let accepted: Vec<&Gateway> = self
            .input
            .gateways
            .iter()
            .filter(|gw| {
                let key = ObjectKey {
                    kind: Kind::Gateway,
                    namespace: gw.metadata.namespace_or_default().to_owned(),
                    name: gw.metadata.name.clone(),
                };
                matches!(
                    status.get(&key),
                    Some(ObjectStatus::Gateway(s))
                        if s.conditions.is_true(ConditionType::Accepted)
                )
            })
            .collect();
        let mut out = vec![];
        let mut push = |resource: ApiResource, body: Value| {
            let meta = &body["metadata"];
            out.push(StatusWrite {
                namespace: meta["namespace"].as_str().unwrap_or_default().to_owned(),
                name: meta["name"].as_str().unwrap_or_default().to_owned(),
                resource,
                // Applied again only when the body changes (or Loom restarts).
                base: String::new(),
                what: Write::Object(body),
            });
        };
        let service = self.resources.get(&Kind::Service);
        for gw in &accepted {
            if let (Some(r), Some(body)) = (service, provision::service_for(&self.input, gw, p)) {
                push(r.clone(), body);
            }
            if let Some(body) = provision::endpoint_slice_for(&self.input, gw, p) {
                push(ApiResource::erase::<EndpointSlice>(&()), body);
            }
            if let Some(dp) = &p.data_plane {
                if let Some(body) = provision::service_account_for(&self.input, gw) {
                    push(ApiResource::erase::<ServiceAccount>(&()), body);
                }
                if let Some(body) = provision::deployment_for(&self.input, gw, dp) {
                    push(ApiResource::erase::<Deployment>(&()), body);
                }
            }
        }
        if let Some(dp) = &p.data_plane {
            let body = provision::cluster_role_binding(dp, accepted.iter().copied());
            push(ApiResource::erase::<ClusterRoleBinding>(&()), body);
            // This controller's data planes of Gateways it no longer accepts (deleted ones go
            // with their owner anyway).
            let wanted: HashSet<(String, String)> = accepted
                .iter()
                .map(|gw| {
                    let ns = gw.metadata.namespace_or_default().to_owned();
                    (ns, provision::service_name(&gw.metadata.name))
                })
                .collect();
            let mut stale: Vec<&(String, String)> = self
                .rollouts
                .iter()
                .filter(|(k, r)| r.controller == dp.controller_name && !wanted.contains(*k))
                .map(|(k, _)| k)
                .collect();
            stale.sort();
            for (ns, name) in stale {
                for resource in [
                    ApiResource::erase::<Deployment>(&()),
                    ApiResource::erase::<ServiceAccount>(&()),
                    service.cloned().unwrap_or_else(|| {
                        ApiResource::erase::<k8s_openapi::api::core::v1::Service>(&())
                    }),
                ] {
                    out.push(StatusWrite {
                        namespace: ns.clone(),
                        name: name.clone(),
                        resource,
                        base: String::new(),
                        what: Write::Delete,
                    });
                }
            }
        }
        out
    }
}

/// Whether a data plane serving `gateway` needs `obj`: not other Gateways, nor routes whose
/// every parent is another Gateway (a route to a ListenerSet is kept: which Gateway that
/// ListenerSet joins can change without the route changing).
fn for_gateway(obj: &Object, (ns, name): &(String, String)) -> bool {
    let key = obj.key();
    if let Object::Gateway(_) = obj {
        return key.namespace == *ns && key.name == *name;
    }
    let Some(parents) = obj.parent_refs() else {
        return true;
    };
    parents.iter().any(|p| {
        let gateway = p.kind.as_deref().is_none_or(|k| k == "Gateway")
            && p.group
                .as_deref()
                .is_none_or(|g| g == loom_core::input::GATEWAY_GROUP);
        !gateway || (p.namespace.as_ref().unwrap_or(&key.namespace) == ns && p.name == *name)
    })
}

/// A Gateway's addresses are those of its Service, and it is Programmed once that Service
/// has an address and, in provisioned mode (`rollouts`), a data-plane pod is available.
fn service_readiness(
    input: &Input,
    rollouts: Option<&HashMap<(String, String), Rollout>>,
    opts: &mut Options,
) {
    let services: HashMap<(&str, &str), &Service> = input
        .services
        .iter()
        .map(|s| {
            (
                (s.metadata.namespace_or_default(), s.metadata.name.as_str()),
                s,
            )
        })
        .collect();
    for gw in &input.gateways {
        let ns = gw.metadata.namespace_or_default();
        let name = crate::provision::service_name(&gw.metadata.name);
        let service = services.get(&(ns, name.as_str()));
        let addresses = service.map(|s| service_addresses(s)).unwrap_or_default();
        let rollout = rollouts.map(|r| r.get(&(ns.to_owned(), name.clone())));
        let why = match (service, rollout) {
            (None, _) => Some(NotServing::AddressNotAssigned(format!(
                "waiting for Service {ns}/{name} to be created"
            ))),
            (Some(_), _) if addresses.is_empty() && gw.spec.addresses.is_empty() => {
                Some(NotServing::AddressNotAssigned(format!(
                    "waiting for an address of Service {ns}/{name}"
                )))
            }
            (_, Some(None)) => Some(NotServing::Pending(format!(
                "waiting for Deployment {ns}/{name} to be created"
            ))),
            (_, Some(Some(r))) if r.available == 0 => Some(NotServing::Pending(format!(
                "waiting for a data-plane pod of Deployment {ns}/{name} \
                 (0 of {} available)",
                r.replicas
            ))),
            _ => None,
        };
        let key = (ns.to_owned(), gw.metadata.name.clone());
        opts.gateway_addresses.insert(key.clone(), addresses);
        if let Some(why) = why {
            opts.gateway_not_programmed.insert(key, why);
        }
    }
}

/// Where a provisioned Service takes traffic: its load balancer's addresses, or for other
/// types its cluster IP.
fn service_addresses(s: &Service) -> Vec<StatusAddress> {
    if s.spec.type_.as_deref() == Some("LoadBalancer") {
        let ingress = &s.status.load_balancer.ingress;
        let ips = ingress.iter().filter_map(|i| i.ip.as_ref());
        let names = ingress.iter().filter_map(|i| i.hostname.as_ref());
        return ips
            .map(|v| ("IPAddress", v))
            .chain(names.map(|v| ("Hostname", v)))
            .map(|(t, v)| StatusAddress {
                type_: t.into(),
                value: v.clone(),
            })
            .collect();
    }
    s.spec
        .cluster_ip
        .iter()
        .filter(|ip| !ip.is_empty() && *ip != "None")
        .map(|ip| StatusAddress {
            type_: "IPAddress".into(),
            value: ip.clone(),
        })
        .collect()
}

fn has_status(kind: Kind) -> bool {
    !matches!(
        kind,
        Kind::Namespace
            | Kind::Service
            | Kind::EndpointSlice
            | Kind::Secret
            | Kind::ConfigMap
            | Kind::ReferenceGrant
            | Kind::Backend
    )
}

/// Every IPv4 address a Gateway asks for in `spec.addresses`.
fn requested_ips(input: &Input) -> BTreeSet<Ipv4Addr> {
    input
        .gateways
        .iter()
        .flat_map(|g| &g.spec.addresses)
        .filter(|a| a.type_.as_deref().is_none_or(|t| t == "IPAddress"))
        .filter_map(|a| a.value.as_deref()?.parse().ok())
        .collect()
}

fn reported_ips(current: Option<&Current>) -> Vec<Ipv4Addr> {
    current
        .and_then(|c| c.status.as_ref())
        .and_then(|s| s.get("addresses"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.get("value").and_then(Value::as_str))
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use crate::test_input as input;
    use kube::runtime::utils::Backoff;

    use super::*;

    #[test]
    fn a_gateway_is_programmed_once_its_service_has_an_address_and_a_pod_is_up() {
        let gateway = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: web}
spec:
  gatewayClassName: loom
  listeners: [{name: http, port: 80, protocol: HTTP}]
"#;
        let service = |spec: &str| {
            format!(
                "{gateway}---\napiVersion: v1\nkind: Service\n\
                 metadata: {{name: loom-edge, namespace: web}}\n{spec}"
            )
        };
        let key = ("web".to_owned(), "edge".to_owned());
        let rollout = |available| {
            HashMap::from([(
                ("web".to_owned(), "loom-edge".to_owned()),
                Rollout {
                    replicas: 2,
                    available,
                    controller: String::new(),
                },
            )])
        };
        let run = |yaml: &str, rollouts: Option<&HashMap<(String, String), Rollout>>| {
            let mut opts = Options::default();
            service_readiness(&input(yaml), rollouts, &mut opts);
            let why = opts.gateway_not_programmed.get(&key).cloned();
            let addrs: Vec<String> = opts.gateway_addresses[&key]
                .iter()
                .map(|a| format!("{} {}", a.type_, a.value))
                .collect();
            (why.map(|w| format!("{}: {w}", w.reason().as_str())), addrs)
        };
        let (why, addrs) = run(gateway, Some(&rollout(1)));
        assert_eq!(
            why.as_deref(),
            Some("AddressNotAssigned: waiting for Service web/loom-edge to be created")
        );
        assert!(addrs.is_empty());
        // A load balancer that has no address yet.
        let lb = service("spec: {type: LoadBalancer, clusterIP: 10.0.0.9}\n");
        let (why, _) = run(&lb, Some(&rollout(1)));
        assert!(
            why.unwrap()
                .starts_with("AddressNotAssigned: waiting for an address")
        );
        let lb_up = format!(
            "{lb}status: {{loadBalancer: {{ingress: [{{ip: 192.0.2.1}}, {{hostname: lb.example}}]}}}}\n"
        );
        let (why, addrs) = run(&lb_up, Some(&rollout(1)));
        assert_eq!(why, None);
        assert_eq!(addrs, ["IPAddress 192.0.2.1", "Hostname lb.example"]);
        // A ClusterIP Service: its cluster IP, once a pod is available.
        let cip = service("spec: {clusterIP: 10.0.0.9}\n");
        let (why, addrs) = run(&cip, Some(&HashMap::new()));
        assert_eq!(
            why.as_deref(),
            Some("Pending: waiting for Deployment web/loom-edge to be created")
        );
        assert_eq!(addrs, ["IPAddress 10.0.0.9"]);
        let (why, _) = run(&cip, Some(&rollout(0)));
        assert_eq!(
            why.as_deref(),
            Some(
                "Pending: waiting for a data-plane pod of Deployment web/loom-edge (0 of 2 available)"
            )
        );
        assert_eq!(run(&cip, Some(&rollout(1))).0, None);
        // All-in-one (no rollouts: the controller's pods serve): the address is enough.
        assert_eq!(
            run(&cip, None),
            (None, vec!["IPAddress 10.0.0.9".to_owned()])
        );
        assert!(run(&lb, None).0.unwrap().starts_with("AddressNotAssigned"));
    }

    #[test]
    fn a_data_plane_keeps_its_gateway_and_the_routes_that_may_attach_to_it() {
        let input = input(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: web}
spec: {gatewayClassName: loom}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: other, namespace: web}
spec: {gatewayClassName: loom}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: mine, namespace: web}
spec: {parentRefs: [{name: other}, {name: edge, sectionName: http}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: from-elsewhere, namespace: app}
spec: {parentRefs: [{name: edge, namespace: web}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: same-name-other-namespace, namespace: app}
spec: {parentRefs: [{name: edge}]}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: theirs, namespace: web}
spec: {parentRefs: [{name: other}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: via-listener-set, namespace: web}
spec: {parentRefs: [{kind: ListenerSet, name: extra}]}
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: app}
"#,
        );
        let gateway = ("web".to_owned(), "edge".to_owned());
        let kept: Vec<String> = input
            .objects()
            .into_iter()
            .filter(|o| for_gateway(o, &gateway))
            .map(|o| o.metadata().name.clone())
            .collect();
        assert_eq!(
            kept,
            ["edge", "mine", "via-listener-set", "from-elsewhere", "svc"],
            "{kept:?}"
        );
    }

    #[test]
    fn reconnect_backoff_grows_to_two_seconds_and_resets() {
        let mut b = Reconnect::default();
        let first = b.next().unwrap();
        assert!(first >= Reconnect::FIRST && first <= Reconnect::FIRST.mul_f64(1.25));
        let later: Vec<Duration> = (0..10).map(|_| b.next().unwrap()).collect();
        assert!(later.iter().all(|d| *d <= Reconnect::MAX.mul_f64(1.25)));
        assert!(later.last().unwrap() >= &Reconnect::MAX);
        b.reset();
        assert!(b.next().unwrap() <= Reconnect::FIRST.mul_f64(1.25));
    }
}
