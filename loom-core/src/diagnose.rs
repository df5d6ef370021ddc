//! What status cannot say: references to parents that do not exist (with the closest match and
//! the fix), and why an object has no status at all. `loom check` prints these under each
//! object, and `loom serve` logs the warnings.
//!
//! Status is for the parents a controller manages (`status.parents` of a route names Loom's
//! Gateways only), so a route whose `parentRefs` name a Gateway that is not there gets no status
//! from anyone; these diagnostics are where that is explained. Pure over the [`Input`], like
//! [`compile`](crate::compile): the caller maps an object and field to a file and line.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use crate::compile::Options;
use crate::compile::lookup::{InputLookup, group_or, live};
use crate::compile::model::Protocol;
use crate::input::*;

/// How much a diagnostic matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Severity {
    /// Most likely a mistake: a reference to nothing.
    Warning,
    /// Worth knowing: a reference to something Loom does not serve.
    Note,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Note => "note",
        })
    }
}

/// One finding about one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The object it is about.
    pub object: ObjectKey,
    /// The field it is about, as a dotted path with list indexes (`spec.parentRefs[0]`), for
    /// the caller to find its line; `None` for the object as a whole.
    pub field: Option<String>,
    /// How much it matters.
    pub severity: Severity,
    /// A sentence, starting with the field as the user wrote it (`parentRefs[0] names …`).
    pub message: String,
}

/// Every diagnostic of the input, object by object (in [`ObjectKey`] order), each object's in
/// field order.
pub fn diagnose(input: &Input, options: &Options) -> Vec<Diagnostic> {
    Diagnosis::new(input, options).diagnostics()
}

/// The input, indexed for diagnostics and for saying why an object has no status.
pub struct Diagnosis<'a> {
    lookup: InputLookup<'a>,
    /// Routes by the Services and Backends their backendRefs (and mirrors) name.
    backend_of: BTreeMap<ObjectKey, BTreeSet<ObjectKey>>,
    /// GatewayClasses and Gateways by the GatewayClassConfig their parameters name.
    parameters_of: BTreeMap<ObjectKey, BTreeSet<ObjectKey>>,
    /// The Secrets and ConfigMaps something refers to.
    referenced: BTreeSet<ObjectKey>,
}

/// A route of any kind, as diagnostics see it.
struct RouteRefs<'a> {
    key: ObjectKey,
    parent_refs: &'a [ParentReference],
}

impl<'a> Diagnosis<'a> {
    /// Indexes the input.
    pub fn new(input: &'a Input, options: &'a Options) -> Self {
        let mut d = Diagnosis {
            lookup: InputLookup::new(input, options),
            backend_of: BTreeMap::new(),
            parameters_of: BTreeMap::new(),
            referenced: input.referenced_secrets_and_config_maps(),
        };
        d.index_backends();
        d.index_parameters();
        d
    }

    fn input(&self) -> &'a Input {
        self.lookup.input
    }

    /// Every diagnostic, object by object.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        let mut out = vec![];
        for g in live(&self.input().gateways, |g| &g.metadata) {
            self.gateway_class(g, &mut out);
        }
        for s in live(&self.input().listener_sets, |s| &s.metadata) {
            self.listener_set_parent(s, &mut out);
        }
        for r in self.routes() {
            self.route_parents(&r, &mut out);
        }
        out.sort_by(|a, b| a.object.cmp(&b.object));
        out
    }

    /// Why an object has no status: Loom writes status for its GatewayClasses, their Gateways
    /// and ListenerSets, the routes attached to those, and the policies; everything else is
    /// explained here in a sentence.
    pub fn why_no_status(&self, key: &ObjectKey) -> String {
        let Some(object) = self.input().get(key) else {
            return "not in the input".into();
        };
        let loom = &self.lookup.options.controller_name;
        match &object {
            Object::GatewayClass(c) if &c.spec.controller_name != loom => format!(
                "its controllerName {} is not Loom's ({loom}): Loom leaves this class to its \
                 controller",
                c.spec.controller_name
            ),
            Object::Gateway(g) => self.not_served_because(g),
            Object::ListenerSet(s) => {
                let ns = s.metadata.namespace_or_default();
                let p = &s.spec.parent_ref;
                let parent_ns = p.namespace.as_deref().unwrap_or(ns);
                match self.gateway(parent_ns, &p.name) {
                    Some(g) => format!(
                        "its parent Gateway {parent_ns}/{} is not one Loom serves: {}",
                        p.name,
                        self.not_served_because(g)
                    ),
                    None => format!(
                        "its parent Gateway {parent_ns}/{} is not in the input (see below)",
                        p.name
                    ),
                }
            }
            o if o.parent_refs().is_some_and(<[_]>::is_empty) => {
                "it has no parentRefs, so it is attached to no Gateway".into()
            }
            o if o.kind().is_route() => {
                "attached to no Gateway or ListenerSet Loom serves (see below)".into()
            }
            Object::ReferenceGrant(g) => {
                let from: Vec<String> = g
                    .spec
                    .from
                    .iter()
                    .map(|f| format!("{}s in namespace {}", f.kind, f.namespace))
                    .collect();
                let to: Vec<String> = g
                    .spec
                    .to
                    .iter()
                    .map(|t| match &t.name {
                        Some(n) => format!("{} {n}", t.kind),
                        None => format!("any {}", t.kind),
                    })
                    .collect();
                format!(
                    "ReferenceGrants have no status; this one lets {} refer to {} in namespace {}",
                    or_nothing(&from),
                    or_nothing(&to),
                    key.namespace
                )
            }
            Object::Service(_) | Object::Backend(_) => {
                let what = if key.kind == Kind::Service {
                    "Loom reads Services as backends and writes no status for them"
                } else {
                    "Backends have no status"
                };
                match self.backend_of.get(key) {
                    Some(routes) => format!("{what}; this one is a backend of {}", list(routes)),
                    None => format!("{what}; no route in the input refers to this one"),
                }
            }
            Object::EndpointSlice(s) => match s.metadata.labels.get("kubernetes.io/service-name") {
                Some(svc) => format!(
                    "endpoints of Service {}/{svc} (its kubernetes.io/service-name label); Loom \
                     writes no status for EndpointSlices",
                    key.namespace
                ),
                None => "it has no kubernetes.io/service-name label, so it belongs to no \
                         Service and Loom does not use it"
                    .into(),
            },
            Object::Secret(_) | Object::ConfigMap(_) => {
                let what = if key.kind == Kind::Secret {
                    "Loom reads Secrets as certificates and keys"
                } else {
                    "Loom reads ConfigMaps as CA bundles"
                };
                if self.referenced.contains(key) {
                    format!(
                        "{what} and writes no status for them; a Gateway, ListenerSet or \
                         BackendTLSPolicy in the input refers to this one"
                    )
                } else {
                    format!(
                        "{what} and writes no status for them; nothing in the input refers to \
                         this one"
                    )
                }
            }
            Object::Namespace(_) => "Loom reads a Namespace's labels (for allowedRoutes and \
                                     allowedListeners selectors) and writes no status for it"
                .into(),
            Object::GatewayClassConfig(_) => match self.parameters_of.get(key) {
                Some(users) => format!(
                    "GatewayClassConfigs have no status (the status of what uses them says \
                     whether they resolve); this one configures {}",
                    list(users)
                ),
                None => "GatewayClassConfigs have no status; no GatewayClass or Gateway in the \
                         input uses this one"
                    .into(),
            },
            _ => "Loom wrote no status for it".into(),
        }
    }

    /// Why Loom does not serve a Gateway (its class is missing or another controller's).
    fn not_served_because(&self, g: &Gateway) -> String {
        let class = &g.spec.gateway_class_name;
        let loom = &self.lookup.options.controller_name;
        match self.class(class) {
            None => format!(
                "its GatewayClass {class} is not in the input; Loom serves the Gateways of \
                 GatewayClasses with controllerName {loom}"
            ),
            Some(c) if &c.spec.controller_name != loom => format!(
                "its GatewayClass {class} belongs to controller {}, not Loom ({loom})",
                c.spec.controller_name
            ),
            Some(_) => "Loom wrote no status for it".into(),
        }
    }

    fn gateway_class(&self, g: &Gateway, out: &mut Vec<Diagnostic>) {
        let class = &g.spec.gateway_class_name;
        if self.class(class).is_some() {
            return;
        }
        let names: Vec<&str> = live(&self.input().gateway_classes, |c| &c.metadata)
            .map(|c| c.metadata.name.as_str())
            .collect();
        let hint = match closest(class, names.iter().copied()) {
            Some(n) => format!("; did you mean {n}?"),
            None if names.is_empty() => "; the input has no GatewayClass".into(),
            None => format!("; the GatewayClasses in the input are {}", list(&names)),
        };
        out.push(Diagnostic {
            object: ObjectKey::of(Kind::Gateway, &g.metadata),
            field: Some("spec.gatewayClassName".into()),
            severity: Severity::Warning,
            message: format!("gatewayClassName {class} names no GatewayClass in the input{hint}"),
        });
    }

    fn listener_set_parent(&self, s: &ListenerSet, out: &mut Vec<Diagnostic>) {
        let ns = s.metadata.namespace_or_default();
        let p = &s.spec.parent_ref;
        let object = ObjectKey::of(Kind::ListenerSet, &s.metadata);
        let mut diagnostic = |severity, message| {
            out.push(Diagnostic {
                object: object.clone(),
                field: Some("spec.parentRef".into()),
                severity,
                message,
            })
        };
        let group = group_or(&p.group, GATEWAY_GROUP);
        let kind = p.kind.as_deref().unwrap_or("Gateway");
        let parent_ns = p.namespace.as_deref().unwrap_or(ns);
        if (group, kind) != (GATEWAY_GROUP, "Gateway") {
            diagnostic(
                Severity::Warning,
                format!(
                    "parentRef names {kind} {parent_ns}/{} ({group}); a ListenerSet's parent is \
                     a Gateway",
                    p.name
                ),
            );
            return;
        }
        if self.gateway(parent_ns, &p.name).is_some() {
            return;
        }
        let mut message = format!(
            "parentRef names Gateway {parent_ns}/{}, which does not exist",
            p.name
        );
        match self.closest_gateway(parent_ns, &p.name) {
            Some(g) => {
                let g_ns = g.metadata.namespace_or_default();
                message.push_str(&format!("; did you mean {g_ns}/{}? ", g.metadata.name));
                let mut fixes = ref_fixes(p, parent_ns, &p.name, g_ns, &g.metadata.name, None);
                let from = g
                    .spec
                    .allowed_listeners
                    .as_ref()
                    .and_then(|a| a.namespaces.as_ref());
                if !NamespacesFrom::admits(from, "None", g_ns, ns, || {
                    self.lookup.namespace_labels(ns)
                }) {
                    fixes.push(format!(
                        "allow ListenerSets from namespace \"{ns}\" on the Gateway \
                         (spec.allowedListeners.namespaces.from: All or Selector)"
                    ));
                }
                message.push_str(&fixes.join(", and "));
            }
            None => message.push_str(&self.existing(Kind::Gateway)),
        }
        diagnostic(Severity::Warning, message);
    }

    fn route_parents(&self, r: &RouteRefs<'_>, out: &mut Vec<Diagnostic>) {
        let ns = r.key.namespace.as_str();
        if r.parent_refs.is_empty() {
            out.push(Diagnostic {
                object: r.key.clone(),
                field: None,
                severity: Severity::Warning,
                message: "has no parentRefs, so it is attached to no Gateway".into(),
            });
        }
        for (i, p) in r.parent_refs.iter().enumerate() {
            let group = group_or(&p.group, GATEWAY_GROUP);
            let kind = p.kind.as_deref().unwrap_or("Gateway");
            let parent_ns = p.namespace.as_deref().unwrap_or(ns);
            let at = format!("parentRefs[{i}]");
            let mut diagnostic = |severity, message: String| {
                out.push(Diagnostic {
                    object: r.key.clone(),
                    field: Some(format!("spec.{at}")),
                    severity,
                    message: format!("{at} {message}"),
                })
            };
            let parent_kind = match (group, kind) {
                (GATEWAY_GROUP, "Gateway") => Kind::Gateway,
                (GATEWAY_GROUP, "ListenerSet") => Kind::ListenerSet,
                _ => {
                    diagnostic(
                        Severity::Note,
                        format!(
                            "names {kind} {parent_ns}/{} ({}): Loom attaches routes to Gateways \
                             and ListenerSets only",
                            p.name,
                            if group.is_empty() { "core" } else { group }
                        ),
                    );
                    continue;
                }
            };
            let served = match parent_kind {
                Kind::Gateway => self
                    .gateway(parent_ns, &p.name)
                    .map(|g| (self.serves(g), self.not_served_because(g))),
                _ => self.listener_set(parent_ns, &p.name).map(|s| {
                    let s_ns = s.metadata.namespace_or_default();
                    let gp = &s.spec.parent_ref;
                    let g_ns = gp.namespace.as_deref().unwrap_or(s_ns);
                    match self.gateway(g_ns, &gp.name) {
                        Some(g) => (self.serves(g), self.not_served_because(g)),
                        None => (
                            false,
                            format!("its Gateway {g_ns}/{} is not in the input", gp.name),
                        ),
                    }
                }),
            };
            match served {
                Some((true, _)) => {}
                Some((false, why)) => diagnostic(
                    Severity::Note,
                    format!(
                        "names {parent_kind} {parent_ns}/{}, which Loom does not serve: {why}",
                        p.name
                    ),
                ),
                None => diagnostic(
                    Severity::Warning,
                    self.dangling(&r.key, p, parent_kind, parent_ns),
                ),
            }
        }
    }

    /// The message for a parentRef to a Gateway or ListenerSet that is not in the input: what
    /// it names, the closest match, and how to reach it.
    fn dangling(
        &self,
        route: &ObjectKey,
        p: &ParentReference,
        kind: Kind,
        parent_ns: &str,
    ) -> String {
        let mut message = format!("names {kind} {parent_ns}/{}, which does not exist", p.name);
        // The closest parent of the kind named; else one of the other kind by that very name.
        let found: Option<(Kind, &ObjectMeta, &[Listener])> = match kind {
            Kind::Gateway => self
                .closest_gateway(parent_ns, &p.name)
                .map(|g| (Kind::Gateway, &g.metadata, g.spec.listeners.as_slice())),
            _ => self
                .closest_listener_set(parent_ns, &p.name)
                .map(|s| (Kind::ListenerSet, &s.metadata, s.spec.listeners.as_slice())),
        }
        .or_else(|| match kind {
            Kind::Gateway => self
                .same_name(&self.input().listener_sets, parent_ns, &p.name, |s| {
                    &s.metadata
                })
                .map(|s| (Kind::ListenerSet, &s.metadata, s.spec.listeners.as_slice())),
            _ => self
                .same_name(&self.input().gateways, parent_ns, &p.name, |g| &g.metadata)
                .map(|g| (Kind::Gateway, &g.metadata, g.spec.listeners.as_slice())),
        });
        let Some((found_kind, meta, listeners)) = found else {
            message.push_str(&self.existing(kind));
            return message;
        };
        let f_ns = meta.namespace_or_default();
        let shown_kind = if found_kind == kind {
            String::new()
        } else {
            format!("{found_kind} ")
        };
        message.push_str(&format!(
            "; did you mean {shown_kind}{f_ns}/{}? ",
            meta.name
        ));
        let kind_fix = (found_kind != kind).then_some(found_kind);
        let mut fixes = ref_fixes(p, parent_ns, &p.name, f_ns, &meta.name, kind_fix);
        // The listeners the parentRef would select that take this kind of route.
        let selected: Vec<&Listener> = listeners
            .iter()
            .filter(|l| p.section_name.as_ref().is_none_or(|s| &l.name == s))
            .filter(|l| p.port.is_none_or(|port| l.port == port))
            .collect();
        let taking: Vec<&Listener> = selected
            .iter()
            .copied()
            .filter(|l| route_kinds(l).contains(&route.kind))
            .collect();
        let mut note = String::new();
        if taking.is_empty() {
            let which = match (&p.section_name, p.port) {
                (Some(s), _) if selected.is_empty() => format!("it has no listener named {s}"),
                (None, Some(port)) if selected.is_empty() => {
                    format!("it has no listener on port {port}")
                }
                _ => format!(
                    "none of its listeners takes {}s ({})",
                    route.kind,
                    listeners
                        .iter()
                        .map(|l| format!("{} is {}", l.name, l.protocol))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            note = format!("; note that {which}");
        } else {
            let route_ns = route.namespace.as_str();
            let admits = |l: &&Listener| {
                NamespacesFrom::admits(
                    l.allowed_routes
                        .as_ref()
                        .and_then(|a| a.namespaces.as_ref()),
                    "Same",
                    f_ns,
                    route_ns,
                    || self.lookup.namespace_labels(route_ns),
                )
            };
            if !taking.iter().any(admits) {
                let names: Vec<String> = taking.iter().map(|l| format!("\"{}\"", l.name)).collect();
                fixes.push(format!(
                    "allow routes from namespace \"{route_ns}\" on its {} {} \
                     (allowedRoutes.namespaces.from: All or Selector)",
                    if names.len() == 1 {
                        "listener"
                    } else {
                        "listeners"
                    },
                    names.join(", ")
                ));
            }
        }
        message.push_str(&fixes.join(", and "));
        message.push_str(&note);
        message
    }

    /// `"; the Gateways in the input are a/b, c/d"`, or that there are none.
    fn existing(&self, kind: Kind) -> String {
        let names: Vec<String> = match kind {
            Kind::Gateway => live(&self.input().gateways, |g| &g.metadata)
                .map(|g| format!("{}/{}", g.metadata.namespace_or_default(), g.metadata.name))
                .collect(),
            _ => live(&self.input().listener_sets, |s| &s.metadata)
                .map(|s| format!("{}/{}", s.metadata.namespace_or_default(), s.metadata.name))
                .collect(),
        };
        if names.is_empty() {
            format!("; the input has no {kind}")
        } else {
            format!("; the {kind}s in the input are {}", list(&names))
        }
    }

    fn serves(&self, g: &Gateway) -> bool {
        self.class(&g.spec.gateway_class_name)
            .is_some_and(|c| c.spec.controller_name == self.lookup.options.controller_name)
    }

    fn class(&self, name: &str) -> Option<&'a GatewayClass> {
        live(&self.input().gateway_classes, |c| &c.metadata).find(|c| c.metadata.name == name)
    }

    fn gateway(&self, ns: &str, name: &str) -> Option<&'a Gateway> {
        live(&self.input().gateways, |g| &g.metadata)
            .find(|g| g.metadata.namespace_or_default() == ns && g.metadata.name == name)
    }

    fn listener_set(&self, ns: &str, name: &str) -> Option<&'a ListenerSet> {
        live(&self.input().listener_sets, |s| &s.metadata)
            .find(|s| s.metadata.namespace_or_default() == ns && s.metadata.name == name)
    }

    fn closest_gateway(&self, ns: &str, name: &str) -> Option<&'a Gateway> {
        self.closest_of(
            &self.input().gateways,
            ns,
            name,
            |g| &g.metadata,
            |g| self.serves(g),
        )
    }

    fn closest_listener_set(&self, ns: &str, name: &str) -> Option<&'a ListenerSet> {
        self.closest_of(
            &self.input().listener_sets,
            ns,
            name,
            |s| &s.metadata,
            |s| {
                let s_ns = s.metadata.namespace_or_default();
                let p = &s.spec.parent_ref;
                self.gateway(p.namespace.as_deref().unwrap_or(s_ns), &p.name)
                    .is_some_and(|g| self.serves(g))
            },
        )
    }

    /// The object most likely meant by `ns/name`: the same name in another namespace first,
    /// then a name a few edits away (in the same namespace first); Loom's before others.
    fn closest_of<T>(
        &self,
        items: &'a [Arc<T>],
        ns: &str,
        name: &str,
        meta: impl Fn(&T) -> &ObjectMeta,
        loom: impl Fn(&T) -> bool,
    ) -> Option<&'a T> {
        live(items, &meta)
            .filter_map(|o| {
                let m = meta(o);
                let distance = edit_distance(&m.name, name);
                near(name, distance).then(|| {
                    let rank = (
                        distance,
                        m.namespace_or_default() != ns,
                        !loom(o),
                        m.namespace_or_default().to_owned(),
                        m.name.clone(),
                    );
                    (rank, o)
                })
            })
            .min_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, o)| o)
    }

    fn same_name<T>(
        &self,
        items: &'a [Arc<T>],
        ns: &str,
        name: &str,
        meta: impl Fn(&T) -> &ObjectMeta,
    ) -> Option<&'a T> {
        live(items, &meta)
            .filter(|o| meta(o).name == name)
            .min_by_key(|o| {
                (
                    meta(o).namespace_or_default() != ns,
                    meta(o).namespace_or_default(),
                )
            })
    }

    fn routes(&self) -> Vec<RouteRefs<'a>> {
        let input = self.input();
        let mut out = vec![];
        let mut add = |kind, meta: &'a ObjectMeta, parent_refs: &'a [ParentReference]| {
            if meta.deletion_timestamp.is_none() {
                out.push(RouteRefs {
                    key: ObjectKey::of(kind, meta),
                    parent_refs,
                });
            }
        };
        for r in &input.http_routes {
            add(Kind::HttpRoute, &r.metadata, &r.spec.parent_refs);
        }
        for r in &input.grpc_routes {
            add(Kind::GrpcRoute, &r.metadata, &r.spec.parent_refs);
        }
        for r in &input.tls_routes {
            add(Kind::TlsRoute, &r.metadata, &r.spec.parent_refs);
        }
        for r in &input.tcp_routes {
            add(Kind::TcpRoute, &r.metadata, &r.spec.parent_refs);
        }
        for r in &input.udp_routes {
            add(Kind::UdpRoute, &r.metadata, &r.spec.parent_refs);
        }
        out
    }

    fn index_backends(&mut self) {
        let input = self.lookup.input;
        let mut add = |route: &ObjectKey, b: &BackendRef| {
            let kind = match (b.group.as_deref().unwrap_or(""), b.kind.as_deref()) {
                ("", None | Some("Service")) => Kind::Service,
                (LOOM_GROUP, Some("Backend")) => Kind::Backend,
                _ => return,
            };
            let target = ObjectKey {
                kind,
                namespace: b
                    .namespace
                    .clone()
                    .unwrap_or_else(|| route.namespace.clone()),
                name: b.name.clone(),
            };
            self.backend_of
                .entry(target)
                .or_default()
                .insert(route.clone());
        };
        let mirrors = |filters: &'a [HttpRouteFilter]| {
            filters
                .iter()
                .filter_map(|f| f.request_mirror.as_ref())
                .map(|m| &m.backend_ref)
        };
        let http_rule = |key: &ObjectKey,
                         filters: &'a [HttpRouteFilter],
                         backends: &'a [HttpBackendRef],
                         add: &mut dyn FnMut(&ObjectKey, &BackendRef)| {
            for b in mirrors(filters) {
                add(key, b);
            }
            for b in backends {
                add(key, &b.backend_ref);
                for m in mirrors(&b.filters) {
                    add(key, m);
                }
            }
        };
        for r in &input.http_routes {
            let key = ObjectKey::of(Kind::HttpRoute, &r.metadata);
            for rule in &r.spec.rules {
                http_rule(&key, &rule.filters, &rule.backend_refs, &mut add);
            }
        }
        for r in &input.grpc_routes {
            let key = ObjectKey::of(Kind::GrpcRoute, &r.metadata);
            for rule in &r.spec.rules {
                http_rule(&key, &rule.filters, &rule.backend_refs, &mut add);
            }
        }
        let l4 = [
            (
                Kind::TlsRoute,
                input
                    .tls_routes
                    .iter()
                    .map(|r| (&r.metadata, &r.spec))
                    .collect::<Vec<_>>(),
            ),
            (
                Kind::TcpRoute,
                input
                    .tcp_routes
                    .iter()
                    .map(|r| (&r.metadata, &r.spec))
                    .collect(),
            ),
            (
                Kind::UdpRoute,
                input
                    .udp_routes
                    .iter()
                    .map(|r| (&r.metadata, &r.spec))
                    .collect(),
            ),
        ];
        for (kind, routes) in l4 {
            for (meta, spec) in routes {
                let key = ObjectKey::of(kind, meta);
                for b in spec.rules.iter().flat_map(|r| &r.backend_refs) {
                    add(&key, b);
                }
            }
        }
    }

    fn index_parameters(&mut self) {
        let input = self.lookup.input;
        for c in &input.gateway_classes {
            if let Some(p) = &c.spec.parameters_ref
                && p.group == LOOM_GROUP
                && p.kind == "GatewayClassConfig"
            {
                let target = ObjectKey {
                    kind: Kind::GatewayClassConfig,
                    namespace: p.namespace.clone().unwrap_or_else(|| "default".into()),
                    name: p.name.clone(),
                };
                self.parameters_of
                    .entry(target)
                    .or_default()
                    .insert(ObjectKey::of(Kind::GatewayClass, &c.metadata));
            }
        }
        for g in &input.gateways {
            if let Some(p) = g
                .spec
                .infrastructure
                .as_ref()
                .and_then(|i| i.parameters_ref.as_ref())
                && p.group == LOOM_GROUP
                && p.kind == "GatewayClassConfig"
            {
                let target = ObjectKey {
                    kind: Kind::GatewayClassConfig,
                    namespace: g.metadata.namespace_or_default().into(),
                    name: p.name.clone(),
                };
                self.parameters_of
                    .entry(target)
                    .or_default()
                    .insert(ObjectKey::of(Kind::Gateway, &g.metadata));
            }
        }
    }
}

/// What to change in a parentRef so it names `to_ns/to_name` (and, if given, that kind).
fn ref_fixes(
    p: &ParentReference,
    ns: &str,
    name: &str,
    to_ns: &str,
    to_name: &str,
    kind: Option<Kind>,
) -> Vec<String> {
    let mut fixes = vec![];
    if let Some(k) = kind {
        fixes.push(format!("set \"kind: {k}\" in the parentRef"));
    }
    if name != to_name {
        fixes.push(format!("set \"name: {to_name}\" in the parentRef"));
    }
    if ns != to_ns {
        fixes.push(if p.namespace.is_some() {
            format!("set \"namespace: {to_ns}\" in the parentRef")
        } else {
            format!("add \"namespace: {to_ns}\" to the parentRef")
        });
    }
    fixes
}

/// The route kinds a listener takes: its protocol's, narrowed by `allowedRoutes.kinds`.
fn route_kinds(l: &Listener) -> Vec<Kind> {
    let Some(protocol) = Protocol::parse(&l.protocol) else {
        return vec![];
    };
    let supported = protocol.kinds();
    match l
        .allowed_routes
        .as_ref()
        .map(|a| &a.kinds)
        .filter(|k| !k.is_empty())
    {
        None => supported.to_vec(),
        Some(kinds) => supported
            .iter()
            .copied()
            .filter(|s| {
                kinds.iter().any(|k| {
                    k.kind == s.as_str() && group_or(&k.group, GATEWAY_GROUP) == GATEWAY_GROUP
                })
            })
            .collect(),
    }
}

/// `a, b, c`, or the first few and how many more.
fn list<T: fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    const SHOWN: usize = 5;
    let items: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    if items.len() <= SHOWN {
        items.join(", ")
    } else {
        format!(
            "{} and {} more",
            items[..SHOWN].join(", "),
            items.len() - SHOWN
        )
    }
}

fn or_nothing(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".into()
    } else {
        items.join(", ")
    }
}

/// The name in `names` a few edits from `name` (fewest first), if any.
fn closest<'n>(name: &str, names: impl Iterator<Item = &'n str>) -> Option<&'n str> {
    names
        .map(|n| (edit_distance(n, name), n))
        .filter(|(d, _)| near(name, *d))
        .min()
        .map(|(_, n)| n)
}

/// Whether a name `distance` edits from `name` is close enough to suggest: one edit in four
/// characters, at least one and at most three (past that, names that share a long prefix
/// would pass for typos of each other).
fn near(name: &str, distance: usize) -> bool {
    distance <= (name.chars().count() / 4).clamp(1, 3)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests;
