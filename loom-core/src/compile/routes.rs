//! Routes: attachment to listeners (parentRefs, allowedRoutes, hostnames), backend resolution
//! (ReferenceGrants, Services, Loom Backends, BackendTLSPolicies) and rule compilation.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use super::gateway::Gateways;
use super::policy::TlsPolicies;
use super::{InputLookup, by_age, group_or};
use crate::filter::{self, Cors, HeaderEdits, PathModifier, Redirect, Rewrite};
use crate::input::*;
use crate::route::header::{HeaderMatch, QueryMatch, ValueMatch, parse_method};
use crate::route::host::HostPattern;
use crate::route::path::PathMatch;
use crate::route::{GrpcMatch, HttpMatch, RouteOrder};
use crate::snapshot::*;
use crate::status::*;

/// A compiled HTTPRoute or GRPCRoute.
pub(crate) struct CompiledRoute {
    pub(crate) order: RouteOrder,
    pub(crate) http: Vec<CompiledRule<HttpMatch>>,
    pub(crate) grpc: Vec<CompiledRule<GrpcMatch>>,
}

pub(crate) struct CompiledRule<M> {
    pub(crate) index: usize,
    pub(crate) matches: Vec<M>,
    pub(crate) rule: Arc<HttpRule>,
}

pub(crate) struct HttpAttachment {
    pub(crate) listener: usize,
    pub(crate) hostnames: Vec<Option<HostPattern>>,
    pub(crate) route: Arc<CompiledRoute>,
}

pub(crate) struct L4Attachment {
    pub(crate) listener: usize,
    pub(crate) hostnames: Vec<Option<HostPattern>>,
    pub(crate) order: RouteOrder,
    pub(crate) rule: Arc<L4Rule>,
}

/// Every accepted attachment.
#[derive(Default)]
pub(crate) struct Attached {
    pub(crate) http: Vec<HttpAttachment>,
    pub(crate) l4: Vec<L4Attachment>,
    /// Services each Gateway routes to (BackendTLSPolicy ancestors).
    pub(crate) services_by_gateway: BTreeMap<usize, BTreeSet<(String, String)>>,
}

struct RouteView<'a> {
    key: ObjectKey,
    meta: &'a ObjectMeta,
    parent_refs: &'a [ParentReference],
    hostnames: &'a [String],
}

pub(crate) fn attach_all(
    lookup: &InputLookup<'_>,
    gws: &mut Gateways<'_>,
    policies: &TlsPolicies,
    status: &mut Status,
) -> Attached {
    let input = lookup.input;
    let mut a = Attacher {
        lookup,
        gws,
        policies,
        status,
        attached: Attached::default(),
        interned: HashSet::new(),
    };
    for r in by_age(&input.http_routes, |r| &r.metadata) {
        let v = view(
            Kind::HttpRoute,
            &r.metadata,
            &r.spec.parent_refs,
            &r.spec.hostnames,
        );
        a.route(v, |cx| Target::Http(cx.http_route(r)));
    }
    for r in by_age(&input.grpc_routes, |r| &r.metadata) {
        let v = view(
            Kind::GrpcRoute,
            &r.metadata,
            &r.spec.parent_refs,
            &r.spec.hostnames,
        );
        a.route(v, |cx| Target::Http(cx.grpc_route(r)));
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
        routes.sort_by(|a, b| a.0.age_key().cmp(&b.0.age_key()));
        for (meta, spec) in routes {
            // Only TLSRoute has hostnames (SNI).
            let hostnames: &[String] = if kind == Kind::TlsRoute {
                &spec.hostnames
            } else {
                &[]
            };
            let v = view(kind, meta, &spec.parent_refs, hostnames);
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
                    order_of(meta),
                )
            });
        }
    }
    a.attached
}

/// Compiles routes one at a time and attaches them, collecting the attachments.
struct Attacher<'a, 'w, 'g> {
    lookup: &'a InputLookup<'w>,
    gws: &'a mut Gateways<'g>,
    policies: &'a TlsPolicies,
    status: &'a mut Status,
    attached: Attached,
    interned: HashSet<Arc<BackendTarget>>,
}

impl Attacher<'_, '_, '_> {
    fn route(&mut self, view: RouteView<'_>, compile: impl FnOnce(&mut RouteCx<'_, '_>) -> Target) {
        let mut cx = RouteCx {
            lookup: self.lookup,
            policies: self.policies,
            view: &view,
            found: Findings::default(),
            interned: &mut self.interned,
        };
        let target = compile(&mut cx);
        let found = cx.found;
        attach_route(
            self.lookup,
            self.gws,
            &mut self.attached,
            self.status,
            &view,
            found,
            target,
        );
    }
}

enum Target {
    Http(Arc<CompiledRoute>),
    L4(Arc<L4Rule>, RouteOrder),
}

fn view<'a>(
    kind: Kind,
    meta: &'a ObjectMeta,
    parent_refs: &'a [ParentReference],
    hostnames: &'a [String],
) -> RouteView<'a> {
    RouteView {
        key: ObjectKey {
            kind,
            namespace: meta.namespace_or_default().into(),
            name: meta.name.clone(),
        },
        meta,
        parent_refs,
        hostnames,
    }
}

fn order_of(meta: &ObjectMeta) -> RouteOrder {
    RouteOrder {
        created: Timestamp::parse(meta.creation_timestamp.as_deref()),
        namespace: meta.namespace_or_default().into(),
        name: meta.name.clone(),
        rule: 0,
        match_index: 0,
    }
}

fn attach_route(
    lookup: &InputLookup<'_>,
    gws: &mut Gateways<'_>,
    attached: &mut Attached,
    status: &mut Status,
    route: &RouteView<'_>,
    found: Findings,
    target: Target,
) {
    let g = route.meta.generation();
    let ns = route.key.namespace.as_str();
    let mut hostnames = vec![];
    let mut bad_hostname = None;
    for h in route.hostnames {
        match HostPattern::parse(h) {
            Ok(p) => hostnames.push(p),
            Err(e) => bad_hostname = Some(format!("hostname {h:?}: {e}")),
        }
    }
    let mut parents = vec![];
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
        let result = if let Some(m) = &bad_hostname {
            Err((Reason::UnsupportedValue, m.clone()))
        } else if found.kept == 0 && !found.dropped.is_empty() {
            // Spec (PartiallyInvalid): with every rule dropped, the route is not accepted.
            Err((
                Reason::UnsupportedValue,
                format!("{}; no valid rule is left", found.dropped.join("; ")),
            ))
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
                for (li, hosts) in accepted {
                    gws.listeners[li].attached.insert(route.key.clone());
                    let gateway = gws.listeners[li].gateway;
                    attached
                        .services_by_gateway
                        .entry(gateway)
                        .or_default()
                        .extend(found.services.iter().cloned());
                    match &target {
                        Target::Http(r) => attached.http.push(HttpAttachment {
                            listener: li,
                            hostnames: hosts,
                            route: r.clone(),
                        }),
                        Target::L4(r, order) => attached.l4.push(L4Attachment {
                            listener: li,
                            hostnames: hosts,
                            order: order.clone(),
                            rule: r.clone(),
                        }),
                    }
                }
            }
            Err((reason, m)) => c.set(Condition::new(ConditionType::Accepted, false, reason, m, g)),
        }
        c.set(match found.refs.first() {
            None => Condition::new(
                ConditionType::ResolvedRefs,
                true,
                Reason::ResolvedRefs,
                "all references resolved",
                g,
            ),
            Some((r, m)) => Condition::new(ConditionType::ResolvedRefs, false, *r, m.clone(), g),
        });
        if found.kept > 0 && !found.dropped.is_empty() {
            // Spec: "The message for this condition MUST start with the prefix "Dropped Rule"".
            let m = found.dropped.join("; ");
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
    if !parents.is_empty() {
        status.objects.insert(
            route.key.clone(),
            ObjectStatus::Route(RouteStatus { parents }),
        );
    }
}

type Selected = Vec<(usize, Vec<Option<HostPattern>>)>;

/// Which listeners of a parent accept the route, with the effective hostnames on each.
fn select_listeners(
    lookup: &InputLookup<'_>,
    gws: &Gateways<'_>,
    route: &RouteView<'_>,
    p: &ParentReference,
    listeners: &[usize],
    hostnames: &[HostPattern],
) -> Result<Selected, (Reason, String)> {
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
        let what = match (&p.section_name, p.port) {
            (Some(s), _) => format!("no listener named {s:?}"),
            (None, Some(port)) => format!("no listener on port {port}"),
            _ => "the parent has no listeners".into(),
        };
        return Err((Reason::NoMatchingParent, what));
    }
    let mut accepted = vec![];
    let mut hostname_mismatch = false;
    for l in candidates {
        let ir = &gws.listeners[l];
        if !ir.is_accepted()
            || !ir.kinds.contains(&route.key.kind)
            || !ir.allows_namespace(lookup, &route.key.namespace)
        {
            continue;
        }
        let hosts: Vec<Option<HostPattern>> = if hostnames.is_empty() {
            vec![ir.hostname.clone()]
        } else {
            let mut v: Vec<_> = hostnames
                .iter()
                .filter_map(|h| HostPattern::intersect(ir.hostname.as_ref(), h))
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
        accepted.push((l, hosts));
    }
    if !accepted.is_empty() {
        Ok(accepted)
    } else if hostname_mismatch {
        Err((
            Reason::NoMatchingListenerHostname,
            "no listener hostname intersects the route's hostnames".into(),
        ))
    } else {
        Err((
            Reason::NotAllowedByListeners,
            format!(
                "no listener admits {} from namespace {}",
                route.key.kind, route.key.namespace
            ),
        ))
    }
}

/// What compiling one route found.
#[derive(Default)]
struct Findings {
    /// Unresolvable references, in order: `ResolvedRefs=False` with the first reason.
    refs: Vec<(Reason, String)>,
    /// Rules dropped for invalid values (`Dropped Rule N: ...`).
    dropped: Vec<String>,
    /// Rules kept.
    kept: usize,
    /// Services the route refers to (BackendTLSPolicy ancestors).
    services: BTreeSet<(String, String)>,
}

/// Compiles one route's rules and resolves its references, collecting [`Findings`].
struct RouteCx<'c, 'w> {
    lookup: &'c InputLookup<'w>,
    policies: &'c TlsPolicies,
    view: &'c RouteView<'c>,
    found: Findings,
    /// Every distinct backend resolved so far: routes that name the same Service port share
    /// one `BackendTarget` (and one endpoint list) in the snapshot.
    interned: &'c mut HashSet<Arc<BackendTarget>>,
}

/// Why a rule cannot be used at all (it is dropped and reported).
type Dropped = String;

impl RouteCx<'_, '_> {
    fn http_route(&mut self, r: &HttpRoute) -> Arc<CompiledRoute> {
        // The API server defaults `rules` to one rule matching `PathPrefix /`.
        let default_rule = [HttpRouteRule::default()];
        let rules: &[HttpRouteRule] = if r.spec.rules.is_empty() {
            &default_rule
        } else {
            &r.spec.rules
        };
        let mut http = vec![];
        for (index, rule) in rules.iter().enumerate() {
            let compiled = compile_http_matches(&rule.matches).and_then(|matches| {
                let mut compiled =
                    self.rule(index, rule.name.clone(), &rule.filters, &rule.backend_refs)?;
                if let Some(t) = &rule.timeouts {
                    let ms = |s: &Option<String>| {
                        s.as_deref()
                            .and_then(filter::parse_duration_ms)
                            .filter(|&ms| ms > 0)
                    };
                    compiled.timeouts = Timeouts {
                        request_ms: ms(&t.request),
                        backend_request_ms: ms(&t.backend_request),
                    };
                }
                if let Some(retry) = &rule.retry {
                    compiled.retry = Some(Retry {
                        codes: retry
                            .codes
                            .iter()
                            .filter_map(|c| u16::try_from(*c).ok())
                            .collect(),
                        attempts: u32::try_from(retry.attempts.unwrap_or(1)).unwrap_or(0),
                        backoff_ms: retry.backoff.as_deref().and_then(filter::parse_duration_ms),
                    });
                }
                Ok(CompiledRule {
                    index,
                    matches,
                    rule: Arc::new(compiled),
                })
            });
            match compiled {
                Ok(c) => http.push(c),
                Err(why) => self
                    .found
                    .dropped
                    .push(format!("Dropped Rule {index}: {why}")),
            }
        }
        self.found.kept = http.len();
        Arc::new(CompiledRoute {
            order: order_of(self.view.meta),
            http,
            grpc: vec![],
        })
    }

    fn grpc_route(&mut self, r: &GrpcRoute) -> Arc<CompiledRoute> {
        let default_rule = [GrpcRouteRule::default()];
        let rules: &[GrpcRouteRule] = if r.spec.rules.is_empty() {
            &default_rule
        } else {
            &r.spec.rules
        };
        let mut grpc = vec![];
        for (index, rule) in rules.iter().enumerate() {
            let compiled = compile_grpc_matches(&rule.matches).and_then(|matches| {
                let compiled =
                    self.rule(index, rule.name.clone(), &rule.filters, &rule.backend_refs)?;
                Ok(CompiledRule {
                    index,
                    matches,
                    rule: Arc::new(compiled),
                })
            });
            match compiled {
                Ok(c) => grpc.push(c),
                Err(why) => self
                    .found
                    .dropped
                    .push(format!("Dropped Rule {index}: {why}")),
            }
        }
        self.found.kept = grpc.len();
        Arc::new(CompiledRoute {
            order: order_of(self.view.meta),
            http: vec![],
            grpc,
        })
    }

    fn rule(
        &mut self,
        index: usize,
        name: Option<String>,
        filters: &[HttpRouteFilter],
        backend_refs: &[HttpBackendRef],
    ) -> Result<HttpRule, Dropped> {
        let (rule_filters, invalid) = self.filters(filters)?;
        let mut backends = vec![];
        for b in backend_refs {
            let (f, backend_invalid) = self.filters(&b.filters)?;
            let mut w = self.weighted(&b.backend_ref, None, f);
            if let Some(why) = backend_invalid {
                w.target = Err(why);
            }
            backends.push(w);
        }
        Ok(HttpRule {
            route: self.view.key.clone(),
            rule_index: index,
            rule_name: name,
            filters: rule_filters,
            backends,
            invalid,
            timeouts: Timeouts::default(),
            retry: None,
        })
    }

    /// Resolves one backendRef; a failure is recorded and gives 500 for its share of traffic.
    fn weighted(
        &mut self,
        b: &BackendRef,
        l4: Option<AppProtocol>,
        filters: Filters,
    ) -> WeightedBackend {
        let target = self.backend(b, l4);
        WeightedBackend {
            weight: u32::try_from(b.weight.unwrap_or(1)).unwrap_or(0),
            target,
            filters,
        }
    }

    fn backend(
        &mut self,
        b: &BackendRef,
        l4: Option<AppProtocol>,
    ) -> Result<Arc<BackendTarget>, String> {
        match resolve_backend(
            self.lookup,
            self.policies,
            self.view,
            b,
            l4,
            &mut self.found.services,
        ) {
            Ok(target) => Ok(match self.interned.get(&target) {
                Some(shared) => shared.clone(),
                None => {
                    self.interned.insert(target.clone());
                    target
                }
            }),
            Err((reason, m)) => {
                self.found.refs.push((reason, m.clone()));
                Err(m)
            }
        }
    }

    /// Compiles filters. `Err` drops the rule (an invalid value); `Ok((_, Some(why)))` keeps the
    /// rule but answers 500 (an ExtensionRef Loom cannot resolve: "the filter MUST NOT be
    /// skipped").
    fn filters(
        &mut self,
        filters: &[HttpRouteFilter],
    ) -> Result<(Filters, Option<String>), Dropped> {
        let mut out = Filters::default();
        let mut invalid = None;
        for f in filters {
            let missing = || {
                format!(
                    "{} filter without its {} field",
                    f.type_,
                    lower_first(&f.type_)
                )
            };
            match f.type_.as_str() {
                "RequestHeaderModifier" => {
                    out.request_headers = Some(header_edits(
                        f.request_header_modifier.as_ref().ok_or_else(missing)?,
                    )?);
                }
                "ResponseHeaderModifier" => {
                    out.response_headers = Some(header_edits(
                        f.response_header_modifier.as_ref().ok_or_else(missing)?,
                    )?);
                }
                "RequestRedirect" => {
                    let r = f.request_redirect.as_ref().ok_or_else(missing)?;
                    let status = r.status_code.map_or(Ok(302), |s| match s {
                        301 | 302 | 303 | 307 | 308 => Ok(s as u16),
                        other => Err(format!("redirect status {other} is not supported")),
                    })?;
                    let scheme = match r.scheme.as_deref() {
                        None | Some("http" | "https") => r.scheme.clone(),
                        Some(other) => {
                            return Err(format!("redirect scheme {other:?} is not supported"));
                        }
                    };
                    out.redirect = Some(Redirect {
                        scheme,
                        hostname: r.hostname.clone(),
                        path: r.path.as_ref().map(path_modifier).transpose()?,
                        port: r
                            .port
                            .map(|p| {
                                u16::try_from(p)
                                    .map_err(|_| format!("redirect port {p} is out of range"))
                            })
                            .transpose()?,
                        status,
                    });
                }
                "URLRewrite" => {
                    let r = f.url_rewrite.as_ref().ok_or_else(missing)?;
                    let hostname = r
                        .hostname
                        .as_deref()
                        .map(|h| {
                            HeaderValue::from_str(h)
                                .map_err(|_| format!("invalid rewrite hostname {h:?}"))
                        })
                        .transpose()?;
                    out.rewrite = Some(Rewrite {
                        hostname,
                        path: r.path.as_ref().map(path_modifier).transpose()?,
                    });
                }
                "RequestMirror" => {
                    let m = f.request_mirror.as_ref().ok_or_else(missing)?;
                    let (numerator, denominator) = match (&m.percent, &m.fraction) {
                        (Some(p), _) => (u32::try_from(*p).unwrap_or(0), 100),
                        (None, Some(fr)) => (
                            u32::try_from(fr.numerator).unwrap_or(0),
                            u32::try_from(fr.denominator.unwrap_or(100)).unwrap_or(100),
                        ),
                        (None, None) => (1, 1),
                    };
                    // An unresolvable mirror is reported (ResolvedRefs) and not mirrored to.
                    if let Ok(backend) = self.backend(&m.backend_ref, None) {
                        out.mirrors.push(Mirror {
                            backend,
                            numerator,
                            denominator,
                        });
                    }
                }
                "CORS" => {
                    let c = f.cors.as_ref().ok_or_else(missing)?;
                    out.cors = Some(Cors {
                        allow_origins: c.allow_origins.clone(),
                        allow_credentials: c.allow_credentials.unwrap_or(false),
                        allow_methods: c.allow_methods.clone(),
                        allow_headers: c.allow_headers.clone(),
                        expose_headers: c.expose_headers.clone(),
                        max_age: c.max_age.unwrap_or(5),
                    });
                }
                "ExtensionRef" => {
                    let e = f.extension_ref.as_ref();
                    let m = format!(
                        "ExtensionRef {} is not supported; matching requests get 500",
                        e.map_or_else(
                            || "(empty)".to_owned(),
                            |e| format!("{}/{} {}", e.group, e.kind, e.name)
                        )
                    );
                    self.found.refs.push((Reason::InvalidKind, m.clone()));
                    invalid.get_or_insert(m);
                }
                other => return Err(format!("filter type {other:?} is not supported")),
            }
        }
        Ok((out, invalid))
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_lowercase().chain(c).collect())
        .unwrap_or_default()
}

fn resolve_backend(
    lookup: &InputLookup<'_>,
    policies: &TlsPolicies,
    route: &RouteView<'_>,
    b: &BackendRef,
    l4: Option<AppProtocol>,
    services: &mut BTreeSet<(String, String)>,
) -> Result<Arc<BackendTarget>, (Reason, String)> {
    let group = group_or(&b.group, "");
    let kind = b.kind.as_deref().unwrap_or("Service");
    let ns = b.namespace.as_deref().unwrap_or(&route.key.namespace);
    let is_service = group.is_empty() && kind == "Service";
    let is_backend = group == LOOM_GROUP && kind == "Backend";
    if !is_service && !is_backend {
        return Err((
            Reason::InvalidKind,
            format!("backendRef kind {group}/{kind} is not supported"),
        ));
    }
    let from = (
        GATEWAY_GROUP,
        route.key.kind.as_str(),
        route.key.namespace.as_str(),
    );
    if !lookup.grant_allows(from, (group, kind, ns, &b.name)) {
        return Err((
            Reason::RefNotPermitted,
            format!("no ReferenceGrant allows {kind} {ns}/{}", b.name),
        ));
    }
    if is_backend {
        let Some(be) = lookup.backend(ns, &b.name) else {
            return Err((
                Reason::BackendNotFound,
                format!("Backend {ns}/{} not found", b.name),
            ));
        };
        let protocol = match (l4, be.spec.protocol.as_deref()) {
            (Some(p), _) => p,
            (None, Some("h2c")) => AppProtocol::H2c,
            (None, Some("ws")) => AppProtocol::WebSocket,
            _ => AppProtocol::Http,
        };
        return Ok(Arc::new(BackendTarget {
            object: ObjectKey {
                kind: Kind::Backend,
                namespace: ns.into(),
                name: b.name.clone(),
            },
            port: None,
            protocol,
            endpoints: be.spec.endpoints.clone(),
            tls: None,
        }));
    }
    let Some(svc) = lookup.service(ns, &b.name) else {
        return Err((
            Reason::BackendNotFound,
            format!("Service {ns}/{} not found", b.name),
        ));
    };
    let Some(port) = b.port else {
        return Err((
            Reason::UnsupportedValue,
            format!("backendRef to Service {ns}/{} needs a port", b.name),
        ));
    };
    let Some(sp) = svc.spec.ports.iter().find(|p| p.port == port) else {
        return Err((
            Reason::BackendNotFound,
            format!("Service {ns}/{} has no port {port}", b.name),
        ));
    };
    services.insert((ns.into(), b.name.clone()));
    let protocol = l4.unwrap_or(match sp.app_protocol.as_deref() {
        Some("kubernetes.io/h2c") => AppProtocol::H2c,
        Some("kubernetes.io/ws") => AppProtocol::WebSocket,
        _ => AppProtocol::Http,
    });
    let mut endpoints = vec![];
    for slice in lookup.endpoint_slices(ns, &b.name) {
        let Some(ep_port) = slice
            .ports
            .iter()
            .find(|p| p.name == sp.name || (slice.ports.len() == 1 && sp.name.is_none()))
        else {
            continue;
        };
        let Some(ep_port) = ep_port.port else {
            continue;
        };
        for ep in &slice.endpoints {
            if ep.conditions.ready == Some(false) {
                continue;
            }
            for a in &ep.addresses {
                endpoints.push(if a.contains(':') {
                    format!("[{a}]:{ep_port}")
                } else {
                    format!("{a}:{ep_port}")
                });
            }
        }
    }
    endpoints.sort();
    endpoints.dedup();
    let tls = policies.for_service(ns, &b.name, sp.name.as_deref());
    Ok(Arc::new(BackendTarget {
        object: ObjectKey {
            kind: Kind::Service,
            namespace: ns.into(),
            name: b.name.clone(),
        },
        port: u16::try_from(port).ok(),
        protocol,
        endpoints,
        tls,
    }))
}

fn compile_http_matches(matches: &[HttpRouteMatch]) -> Result<Vec<HttpMatch>, String> {
    if matches.is_empty() {
        return Ok(vec![HttpMatch {
            path: PathMatch::Prefix("/".into()),
            method: None,
            headers: vec![],
            query: vec![],
        }]);
    }
    matches
        .iter()
        .map(|m| {
            let path = match &m.path {
                Some(p) => PathMatch::parse(p.type_.as_deref(), p.value.as_deref())
                    .map_err(|e| e.to_string())?,
                None => PathMatch::Prefix("/".into()),
            };
            let mut headers: Vec<HeaderMatch> = vec![];
            for h in &m.headers {
                let hm = HeaderMatch::parse(h.type_.as_deref(), &h.name, &h.value)
                    .map_err(|e| e.to_string())?;
                // Spec: "only the first entry with an equivalent name MUST be considered".
                if !headers.iter().any(|x| x.name == hm.name) {
                    headers.push(hm);
                }
            }
            let mut query: Vec<QueryMatch> = vec![];
            for q in &m.query_params {
                if !query.iter().any(|x| x.name == q.name) {
                    query.push(QueryMatch {
                        name: q.name.clone(),
                        value: ValueMatch::parse(q.type_.as_deref(), &q.value)
                            .map_err(|e| e.to_string())?,
                    });
                }
            }
            let method = m
                .method
                .as_deref()
                .map(parse_method)
                .transpose()
                .map_err(|e| e.to_string())?;
            Ok(HttpMatch {
                path,
                method,
                headers,
                query,
            })
        })
        .collect()
}

fn compile_grpc_matches(matches: &[GrpcRouteMatch]) -> Result<Vec<GrpcMatch>, String> {
    if matches.is_empty() {
        return Ok(vec![GrpcMatch {
            service: None,
            method: None,
            headers: vec![],
        }]);
    }
    matches
        .iter()
        .map(|m| {
            let (service, method) = match &m.method {
                None => (None, None),
                Some(mm) => {
                    let t = mm.type_.as_deref();
                    let parse = |v: &Option<String>| {
                        v.as_deref()
                            .map(|v| ValueMatch::parse(t, v))
                            .transpose()
                            .map_err(|e| e.to_string())
                    };
                    (parse(&mm.service)?, parse(&mm.method)?)
                }
            };
            let headers = m
                .headers
                .iter()
                .map(|h| {
                    HeaderMatch::parse(h.type_.as_deref(), &h.name, &h.value)
                        .map_err(|e| e.to_string())
                })
                .collect::<Result<_, _>>()?;
            Ok(GrpcMatch {
                service,
                method,
                headers,
            })
        })
        .collect()
}

fn header_edits(m: &HeaderModifier) -> Result<HeaderEdits, String> {
    let pair = |h: &HttpHeader| -> Result<(HeaderName, HeaderValue), String> {
        Ok((
            HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| format!("invalid header name {:?}", h.name))?,
            HeaderValue::from_str(&h.value)
                .map_err(|_| format!("invalid header value {:?}", h.value))?,
        ))
    };
    Ok(HeaderEdits {
        set: m.set.iter().map(pair).collect::<Result<_, _>>()?,
        add: m.add.iter().map(pair).collect::<Result<_, _>>()?,
        remove: m
            .remove
            .iter()
            .map(|n| {
                HeaderName::from_bytes(n.as_bytes())
                    .map_err(|_| format!("invalid header name {n:?}"))
            })
            .collect::<Result<_, _>>()?,
    })
}

fn path_modifier(p: &HttpPathModifier) -> Result<PathModifier, String> {
    match p.type_.as_str() {
        "ReplaceFullPath" => Ok(PathModifier::Full(
            p.replace_full_path.clone().unwrap_or_else(|| "/".into()),
        )),
        "ReplacePrefixMatch" => Ok(PathModifier::Prefix(
            p.replace_prefix_match.clone().unwrap_or_else(|| "/".into()),
        )),
        t => Err(format!("unsupported path modifier {t:?}")),
    }
}
