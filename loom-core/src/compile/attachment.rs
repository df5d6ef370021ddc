//! Attachment: which listeners accept each route (parentRefs, allowedRoutes, hostnames); the
//! routes' status.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use super::error::{NotAttached, join};
use super::lookup::{InputLookup, by_age_shared, group_or};
use super::model::*;
use super::rules::{Findings, RouteCx};
use super::traffic::TrafficPolicies;
use crate::input::*;
use crate::route::RouteOrder;
use crate::route::host::HostPattern;
use crate::snapshot::*;
use crate::status::*;

/// Where a compile puts the HTTPRoutes and GRPCRoutes it compiled (their attachments borrow
/// them).
pub(crate) enum Store<'m> {
    /// A [`Compiler`](crate::Compiler)'s memo: what it has from the last compile is taken as
    /// it is, and it keeps what this compile adds for the next.
    Kept(&'m mut RouteMemo),
    /// This compile's alone: each route's outcome, in the order the routes are attached.
    Once(&'m mut Vec<Outcome>),
}

/// Compiles and attaches every route. HTTPRoutes and GRPCRoutes are compiled into `store`
/// first, then attached: their attachments borrow what `store` holds (an `Arc` clone of
/// each route's parts was a cache miss per route at each compile).
pub(crate) fn attach_all<'m>(
    lookup: &InputLookup<'_>,
    gws: &mut Gateways<'_>,
    policies: &TlsPolicies,
    traffic: &TrafficPolicies,
    store: Store<'m>,
) -> Attached<'m> {
    let input = lookup.input;
    let http = by_age_shared(&input.http_routes, |r| &r.metadata);
    let grpc = by_age_shared(&input.grpc_routes, |r| &r.metadata);
    let mut fresh = Interned::default();
    let (mut sink, interned) = match store {
        Store::Kept(memo) => {
            memo.compile += 1;
            let RouteMemo {
                routes,
                compile,
                interned,
            } = memo;
            routes.reserve((http.len() + grpc.len()).saturating_sub(routes.len()));
            (Sink::Kept(routes, *compile), interned)
        }
        Store::Once(outcomes) => {
            outcomes.reserve(http.len() + grpc.len());
            (Sink::Once(outcomes), &mut fresh)
        }
    };
    let mut l4_outcomes = vec![];
    {
        let mut c = Compiling {
            lookup,
            gws,
            policies,
            traffic,
            interned,
        };
        for r in &http {
            let (meta, spec) = (&r.metadata, &r.spec);
            let view = || RouteView::new(Kind::HttpRoute, meta, &spec.parent_refs, &spec.hostnames);
            c.http(&mut sink, r, view, |cx| cx.http_route(r));
        }
        for r in &grpc {
            let (meta, spec) = (&r.metadata, &r.spec);
            let view = || RouteView::new(Kind::GrpcRoute, meta, &spec.parent_refs, &spec.hostnames);
            c.http(&mut sink, r, view, |cx| cx.grpc_route(r));
        }
        for (kind, meta, spec, proto) in l4_routes(input) {
            // Only TLSRoute has hostnames (SNI).
            let hostnames: &[String] = if kind == Kind::TlsRoute {
                &spec.hostnames
            } else {
                &[]
            };
            let v = RouteView::new(kind, meta, &spec.parent_refs, hostnames);
            let outcome = c.outcome(&v, |cx| {
                let backends = spec
                    .rules
                    .iter()
                    .flat_map(|rule| &rule.backend_refs)
                    .map(|b| cx.weighted(b, Some(proto), Filters::default()))
                    .collect();
                cx.found.kept = spec.rules.len().max(1);
                Target::L4(Box::new((
                    Arc::new(L4Rule {
                        route: cx.view.key.clone(),
                        backends,
                    }),
                    route_order(meta),
                )))
            });
            l4_outcomes.push((v.key, outcome));
        }
    }
    let mut a = Attacher {
        gws,
        attached: Attached::default(),
        added: foldhash::HashSet::default(),
        statuses: Vec::with_capacity(http.len() + grpc.len() + l4_outcomes.len()),
    };
    let http_names = (http.iter()).map(|r| (RouteName::Http(Arc::clone(r)), Arc::as_ptr(r).addr()));
    let grpc_names = (grpc.iter()).map(|r| (RouteName::Grpc(Arc::clone(r)), Arc::as_ptr(r).addr()));
    let names = http_names.chain(grpc_names);
    match sink {
        Sink::Kept(routes, _) => {
            let routes = &*routes;
            for (name, address) in names {
                // Each is there: remembered above.
                if let Some(m) = routes.get(&address) {
                    a.attach(name, &m.outcome);
                }
            }
        }
        Sink::Once(outcomes) => {
            for ((name, _), outcome) in names.zip(&*outcomes) {
                a.attach(name, outcome);
            }
        }
    }
    for (key, outcome) in l4_outcomes {
        a.attach_l4(RouteName::Key(key), &outcome);
    }
    a.attached.statuses = RouteStatuses(a.statuses);
    a.attached
}

/// The routes' statuses, each with the object it belongs to: their keys (two strings each)
/// are built and the statuses sorted into the status map by [`RouteStatuses::write`], which
/// a data plane can leave until it serves the snapshot ([`Staged`](crate::Staged)).
#[derive(Debug, Default)]
pub(crate) struct RouteStatuses(Vec<(RouteName, Arc<RouteStatus>)>);

/// The route a status belongs to.
#[derive(Debug)]
pub(crate) enum RouteName {
    Http(Arc<HttpRoute>),
    Grpc(Arc<GrpcRoute>),
    Key(ObjectKey),
}

impl RouteName {
    fn key(self) -> ObjectKey {
        match self {
            RouteName::Http(r) => ObjectKey::of(Kind::HttpRoute, &r.metadata),
            RouteName::Grpc(r) => ObjectKey::of(Kind::GrpcRoute, &r.metadata),
            RouteName::Key(key) => key,
        }
    }
}

impl RouteStatuses {
    /// Puts the statuses in `status`.
    pub(crate) fn write(self, status: &mut Status) {
        let mut statuses: Vec<_> = (self.0.into_iter())
            .map(|(name, s)| (name.key(), ObjectStatus::Route(s)))
            .collect();
        // At once: sorted, the map takes them in one pass, where an insert each searched it
        // (a tenth of a recompile at 10,000 routes).
        statuses.sort_unstable_by(|x, y| x.0.cmp(&y.0)); // one status per key
        status.objects.append(&mut statuses.into_iter().collect());
    }
}

/// The TLSRoutes, TCPRoutes and UDPRoutes, each kind by age, with the protocol their backends
/// speak.
fn l4_routes(input: &Input) -> Vec<(Kind, &ObjectMeta, &L4RouteSpec, AppProtocol)> {
    let tls = by_age_shared(&input.tls_routes, |r| &r.metadata).into_iter();
    let tcp = by_age_shared(&input.tcp_routes, |r| &r.metadata).into_iter();
    let udp = by_age_shared(&input.udp_routes, |r| &r.metadata).into_iter();
    (tls.map(|r| (Kind::TlsRoute, &r.metadata, &r.spec, AppProtocol::Tcp)))
        .chain(tcp.map(|r| (Kind::TcpRoute, &r.metadata, &r.spec, AppProtocol::Tcp)))
        .chain(udp.map(|r| (Kind::UdpRoute, &r.metadata, &r.spec, AppProtocol::Udp)))
        .collect()
}

/// The HTTPRoutes and GRPCRoutes compiled, by the address of their object, and what
/// attaching each gave. A [`Compiler`](crate::Compiler) keeps it for the next compile, which
/// takes again the routes whose object is the same: valid only while every object that is
/// not a route and the options stay the same (compiling and attaching a route reads nothing
/// else but the route itself).
#[derive(Default)]
pub(crate) struct RouteMemo {
    /// By the address of the route's object (held, so not reused while it is here).
    pub(crate) routes: AddressMap<Remembered>,
    /// The number of the compile under way (each route is stamped with the last that saw it).
    compile: u64,
    /// The backends and Service lists of the routes compiled so far.
    pub(crate) interned: Interned,
}

/// What routes share when equal: one copy each, kept from one compile to the next.
#[derive(Default)]
pub(crate) struct Interned {
    /// The backends resolved so far (see [`RouteCx::interned`]).
    backends: HashSet<Arc<BackendTarget>>,
    /// The lists of Services routes read (most routes read the same few): a compile adds a
    /// list to its sets once, however many routes have it.
    services: HashSet<Services>,
    /// The parentRefs of route status (most routes name the same Gateway) and the
    /// controller's name, one copy each.
    parents: BTreeSet<Arc<ParentReference>>,
    controller_name: Option<Arc<str>>,
}

/// The Services, by `(namespace, name)`, a route's backends were resolved to.
type Services = Arc<[(String, String)]>;

impl Interned {
    fn services(&mut self, found: BTreeSet<(String, String)>) -> Services {
        let list: Vec<_> = found.into_iter().collect();
        if let Some(shared) = self.services.get(&list[..]) {
            return shared.clone();
        }
        let list: Services = list.into();
        self.services.insert(list.clone());
        list
    }

    fn parent(&mut self, parent: ParentReference) -> Arc<ParentReference> {
        if let Some(shared) = self.parents.get(&parent) {
            return shared.clone();
        }
        let parent = Arc::new(parent);
        self.parents.insert(parent.clone());
        parent
    }

    fn controller_name(&mut self, name: &str) -> Arc<str> {
        match &self.controller_name {
            Some(shared) if **shared == *name => shared.clone(),
            _ => self.controller_name.insert(name.into()).clone(),
        }
    }
}

impl RouteMemo {
    /// Forgets the routes the last compile did not see.
    pub(crate) fn forget_gone(&mut self) {
        let compile = self.compile;
        self.routes.retain(|_, r| r.seen == compile);
        // What no kept route holds any more (the snapshot served may, until the next).
        self.interned.backends.retain(|b| Arc::strong_count(b) > 1);
        self.interned.services.retain(|s| Arc::strong_count(s) > 1);
        self.interned.parents.retain(|p| Arc::strong_count(p) > 1);
    }
}

/// A route as it was compiled, and what attaching it gave.
pub(crate) struct Remembered {
    /// The route's object: held, so that its address, the key, is not another's; never read.
    _object: Arc<dyn std::any::Any + Send + Sync>,
    outcome: Outcome,
    /// The last compile that saw the route.
    seen: u64,
}

/// What compiling and attaching one route gave.
pub(crate) struct Outcome {
    target: Target,
    /// The Services its backends were resolved to (their EndpointSlices read).
    services: Services,
    /// The listeners that accept it, each with the route's hostnames there.
    accepted: Box<[(usize, Hostnames)]>,
    status: Option<Arc<RouteStatus>>,
}

/// A map by address, hashed with foldhash (a few instructions for an integer; the keys are
/// addresses, not input).
type AddressMap<V> = foldhash::HashMap<usize, V>;

/// Compiles routes one at a time: their rules, references and status.
struct Compiling<'a, 'w, 'g> {
    lookup: &'a InputLookup<'w>,
    gws: &'a Gateways<'g>,
    policies: &'a TlsPolicies,
    traffic: &'a TrafficPolicies,
    interned: &'a mut Interned,
}

/// Where [`Compiling::http`] puts a route: a memo's routes and the number of the compile
/// under way, or this compile's outcomes.
enum Sink<'m> {
    Kept(&'m mut AddressMap<Remembered>, u64),
    Once(&'m mut Vec<Outcome>),
}

impl Compiling<'_, '_, '_> {
    /// An HTTPRoute or GRPCRoute into `sink`. A memo's route is stamped as seen if it is
    /// there (the same object, the same `Arc`); other routes are compiled (`view` and
    /// `rules`).
    fn http<'r, T: Send + Sync + 'static>(
        &mut self,
        sink: &mut Sink<'_>,
        object: &Arc<T>,
        view: impl FnOnce() -> RouteView<'r>,
        rules: impl FnOnce(&mut RouteCx<'_, '_>) -> Arc<CompiledRoute>,
    ) {
        let compile = || self.outcome(&view(), |cx| Target::Http(rules(cx)));
        match sink {
            Sink::Once(outcomes) => outcomes.push(compile()),
            Sink::Kept(routes, now) => match routes.entry(Arc::as_ptr(object).addr()) {
                std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().seen = *now,
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(Remembered {
                        _object: object.clone(),
                        outcome: compile(),
                        seen: *now,
                    });
                }
            },
        }
    }

    fn outcome(
        &mut self,
        view: &RouteView<'_>,
        compile: impl FnOnce(&mut RouteCx<'_, '_>) -> Target,
    ) -> Outcome {
        let mut cx = RouteCx {
            lookup: self.lookup,
            policies: self.policies,
            traffic: self.traffic,
            view,
            found: Findings::default(),
            interned: &mut self.interned.backends,
        };
        let target = compile(&mut cx);
        let found = cx.found;
        let (accepted, status) = attach_route(self.lookup, self.gws, view, &found, self.interned);
        // Exact sizes: a memo keeps them as long as the route does not change.
        Outcome {
            target,
            services: self.interned.services(found.services),
            accepted: accepted.into_boxed_slice(),
            status: status.map(Arc::new),
        }
    }
}

/// Attaches compiled routes, collecting the attachments.
struct Attacher<'a, 'g, 'm> {
    gws: &'a mut Gateways<'g>,
    attached: Attached<'m>,
    /// The lists of Services added to the endpoint sources (`None`) and to each Gateway's
    /// Services (`Some(gateway)`), by address: each list is added once.
    added: foldhash::HashSet<(Option<usize>, usize)>,
    /// The routes' statuses.
    statuses: Vec<(RouteName, Arc<RouteStatus>)>,
}

impl<'m> Attacher<'_, '_, 'm> {
    /// Adds an HTTPRoute's or GRPCRoute's outcome to the compile's.
    fn attach(&mut self, name: RouteName, outcome: &'m Outcome) {
        self.listeners_and_status(name, outcome);
        if let Target::Http(route) = &outcome.target {
            for (li, hosts) in &outcome.accepted {
                self.attached.http.push(HttpAttachment {
                    listener: *li,
                    hostnames: hosts,
                    route,
                });
            }
        }
    }

    /// Adds a TLSRoute's, TCPRoute's or UDPRoute's outcome to the compile's.
    fn attach_l4(&mut self, name: RouteName, outcome: &Outcome) {
        self.listeners_and_status(name, outcome);
        if let Target::L4(l4) = &outcome.target {
            let (rule, order) = &**l4;
            for (li, hosts) in &outcome.accepted {
                self.attached.l4.push(L4Attachment {
                    listener: *li,
                    hostnames: hosts.clone(),
                    order: order.clone(),
                    rule: rule.clone(),
                });
            }
        }
    }

    /// The listeners' attached routes, the Services each Gateway routes to, the status.
    fn listeners_and_status(&mut self, name: RouteName, outcome: &Outcome) {
        let attached = &mut self.attached;
        let services = &outcome.services;
        let mut first_time = |to: Option<usize>| {
            !services.is_empty() && self.added.insert((to, Arc::as_ptr(services).addr()))
        };
        if first_time(None) {
            add_services(&mut attached.endpoint_sources, services);
        }
        for (i, (li, _)) in outcome.accepted.iter().enumerate() {
            let listener = &mut self.gws.listeners[*li];
            // Two parentRefs may both select a listener: the route is attached once.
            if !outcome.accepted[..i].iter().any(|(l, _)| l == li) {
                listener.attached_routes += 1;
            }
            let gateway = listener.gateway;
            if first_time(Some(gateway)) {
                add_services(
                    attached.services_by_gateway.entry(gateway).or_default(),
                    services,
                );
            }
        }
        if let Some(s) = &outcome.status {
            self.statuses.push((name, s.clone()));
        }
    }
}

/// Adds Services to a set, cloning only those not in it yet (most routes share a few).
fn add_services(to: &mut BTreeSet<(String, String)>, services: &[(String, String)]) {
    for s in services {
        if !to.contains(s) {
            to.insert(s.clone());
        }
    }
}

/// What a route compiled to. Boxed for L4 routes: the memo keeps one of these per HTTPRoute,
/// 16 bytes rather than 96.
enum Target {
    Http(Arc<CompiledRoute>),
    L4(Box<(Arc<L4Rule>, RouteOrder)>),
}

/// Which listeners accept a route (with its hostnames on each), and its status.
fn attach_route(
    lookup: &InputLookup<'_>,
    gws: &Gateways<'_>,
    route: &RouteView<'_>,
    found: &Findings,
    interned: &mut Interned,
) -> (Selected, Option<RouteStatus>) {
    let g = route.meta.generation();
    let ns = route.key.namespace.as_str();
    let mut hostnames = Vec::with_capacity(route.hostnames.len());
    let mut bad_hostname = None;
    for h in route.hostnames {
        match HostPattern::parse(h) {
            Ok(p) => hostnames.push(p),
            Err(error) => {
                bad_hostname = Some(NotAttached::Hostname {
                    hostname: h.clone(),
                    error,
                })
            }
        }
    }
    // Sized up front, as the other per-route lists: an empty `Vec` that is pushed to grows to
    // four elements, three of them unused (of 5,000 routes, 3.5 MB of route status).
    let mut parents = Vec::with_capacity(route.parent_refs.len());
    let mut all_accepted = Selected::new();
    let mut seen = BTreeSet::new();
    for p in route.parent_refs {
        let group = group_or(&p.group, GATEWAY_GROUP);
        let kind = p.kind.as_deref().unwrap_or("Gateway");
        let parent_ns = p.namespace.as_deref().unwrap_or(ns);
        let listeners: Vec<usize> = match (group, kind) {
            (GATEWAY_GROUP, "Gateway") => match gws.gateway_index(parent_ns, &p.name) {
                Some(gi) => gws.gateways[gi].listeners.clone(),
                None => continue,
            },
            (GATEWAY_GROUP, "ListenerSet") => match gws.listener_set_index(parent_ns, &p.name) {
                Some(si) => gws.listener_sets[si].listeners.clone(),
                None => continue,
            },
            _ => continue,
        };
        let parent_ref = ParentReference {
            group: Some(group.into()),
            kind: Some(kind.into()),
            namespace: Some(parent_ns.into()),
            name: p.name.clone(),
            section_name: p.section_name.clone(),
            port: p.port,
        };
        if !seen.insert(parent_ref.clone()) {
            continue; // the same parentRef twice gets one entry
        }
        let result = if let Some(e) = &bad_hostname {
            Err(e.clone())
        } else if found.kept == 0 && !found.dropped.is_empty() {
            // Spec (PartiallyInvalid): with every rule dropped, the route is not accepted.
            Err(NotAttached::NoValidRule(found.dropped.clone()))
        } else {
            select_listeners(lookup, gws, route, p, &listeners, &hostnames)
        };
        let partially_invalid = found.kept > 0 && !found.dropped.is_empty();
        // Exactly sized: the status is kept as long as the route does not change.
        let mut c = Conditions(Vec::with_capacity(2 + usize::from(partially_invalid)));
        match result {
            Ok(accepted) => {
                c.set(Condition::new(
                    ConditionType::Accepted,
                    true,
                    Reason::Accepted,
                    "route is attached",
                    g,
                ));
                all_accepted.extend(accepted);
            }
            Err(e) => c.set(Condition::new(
                ConditionType::Accepted,
                false,
                e.reason(),
                e.to_string(),
                g,
            )),
        }
        c.set(match found.refs.first() {
            None => Condition::new(
                ConditionType::ResolvedRefs,
                true,
                Reason::ResolvedRefs,
                "all references resolved",
                g,
            ),
            Some(e) => Condition::new(
                ConditionType::ResolvedRefs,
                false,
                e.reason(),
                e.to_string(),
                g,
            ),
        });
        if partially_invalid {
            // Spec: "The message for this condition MUST start with the prefix "Dropped Rule"".
            let m = join(&found.dropped);
            c.set(Condition::new(
                ConditionType::PartiallyInvalid,
                true,
                Reason::UnsupportedValue,
                m,
                g,
            ));
        }
        parents.push(RouteParentStatus {
            parent_ref: interned.parent(parent_ref),
            controller_name: interned.controller_name(&lookup.options.controller_name),
            conditions: c,
        });
    }
    let status = (!parents.is_empty()).then_some(RouteStatus { parents });
    (all_accepted, status)
}

type Selected = Vec<(usize, Hostnames)>;

/// Which listeners of a parent accept the route, with the effective hostnames on each.
fn select_listeners(
    lookup: &InputLookup<'_>,
    gws: &Gateways<'_>,
    route: &RouteView<'_>,
    p: &ParentReference,
    listeners: &[usize],
    hostnames: &[HostPattern],
) -> Result<Selected, NotAttached> {
    let candidates: Vec<usize> = listeners
        .iter()
        .copied()
        .filter(|&l| {
            p.section_name
                .as_ref()
                .is_none_or(|s| &gws.listeners[l].spec.name == s)
        })
        .filter(|&l| {
            p.port
                .is_none_or(|port| i32::from(gws.listeners[l].port) == port)
        })
        .collect();
    if candidates.is_empty() {
        return Err(match (&p.section_name, p.port) {
            (Some(s), _) => NotAttached::NoListenerNamed(s.clone()),
            (None, Some(port)) => NotAttached::NoListenerOnPort(port),
            _ => NotAttached::NoListeners,
        });
    }
    let mut accepted = vec![];
    let mut hostname_mismatch = false;
    for l in candidates {
        let listener = &gws.listeners[l];
        if !listener.is_accepted()
            || !listener.kinds.contains(&route.key.kind)
            || !listener.allows_namespace(lookup, &route.key.namespace)
        {
            continue;
        }
        let hosts: Vec<Option<HostPattern>> = if hostnames.is_empty() {
            vec![listener.hostname.clone()]
        } else {
            let mut v: Vec<_> = hostnames
                .iter()
                .filter_map(|h| HostPattern::intersect(listener.hostname.as_ref(), h))
                .map(Some)
                .collect();
            v.sort();
            v.dedup();
            v
        };
        if hosts.is_empty() {
            hostname_mismatch = true;
            continue;
        }
        accepted.push((l, hosts.into()));
    }
    if !accepted.is_empty() {
        Ok(accepted)
    } else if hostname_mismatch {
        Err(NotAttached::NoMatchingHostname)
    } else {
        Err(NotAttached::NotAllowedByListeners {
            kind: route.key.kind,
            namespace: route.key.namespace.clone(),
        })
    }
}
