//! Planning: from the index to what to publish (a compile) and to the writes to make
//! (status, the GatewayClass finalizer, the objects Loom provisions per Gateway). Pure: the
//! caller passes `now`, publishes the compile and hands the writes to the writer.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::ApiResource;
#[cfg(test)]
use loom_core::Compiled;
use loom_core::input::{Gateway, Input, Kind, ObjectKey, Service};
use loom_core::status::{ConditionType, ObjectStatus, Status, StatusAddress};
use loom_core::{NotServing, Options, Staged};
use serde_json::Value;

use super::index::{Index, Rollouts};
use super::{ControllerOptions, GATEWAY_EXISTS_FINALIZER};
use crate::addresses::Ipv4Net;
use crate::provision::{self, Provision};
use crate::status::next_status;
use crate::writer::{StatusWrite, Write};

/// Compiles the index and plans writes, for one set of served kinds.
#[derive(Debug)]
pub(crate) struct Planner {
    opts: ControllerOptions,
    /// How the API server serves each watched kind.
    resources: HashMap<Kind, ApiResource>,
}

impl Planner {
    pub(crate) fn new(opts: ControllerOptions, resources: HashMap<Kind, ApiResource>) -> Self {
        Planner { opts, resources }
    }

    /// [`compile_staged`](Self::compile_staged), its status finished.
    #[cfg(test)]
    pub(crate) fn compile(&self, index: &mut Index) -> Compiled {
        self.compile_staged(index).finish()
    }

    /// Compiles what the index holds, with the addresses each Gateway reports: from the pool
    /// (assigned here), or its Service's. The snapshot comes before its status is finished
    /// (served first).
    pub(crate) fn compile_staged(&self, index: &mut Index) -> Staged {
        let mut opts = self.opts.compile.clone();
        if let Some(ports) = &self.opts.ports_not_serving {
            opts.ports_not_serving = ports.borrow().clone();
        }
        if let Some(p) = &self.opts.plugin_modules {
            opts.plugin_modules = (p.sync)(index.input());
        }
        let requested = requested_ips(index.input());
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
                service_readiness(index.input(), Some(index.rollouts()), &mut opts);
                true
            }
            Some(p)
                if (!p.selector.is_empty() || p.endpoints_from.is_some())
                    && !index.has_address_pool() =>
            {
                service_readiness(index.input(), None, &mut opts);
                true
            }
            _ => false,
        };
        for (key, ip) in index.assign_pool_addresses(&requested) {
            match ip {
                Some(ip) => {
                    opts.gateway_addresses.insert(
                        (key.namespace.clone(), key.name.clone()),
                        vec![StatusAddress {
                            type_: "IPAddress".into(),
                            value: ip.to_string(),
                        }],
                    );
                }
                None => tracing::error!("no address left in the pool for {key}"),
            }
        }
        let mut compiled = if self.opts.reuse_compiles {
            index.compile_staged(&opts)
        } else {
            loom_core::compile_staged(index.input(), &opts)
        };
        if let Some((ns, name)) = self
            .opts
            .provision
            .as_ref()
            .and_then(|p| p.endpoints_from.as_ref())
        {
            // Its ready endpoints are what every provisioned EndpointSlice carries.
            compiled.endpoint_sources.insert((ns.clone(), name.clone()));
        }
        if behind_services {
            // The pods listen on their own addresses (--bind); the Service's are reported.
            for g in compiled.snapshot.gateways.values_mut() {
                g.addresses.clear();
            }
        }
        compiled
    }

    /// Every write `status` (a compile's) calls for, against what the index observed; `now`
    /// stamps changed conditions. Each object's status write is planned again only if
    /// `statuses` marks it stale; the others are the writes planned before.
    pub(crate) fn writes(
        &self,
        index: &Index,
        status: &Status,
        statuses: &mut StatusWrites,
        now: &str,
    ) -> Vec<Arc<StatusWrite>> {
        let controller = &self.opts.compile.controller_name;
        let plan = |key: &ObjectKey| {
            let observed = index.observed(key)?; // not (or no longer) in the cluster
            let resource = self.resources.get(&key.kind)?;
            let shown = observed.status();
            let status = next_status(status.get(key), shown.as_ref(), controller, now)?;
            Some(Arc::new(StatusWrite {
                namespace: key.namespace.clone(),
                name: key.name.clone(),
                resource: resource.clone(),
                base: observed.resource_version.clone(),
                what: Write::Status(status),
            }))
        };
        let stale = match std::mem::replace(&mut statuses.stale, Stale::Some(HashSet::new())) {
            Stale::All if statuses.planned.is_empty() => {
                statuses.planned = index
                    .observed_keys()
                    .filter_map(|key| Some((key.clone(), plan(key)?)))
                    .collect();
                HashSet::new()
            }
            // A resync: what was planned, and what is observed now.
            Stale::All => (index.observed_keys())
                .chain(statuses.planned.keys())
                .cloned()
                .collect(),
            Stale::Some(keys) => keys,
        };
        // At most PLAN_AT_ONCE now; the rest stay stale for the next plan.
        let mut stale = stale.into_iter();
        for key in stale.by_ref().take(PLAN_AT_ONCE) {
            match plan(&key) {
                Some(write) => statuses.planned.insert(key, write),
                None => statuses.planned.remove(&key),
            };
        }
        let rest: HashSet<ObjectKey> = stale.collect();
        statuses.stale = Stale::Some(rest);
        // Shared, not copied: during a flood thousands of writes are planned, and planned
        // again after every compile.
        let mut out: Vec<Arc<StatusWrite>> = statuses.planned.values().cloned().collect();
        if let Some(p) = &self.opts.provision {
            out.extend(
                self.provision_writes(index, status, p)
                    .into_iter()
                    .map(Arc::new),
            );
        }
        // GatewayClasses of Loom's: the finalizer while Gateways use them.
        let input = index.input();
        for class in input
            .gateway_classes
            .iter()
            .filter(|c| c.spec.controller_name == *controller)
        {
            let key = ObjectKey {
                kind: Kind::GatewayClass,
                namespace: String::new(),
                name: class.metadata.name.clone(),
            };
            let (Some(observed), Some(resource)) = (
                index.observed(&key),
                self.resources.get(&Kind::GatewayClass),
            ) else {
                continue;
            };
            let used = input
                .gateways
                .iter()
                .any(|g| g.spec.gateway_class_name == class.metadata.name);
            let has = observed
                .finalizers
                .iter()
                .any(|f| f == GATEWAY_EXISTS_FINALIZER);
            if used != has {
                out.push(Arc::new(StatusWrite {
                    namespace: String::new(),
                    name: key.name,
                    resource: resource.clone(),
                    base: observed.resource_version.clone(),
                    what: Write::Finalizers(if used {
                        vec![GATEWAY_EXISTS_FINALIZER]
                    } else {
                        vec![]
                    }),
                }));
            }
        }
        out
    }

    /// The objects of every Gateway Loom accepted: its Service, and in provisioned mode its
    /// ServiceAccount and Deployment, plus the binding of all data-plane ServiceAccounts.
    fn provision_writes(&self, index: &Index, status: &Status, p: &Provision) -> Vec<StatusWrite> {
        let input = index.input();
        let accepted: Vec<&Gateway> = input
            .gateways
            .iter()
            .map(|gw| &**gw)
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
            if let (Some(r), Some(body)) = (service, provision::service_for(input, gw, p)) {
                push(r.clone(), body);
            }
            if let Some(body) = provision::endpoint_slice_for(input, gw, p) {
                push(ApiResource::erase::<EndpointSlice>(&()), body);
            }
            if let Some(dp) = &p.data_plane {
                if let Some(body) = provision::service_account_for(input, gw) {
                    push(ApiResource::erase::<ServiceAccount>(&()), body);
                }
                if let Some(body) = provision::deployment_for(input, gw, dp) {
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
            let mut stale: Vec<&(String, String)> = index
                .rollouts()
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

/// The status writes of single objects, kept from one plan to the next: a plan computes
/// again only the objects whose status changed, in a compile or as observed. (Computing every
/// object's write takes ~35 ms at 5,000 HTTPRoutes; planned after each status event, while
/// the writer's own writes came back as events, that left no time to compile new routes.)
#[derive(Debug)]
pub(crate) struct StatusWrites {
    planned: BTreeMap<ObjectKey, Arc<StatusWrite>>,
    stale: Stale,
}

/// The most objects whose writes one plan computes when some were planned before (a resync,
/// every 30 s, plans every object again: ~35 ms at 5,000 HTTPRoutes, which a change that
/// came in meanwhile waited for). The rest stay stale, and the loop plans again at once,
/// after what else is ready.
pub(crate) const PLAN_AT_ONCE: usize = 256;

/// Which objects' status writes have to be planned again.
#[derive(Debug)]
enum Stale {
    All,
    Some(HashSet<ObjectKey>),
}

impl Default for StatusWrites {
    /// Nothing planned yet: every object is stale.
    fn default() -> Self {
        StatusWrites {
            planned: BTreeMap::new(),
            stale: Stale::All,
        }
    }
}

impl StatusWrites {
    /// Every object's write is planned again (a resync, a new leader).
    pub(crate) fn all_stale(&mut self) {
        self.stale = Stale::All;
    }

    /// Whether objects are left to plan again (a plan does [`PLAN_AT_ONCE`] at most).
    pub(crate) fn more_to_plan(&self) -> bool {
        matches!(&self.stale, Stale::Some(keys) if !keys.is_empty())
    }

    /// These objects' writes are planned again (their observed state changed).
    pub(crate) fn stale(&mut self, keys: impl IntoIterator<Item = ObjectKey>) {
        if let Stale::Some(stale) = &mut self.stale {
            stale.extend(keys);
        }
    }

    /// A compile's status, `new`, takes the place of `old`: the objects whose status differs
    /// are planned again.
    pub(crate) fn compiled(&mut self, old: Option<&Status>, new: &Status) {
        let (Some(old), Stale::Some(stale)) = (old, &mut self.stale) else {
            self.stale = Stale::All;
            return;
        };
        // Both maps in key order, walked side by side: ~1.4 ms at 5,000 routes, where a
        // lookup per key took ~4 ms.
        let mut before = old.objects.iter().peekable();
        for (key, s) in &new.objects {
            while let Some((gone, _)) = before.next_if(|(k, _)| *k < key) {
                stale.insert(gone.clone());
            }
            match before.next_if(|(k, _)| *k == key) {
                Some((_, was)) if was == s => {}
                _ => {
                    stale.insert(key.clone());
                }
            }
        }
        stale.extend(before.map(|(gone, _)| gone.clone()));
    }
}

/// A Gateway's addresses are those of its Service, and it is Programmed once that Service
/// has an address and, in provisioned mode (`rollouts`), a data-plane pod is available.
fn service_readiness(input: &Input, rollouts: Option<&Rollouts>, opts: &mut Options) {
    let services: HashMap<(&str, &str), &Service> = input
        .services
        .iter()
        .map(|s| {
            let s = &**s;
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

#[cfg(test)]
mod tests;
