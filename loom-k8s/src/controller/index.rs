//! The objects Loom keeps, updated by watch events: a pure index (no IO, no clock; the
//! caller passes `now`), driven by unit tests like linkerd's policy-controller indexes.
//!
//! ```text
//! watch events ─► Relist (buffers Init … InitDone) ─► Index
//!                                                     ├─ Input (keys per kind)
//!                                                     ├─ ObservedStatus per object with status
//!                                                     ├─ Rollout per data-plane Deployment
//!                                                     ├─ NamedReference per Secret/ConfigMap
//!                                                     └─ the address pool
//! ```
//!
//! A relist (a watch that restarted) replaces what was known of that watch as a whole: an
//! object deleted while the watch was down disappears, and nothing is duplicated.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::DynamicObject;
use kube::runtime::watcher::Event;
use loom_core::input::{Input, Kind, Object, ObjectKey};
use loom_core::{Compiler, Options, Staged};
use serde_json::Value;

use super::readiness::{InitialList, ReferenceFetch};
use crate::addresses::AddressPool;
use crate::provision::CONTROLLER_ANNOTATION;
use crate::resources;

/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A watch's relist in progress. `Init` starts it (again), `InitApply` adds an object,
/// `InitDone` hands over everything listed, to replace what was known.
#[derive(Debug)]
pub(crate) struct Relist<T> {
    listed: Option<Vec<T>>,
}

impl<T> Default for Relist<T> {
    fn default() -> Self {
        Relist { listed: None }
    }
}

/// A watch event once relists are buffered.
#[derive(Debug, PartialEq)]
pub(crate) enum Update<T> {
    Apply(T),
    Delete(T),
    /// A relist completed: every object the watch sees, in list order.
    Relisted(Vec<T>),
}

impl<T> Relist<T> {
    /// The update an event makes, `None` while a relist is in progress.
    pub(crate) fn event(&mut self, event: Event<T>) -> Option<Update<T>> {
        match event {
            Event::Init => {
                self.listed = Some(vec![]);
                None
            }
            Event::InitApply(o) => {
                self.listed.get_or_insert_default().push(o);
                None
            }
            Event::InitDone => Some(Update::Relisted(self.listed.take().unwrap_or_default())),
            Event::Apply(o) => Some(Update::Apply(o)),
            Event::Delete(o) => Some(Update::Delete(o)),
        }
    }
}

/// What the API server last showed of an object that carries status: what status writes
/// are planned against.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ObservedStatus {
    pub(crate) resource_version: String,
    /// `status` as JSON text: a fifth of the memory of a `Value` tree (at 5,000 HTTPRoutes,
    /// ~10 MB less), and read only when an object's write is planned again.
    status: Option<Box<str>>,
    pub(crate) finalizers: Vec<String>,
}

impl ObservedStatus {
    pub(crate) fn new(
        resource_version: String,
        status: Option<&Value>,
        finalizers: Vec<String>,
    ) -> Self {
        ObservedStatus {
            resource_version,
            // Maps serialize in key order: the same status is the same text.
            status: status.map(|s| s.to_string().into_boxed_str()),
            finalizers,
        }
    }

    /// The `status` the API server showed.
    pub(crate) fn status(&self) -> Option<Value> {
        serde_json::from_str(self.status.as_deref()?).ok()
    }
}

/// How far a data-plane Deployment is, and which controller made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rollout {
    pub(crate) replicas: i32,
    pub(crate) available: i32,
    pub(crate) controller: String,
}

impl Rollout {
    /// The Deployment's `(namespace, name)` and rollout.
    fn of(d: &Deployment) -> ((String, String), Rollout) {
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
}

/// Provisioned data-plane Deployments by `(namespace, name)`.
pub(crate) type Rollouts = HashMap<(String, String), Rollout>;

/// A Secret or ConfigMap the input names, fetched by a watch of its own.
#[derive(Debug)]
struct NamedReference {
    relist: Relist<DynamicObject>,
    fetch: ReferenceFetch,
}

/// What an event changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Changed {
    /// The input changed, or a kind completed its first list: a compile is due.
    pub(crate) compile: bool,
    /// The status an object shows changed: the writes are planned again.
    pub(crate) observed_status: bool,
}

/// The watches of named Secrets and ConfigMaps to start and to stop.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct NamedWatchChanges {
    pub(crate) start: Vec<ObjectKey>,
    pub(crate) stop: Vec<ObjectKey>,
}

/// Everything Loom keeps of the cluster.
#[derive(Debug)]
pub(crate) struct Index {
    /// Keep only what the data plane of this Gateway `(namespace, name)` needs.
    data_plane_of: Option<(String, String)>,
    input: Input,
    /// Compiles `input`, taking again what did not change since the last compile.
    compiler: Compiler,
    relists: HashMap<Kind, Relist<DynamicObject>>,
    initial_list: InitialList,
    observed: HashMap<ObjectKey, ObservedStatus>,
    /// Objects whose observed status, resourceVersion or finalizers changed (or that came
    /// or went) since [`Index::take_observed_changes`] last took them.
    observed_changes: HashSet<ObjectKey>,
    /// The Services whose EndpointSlices the last compile read (`None` before the first): a
    /// change to another Service's EndpointSlices is kept but asks for no compile (in a busy
    /// cluster, pods come and go all the time behind Services no route names).
    endpoint_sources: Option<BTreeSet<(String, String)>>,
    address_pool: Option<AddressPool>,
    /// The kinds watched one object at a time, by reference (Secret, ConfigMap), that the
    /// API server serves.
    referable: HashSet<Kind>,
    references: HashMap<ObjectKey, NamedReference>,
    rollouts: Rollouts,
    rollouts_relist: Relist<Deployment>,
}

impl Index {
    /// An empty index. `listed` are the kinds watched as a whole (the first compile waits
    /// for each to list once); `referable` those watched one named object at a time.
    pub(crate) fn new(
        listed: impl IntoIterator<Item = Kind>,
        referable: impl IntoIterator<Item = Kind>,
        address_pool: Option<AddressPool>,
        data_plane_of: Option<(String, String)>,
    ) -> Self {
        Index {
            data_plane_of,
            input: Input::default(),
            compiler: Compiler::new(),
            relists: HashMap::new(),
            initial_list: InitialList::new(listed),
            observed: HashMap::new(),
            observed_changes: HashSet::new(),
            endpoint_sources: None,
            address_pool,
            referable: referable.into_iter().collect(),
            references: HashMap::new(),
            rollouts: HashMap::new(),
            rollouts_relist: Relist::default(),
        }
    }

    pub(crate) fn input(&self) -> &Input {
        &self.input
    }

    /// Compiles the input, reusing what the last compile did for the routes that did not
    /// change (while nothing else did); the snapshot before its status is finished.
    pub(crate) fn compile_staged(&mut self, options: &Options) -> Staged {
        self.compiler.compile_staged(&self.input, options)
    }

    pub(crate) fn observed(&self, key: &ObjectKey) -> Option<&ObservedStatus> {
        self.observed.get(key)
    }

    pub(crate) fn observed_keys(&self) -> impl Iterator<Item = &ObjectKey> {
        self.observed.keys()
    }

    /// The objects whose observed state changed since the last call: what status writes
    /// have to be planned again for.
    pub(crate) fn take_observed_changes(&mut self) -> HashSet<ObjectKey> {
        std::mem::take(&mut self.observed_changes)
    }

    /// A compile read the EndpointSlices of these Services (and no others).
    pub(crate) fn compiled(&mut self, endpoint_sources: BTreeSet<(String, String)>) {
        self.endpoint_sources = Some(endpoint_sources);
    }

    /// Whether a change to `obj` can change a compile's result: for an EndpointSlice, whether
    /// the last compile read its Service's slices.
    fn can_change_compile(&self, obj: &Object) -> bool {
        let (Object::EndpointSlice(slice), Some(read)) = (obj, &self.endpoint_sources) else {
            return true;
        };
        slice
            .metadata
            .labels
            .get(SERVICE_NAME_LABEL)
            .is_some_and(|svc| {
                read.contains(&(
                    slice.metadata.namespace_or_default().to_owned(),
                    svc.clone(),
                ))
            })
    }

    pub(crate) fn rollouts(&self) -> &Rollouts {
        &self.rollouts
    }

    pub(crate) fn has_address_pool(&self) -> bool {
        self.address_pool.is_some()
    }

    /// Whether every kind watched as a whole has listed once.
    pub(crate) fn initial_list_complete(&self) -> bool {
        self.initial_list.is_complete()
    }

    /// Applies one event of the watch of `kind`.
    pub(crate) fn apply(&mut self, kind: Kind, event: Event<DynamicObject>) -> Changed {
        let Some(update) = self.relists.entry(kind).or_default().event(event) else {
            return Changed::default();
        };
        match update {
            Update::Relisted(listed) => {
                let mut seen = HashSet::new();
                let mut changed = Changed::default();
                for o in &listed {
                    let (c, key) = self.upsert(kind, o);
                    changed.compile |= c.compile;
                    changed.observed_status |= c.observed_status;
                    seen.extend(key);
                }
                // What the input keeps of the kind is what its watch showed before.
                let gone: Vec<ObjectKey> = (self.input.keys_of(kind).into_iter())
                    .filter(|k| !seen.contains(k))
                    .collect();
                let removed = gone.len();
                for key in gone {
                    changed.compile |= self.remove(&key);
                }
                let first = self.initial_list.listed(kind);
                tracing::debug!("{kind}: listed {} objects, {removed} gone", listed.len());
                changed.compile |= first;
                changed
            }
            Update::Apply(o) => self.upsert(kind, &o).0,
            Update::Delete(o) => match resources::to_object(kind, &o) {
                Ok(obj) => Changed {
                    compile: self.remove(&obj.key()),
                    observed_status: false,
                },
                Err(_) => Changed::default(),
            },
        }
    }

    /// Applies one event of the data-plane Deployment watch. Returns whether a Gateway's
    /// readiness changed.
    pub(crate) fn apply_rollout(&mut self, event: Event<Deployment>) -> bool {
        let before = self.rollouts.clone();
        match self.rollouts_relist.event(event) {
            None => {}
            Some(Update::Relisted(listed)) => {
                self.rollouts = listed.iter().map(Rollout::of).collect();
            }
            Some(Update::Apply(d)) => {
                let (k, v) = Rollout::of(&d);
                self.rollouts.insert(k, v);
            }
            Some(Update::Delete(d)) => {
                self.rollouts.remove(&Rollout::of(&d).0);
            }
        }
        self.rollouts != before
    }

    /// Applies one event of the watch of the named Secret or ConfigMap `key`. Returns whether
    /// the input changed.
    pub(crate) fn apply_reference(&mut self, key: &ObjectKey, event: Event<DynamicObject>) -> bool {
        let Some(named) = self.references.get_mut(key) else {
            return false; // no longer named (the watch was stopped)
        };
        match named.relist.event(event) {
            None => false,
            Some(Update::Relisted(mut listed)) => {
                named.fetch.listed();
                // The watch selects one name: the object, or nothing (it does not exist).
                match listed.pop() {
                    Some(o) => self.upsert(key.kind, &o).0.compile,
                    None => self.remove(key),
                }
            }
            Some(Update::Apply(o)) => self.upsert(key.kind, &o).0.compile,
            Some(Update::Delete(_)) => self.remove(key),
        }
    }

    /// Follows the Secrets and ConfigMaps the input names: the newly named ones are waited for
    /// from `now`, the ones no longer named leave the input. Returns the watches to start and
    /// stop.
    pub(crate) fn update_references(&mut self, now: Instant) -> NamedWatchChanges {
        let wanted: BTreeSet<ObjectKey> = self
            .input
            .referenced_secrets_and_config_maps()
            .into_iter()
            .filter(|k| self.referable.contains(&k.kind))
            .collect();
        let mut stop: Vec<ObjectKey> = self
            .references
            .keys()
            .filter(|k| !wanted.contains(*k))
            .cloned()
            .collect();
        stop.sort();
        for key in &stop {
            self.references.remove(key);
            self.remove(key);
        }
        let mut start = vec![];
        for key in wanted {
            if !self.references.contains_key(&key) {
                let named = NamedReference {
                    relist: Relist::default(),
                    fetch: ReferenceFetch::new(now),
                };
                self.references.insert(key.clone(), named);
                start.push(key);
            }
        }
        NamedWatchChanges { start, stop }
    }

    /// Whether every named Secret and ConfigMap has been fetched, or waited for long enough.
    pub(crate) fn references_fetched(&self, now: Instant) -> bool {
        self.references.values().all(|r| r.fetch.is_done(now))
    }

    /// Each Gateway's address from the pool, in key order (`None`: the pool is full); a
    /// Gateway keeps the address its status shows when it can. Empty without a pool.
    pub(crate) fn assign_pool_addresses(
        &mut self,
        requested: &BTreeSet<Ipv4Addr>,
    ) -> Vec<(ObjectKey, Option<Ipv4Addr>)> {
        let Some(pool) = &mut self.address_pool else {
            return vec![];
        };
        let mut gateways = self.input.keys_of(Kind::Gateway);
        gateways.sort();
        gateways
            .into_iter()
            .map(|key| {
                let reported = reported_ips(self.observed.get(&key));
                let ip = pool.assign(&key.namespace, &key.name, &reported, requested);
                (key, ip)
            })
            .collect()
    }

    /// Returns what changed, and the object's key if it was kept.
    fn upsert(&mut self, kind: Kind, o: &DynamicObject) -> (Changed, Option<ObjectKey>) {
        let mut obj = match resources::to_object(kind, o) {
            Ok(obj) => obj,
            Err(e) => {
                tracing::warn!(
                    "{kind} {}/{} is not understood and is ignored: {e}",
                    o.metadata.namespace.as_deref().unwrap_or(""),
                    o.metadata.name.as_deref().unwrap_or("")
                );
                return (Changed::default(), None);
            }
        };
        let key = obj.key();
        if let Some(gateway) = &self.data_plane_of {
            if !for_gateway(&obj, gateway) {
                // Another data plane's (and maybe ours before this change): not kept.
                let changed = Changed {
                    compile: self.remove(&key),
                    observed_status: false,
                };
                return (changed, None);
            }
            if let Object::Gateway(gw) = &mut obj {
                // The pod listens on its own addresses; the Service carries spec.addresses.
                Arc::make_mut(gw).spec.addresses.clear();
            }
        }
        let mut observed_status = false;
        // A data plane writes no status: what the API server shows of each route (a JSON tree
        // of ~2 KB) is not kept (at 5,000 HTTPRoutes, 13 MB of the pod's heap).
        if has_status(kind) && self.data_plane_of.is_none() {
            let seen = ObservedStatus::new(
                o.metadata.resource_version.clone().unwrap_or_default(),
                resources::status_of(o),
                o.metadata.finalizers.clone().unwrap_or_default(),
            );
            let before = self.observed.get(&key);
            observed_status = before.is_none_or(|b| b.status != seen.status);
            if before != Some(&seen) {
                self.observed_changes.insert(key.clone());
                self.observed.insert(key.clone(), seen);
            }
        }
        let compile = match self.input.upsert(obj.clone()) {
            // A slice that moves from one Service to another changes both.
            Some(old) => {
                old != obj && (self.can_change_compile(&old) || self.can_change_compile(&obj))
            }
            None => self.can_change_compile(&obj),
        };
        let changed = Changed {
            compile,
            observed_status,
        };
        (changed, Some(key))
    }

    /// Returns whether the input changed.
    fn remove(&mut self, key: &ObjectKey) -> bool {
        if self.observed.remove(key).is_some() {
            self.observed_changes.insert(key.clone());
        }
        if key.kind == Kind::Gateway
            && let Some(pool) = &mut self.address_pool
        {
            pool.release(&key.namespace, &key.name);
        }
        self.input
            .remove(key)
            .is_some_and(|old| self.can_change_compile(&old))
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

/// The IPv4 addresses the object's status shows.
fn reported_ips(observed: Option<&ObservedStatus>) -> Vec<Ipv4Addr> {
    observed
        .and_then(ObservedStatus::status)
        .as_ref()
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
mod tests;
