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
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use loom_core::input::{Input, Kind, ObjectKey};
use loom_core::status::{ConditionType, ObjectStatus, StatusAddress};
use loom_core::{Compiled, Options};
use serde_json::Value;
use tokio::sync::watch;

use crate::addresses::{AddressPool, Ipv4Net};
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
    /// Create a Service per Gateway (infrastructure labels and annotations propagated).
    pub provision: Option<crate::provision::Provision>,
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
}

/// Runs the controller; it does not return. `publish` receives every compiled snapshot
/// (after all watches have listed once, then after each debounced change). An API server
/// that is not reachable yet, a Lease that cannot be taken yet, or a kind the API server
/// starts serving later (a CRD installed after Loom) are waited for and picked up.
pub async fn run(client: kube::Client, opts: ControllerOptions, publish: Publish) {
    let (leader_tx, leader) = watch::channel(opts.lease.is_none());
    if let Some(lease) = opts.lease.clone() {
        tokio::spawn(elect(
            client.clone(),
            lease,
            opts.field_manager.clone(),
            leader_tx,
        ));
    }
    let (writes_tx, writes_rx) = watch::channel(Arc::new(Vec::<StatusWrite>::new()));
    tokio::spawn(status_writer(
        client.clone(),
        opts.field_manager.clone(),
        writes_rx,
        leader.clone(),
    ));
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
    };
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
        let obj = match resources::to_object(kind, o) {
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
        let compiled = loom_core::compile_with(&self.input, &opts);
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
                    key: key.clone(),
                    resource: resource.clone(),
                    base: current.resource_version.clone(),
                    what: Write::Status(status),
                });
            }
        }
        // A Service for every Gateway Loom accepted.
        if let (Some(p), Some(resource)) =
            (&self.opts.provision, self.resources.get(&Kind::Service))
        {
            for gw in &self.input.gateways {
                let key = ObjectKey {
                    kind: Kind::Gateway,
                    namespace: gw.metadata.namespace_or_default().to_owned(),
                    name: gw.metadata.name.clone(),
                };
                let accepted = matches!(
                    status.get(&key),
                    Some(ObjectStatus::Gateway(s))
                        if s.conditions.is_true(ConditionType::Accepted)
                );
                let Some(body) = accepted
                    .then(|| crate::provision::service_for(gw, p))
                    .flatten()
                else {
                    continue;
                };
                out.push(StatusWrite {
                    key: ObjectKey {
                        kind: Kind::Service,
                        namespace: key.namespace,
                        name: crate::provision::service_name(&gw.metadata.name),
                    },
                    resource: resource.clone(),
                    // Applied again only when the body changes (or Loom restarts).
                    base: String::new(),
                    what: Write::Object(body),
                });
            }
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
                    key,
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
    use kube::runtime::utils::Backoff;

    use super::*;

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
