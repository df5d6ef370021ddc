//! Attachment: which listeners accept each route (parentRefs, allowedRoutes, hostnames); the
//! routes' status.

use std::collections::{BTreeSet, HashMap, HashSet};
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

pub(crate) fn attach_all(
    lookup: &InputLookup<'_>,
    gws: &mut Gateways<'_>,
    policies: &TlsPolicies,
    traffic: &TrafficPolicies,
    status: &mut Status,
    memo: Option<&mut RouteMemo>,
) -> Attached {
    let input = lookup.input;
    let mut fresh = HashSet::new();
    let (interned, mut memo) = match memo {
        Some(m) => {
            m.compile += 1;
            (&mut m.interned, Some((&mut m.routes, m.compile)))
        }
        None => (&mut fresh, None),
    };
    let mut a = Attacher {
        lookup,
        gws,
        policies,
        traffic,
        status,
        attached: Attached::default(),
        interned,
        statuses: Vec::with_capacity(input.http_routes.len() + input.grpc_routes.len()),
    };
    for r in by_age_shared(&input.http_routes, |r| &r.metadata) {
        let v = RouteView::new(
            Kind::HttpRoute,
            &r.metadata,
            &r.spec.parent_refs,
            &r.spec.hostnames,
        );
        let object = RouteObject::Http(r.clone());
        a.http_route(v, object, memo.as_mut(), |cx| cx.http_route(r));
    }
    for r in by_age_shared(&input.grpc_routes, |r| &r.metadata) {
        let v = RouteView::new(
            Kind::GrpcRoute,
            &r.metadata,
            &r.spec.parent_refs,
            &r.spec.hostnames,
        );
        let object = RouteObject::Grpc(r.clone());
        a.http_route(v, object, memo.as_mut(), |cx| cx.grpc_route(r));
    }
    let l4 = [
        (
            Kind::TlsRoute,
            input
                .tls_routes
                .iter()
                .map(|r| (&r.metadata, &r.spec))
                .collect::<Vec<_>>(),
            AppProtocol::Tcp,
        ),
        (
            Kind::TcpRoute,
            input
                .tcp_routes
                .iter()
                .map(|r| (&r.metadata, &r.spec))
                .collect(),
            AppProtocol::Tcp,
        ),
        (
            Kind::UdpRoute,
            input
                .udp_routes
                .iter()
                .map(|r| (&r.metadata, &r.spec))
                .collect(),
            AppProtocol::Udp,
        ),
    ];
    for (kind, mut routes, proto) in l4 {
        routes.retain(|(m, _)| m.deletion_timestamp.is_none());
        routes.sort_by_cached_key(|(meta, _)| meta.age_key());
        for (meta, spec) in routes {
            // Only TLSRoute has hostnames (SNI).
            let hostnames: &[String] = if kind == Kind::TlsRoute {
                &spec.hostnames
            } else {
                &[]
            };
            let v = RouteView::new(kind, meta, &spec.parent_refs, hostnames);
            a.route(v, |cx| {
                let backends = spec
                    .rules
                    .iter()
                    .flat_map(|rule| &rule.backend_refs)
                    .map(|b| cx.weighted(b, Some(proto), Filters::default()))
                    .collect();
                cx.found.kept = spec.rules.len().max(1);
                Target::L4(
                    Arc::new(L4Rule {
                        route: cx.view.key.clone(),
                        backends,
                    }),
                    route_order(meta),
                )
            });
        }
    }
    // The routes' statuses go in at once: sorted, the map takes them in one pass, where an
    // insert each searched it (a tenth of a recompile at 10,000 routes).
    let mut statuses = std::mem::take(&mut a.statuses);
    statuses.sort_by(|x, y| x.0.cmp(&y.0));
    a.status.objects.append(&mut statuses.into_iter().collect());
    a.attached
}

/// The HTTPRoutes and GRPCRoutes of the last compile, by key, and what attaching each gave,
/// for the next compile to take again (see [`Compiler`](crate::Compiler)). Valid only while
/// every object that is not a route and the options stay the same: compiling and attaching a
/// route reads nothing else but the route itself.
#[derive(Default)]
pub(crate) struct RouteMemo {
    /// By the address of the route's object (held, so not reused while it is here).
    pub(crate) routes: HashMap<usize, Remembered>,
    /// The number of the compile under way (each route is stamped with the last that saw it).
    compile: u64,
    /// The backends resolved so far (see [`RouteCx::interned`]).
    pub(crate) interned: HashSet<Arc<BackendTarget>>,
}

impl RouteMemo {
    /// Forgets the routes the last compile did not see.
    pub(crate) fn forget_gone(&mut self) {
        let compile = self.compile;
        self.routes.retain(|_, r| r.seen == compile);
    }
}

/// A route as it was compiled, and what attaching it gave.
pub(crate) struct Remembered {
    #[expect(dead_code, reason = "held, never read: its address is the key")]
    object: RouteObject,
    outcome: Outcome,
    /// The last compile that saw the route.
    seen: u64,
}

/// The object a compiled route came from: the same `Arc`, the same object (the memo holds
/// it, so its address cannot be reused by another).
enum RouteObject {
    Http(Arc<HttpRoute>),
    Grpc(Arc<GrpcRoute>),
}

impl RouteObject {
    fn address(&self) -> usize {
        match self {
            RouteObject::Http(r) => Arc::as_ptr(r).addr(),
            RouteObject::Grpc(r) => Arc::as_ptr(r).addr(),
        }
    }
}

/// What compiling and attaching one route gave.
struct Outcome {
    target: Target,
    /// The Services its backends were resolved to (their EndpointSlices read).
    services: Box<[(String, String)]>,
    /// The listeners that accept it, each with the route's hostnames there.
    accepted: Box<[(usize, Hostnames)]>,
    status: Option<Arc<RouteStatus>>,
}

/// Compiles routes one at a time and attaches them, collecting the attachments.
struct Attacher<'a, 'w, 'g> {
    lookup: &'a InputLookup<'w>,
    gws: &'a mut Gateways<'g>,
    policies: &'a TlsPolicies,
    traffic: &'a TrafficPolicies,
    status: &'a mut Status,
    attached: Attached,
    interned: &'a mut HashSet<Arc<BackendTarget>>,
    /// The routes' statuses, put in the status map after the last route.
    statuses: Vec<(ObjectKey, ObjectStatus)>,
}

/// [`RouteMemo`]'s routes and the number of the compile under way.
type Memo<'m> = (&'m mut HashMap<usize, Remembered>, u64);

impl Attacher<'_, '_, '_> {
    /// An HTTPRoute or GRPCRoute: what the last compile gave for the same object, or compiled.
    fn http_route(
        &mut self,
        view: RouteView<'_>,
        object: RouteObject,
        mut memo: Option<&mut Memo<'_>>,
        compile: impl FnOnce(&mut RouteCx<'_, '_>) -> Arc<CompiledRoute>,
    ) {
        let address = object.address();
        if let Some((routes, now)) = memo.as_deref_mut()
            && let Some(r) = routes.get_mut(&address)
        {
            r.seen = *now;
            self.attach(view.key, &r.outcome);
            return;
        }
        let outcome = self.compile(&view, |cx| Target::Http(compile(cx)));
        self.attach(view.key, &outcome);
        if let Some((routes, now)) = memo {
            let seen = *now;
            routes.insert(
                address,
                Remembered {
                    object,
                    outcome,
                    seen,
                },
            );
        }
    }

    fn route(&mut self, view: RouteView<'_>, compile: impl FnOnce(&mut RouteCx<'_, '_>) -> Target) {
        let outcome = self.compile(&view, compile);
        self.attach(view.key, &outcome);
    }

    fn compile(
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
            interned: self.interned,
        };
        let target = compile(&mut cx);
        let found = cx.found;
        let (accepted, status) = attach_route(self.lookup, self.gws, view, &found);
        // Exact sizes: a memo keeps them as long as the route does not change.
        Outcome {
            target,
            services: found.services.into_iter().collect(),
            accepted: accepted.into_boxed_slice(),
            status: status.map(Arc::new),
        }
    }

    /// Adds a route's outcome to the compile's: its attachments, the listeners' attached
    /// routes, the Services each Gateway routes to, its status.
    fn attach(&mut self, key: ObjectKey, outcome: &Outcome) {
        let attached = &mut self.attached;
        add_services(&mut attached.endpoint_sources, &outcome.services);
        for (i, (li, hosts)) in outcome.accepted.iter().enumerate() {
            let listener = &mut self.gws.listeners[*li];
            // Two parentRefs may both select a listener: the route is attached once.
            if !outcome.accepted[..i].iter().any(|(l, _)| l == li) {
                listener.attached_routes += 1;
            }
            let gateway = listener.gateway;
            add_services(
                attached.services_by_gateway.entry(gateway).or_default(),
                &outcome.services,
            );
            match &outcome.target {
                Target::Http(r) => attached.http.push(HttpAttachment {
                    listener: *li,
                    hostnames: hosts.clone(),
                    route: r.clone(),
                }),
                Target::L4(r, order) => attached.l4.push(L4Attachment {
                    listener: *li,
                    hostnames: hosts.clone(),
                    order: order.clone(),
                    rule: r.clone(),
                }),
            }
        }
        if let Some(s) = &outcome.status {
            self.statuses.push((key, ObjectStatus::Route(s.clone())));
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

enum Target {
    Http(Arc<CompiledRoute>),
    L4(Arc<L4Rule>, RouteOrder),
}

/// Which listeners accept a route (with its hostnames on each), and its status.
fn attach_route(
    lookup: &InputLookup<'_>,
    gws: &Gateways<'_>,
    route: &RouteView<'_>,
    found: &Findings,
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
        let mut c = Conditions::default();
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
        if found.kept > 0 && !found.dropped.is_empty() {
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
            parent_ref,
            controller_name: lookup.options.controller_name.clone(),
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
