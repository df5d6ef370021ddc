//! GatewayClasses, Gateways, listeners, ListenerSets and listener conflicts.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::routes::Attached;
use super::{InputLookup, by_age, group_or};
use crate::input::*;
use crate::route::host::{HostPattern, most_specific_first};
use crate::route::{GrpcPrecedence, GrpcTable, HttpPrecedence, HttpTable, RouteOrder};
use crate::snapshot::*;
use crate::status::*;

/// Loom's accepted GatewayClasses: name → accepted.
pub(crate) type Classes = BTreeMap<String, bool>;

pub(crate) fn gateway_classes(lookup: &InputLookup<'_>, status: &mut Status) -> Classes {
    let mut classes = Classes::new();
    for class in by_age(&lookup.input.gateway_classes, |c| &c.metadata) {
        if class.spec.controller_name != lookup.options.controller_name {
            continue;
        }
        let g = class.metadata.generation();
        let invalid = class.spec.parameters_ref.as_ref().and_then(|p| {
            if p.group != LOOM_GROUP || p.kind != "GatewayClassConfig" {
                return Some(format!(
                    "parametersRef must be a {LOOM_GROUP} GatewayClassConfig, not {}/{}",
                    p.group, p.kind
                ));
            }
            let ns = p.namespace.as_deref().unwrap_or("default");
            lookup
                .class_config(ns, &p.name)
                .is_none()
                .then(|| format!("GatewayClassConfig {ns}/{} not found", p.name))
        });
        let mut conditions = Conditions::default();
        conditions.set(match &invalid {
            None => Condition::new(
                ConditionType::Accepted,
                true,
                Reason::Accepted,
                "Loom accepts this class",
                g,
            ),
            Some(why) => Condition::new(
                ConditionType::Accepted,
                false,
                Reason::InvalidParameters,
                why.clone(),
                g,
            ),
        });
        conditions.set(Condition::new(
            ConditionType::SupportedVersion,
            true,
            Reason::SupportedVersion,
            "Gateway API v1.6",
            g,
        ));
        let mut names: Vec<&str> = crate::SUPPORTED_FEATURES.to_vec();
        names.extend(lookup.options.extra_features.iter().map(String::as_str));
        names.sort_unstable();
        names.dedup();
        let supported_features = names
            .into_iter()
            .map(|f| SupportedFeature { name: f.into() })
            .collect();
        status.objects.insert(
            ObjectKey {
                kind: Kind::GatewayClass,
                namespace: String::new(),
                name: class.metadata.name.clone(),
            },
            ObjectStatus::GatewayClass(GatewayClassStatus {
                conditions,
                supported_features,
            }),
        );
        classes.insert(class.metadata.name.clone(), invalid.is_none());
    }
    classes
}

/// A listener protocol Loom serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    Http,
    Https,
    Tls,
    Tcp,
    Udp,
}

impl Protocol {
    fn parse(s: &str) -> Option<Protocol> {
        Some(match s {
            "HTTP" => Protocol::Http,
            "HTTPS" => Protocol::Https,
            "TLS" => Protocol::Tls,
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            _ => return None,
        })
    }

    fn kinds(self) -> &'static [Kind] {
        match self {
            Protocol::Http | Protocol::Https => &[Kind::HttpRoute, Kind::GrpcRoute],
            Protocol::Tls => &[Kind::TlsRoute],
            Protocol::Tcp => &[Kind::TcpRoute],
            Protocol::Udp => &[Kind::UdpRoute],
        }
    }

    /// Whether two protocols can share a port (then only hostnames may conflict).
    fn shares_port_with(self, other: Protocol) -> Option<bool> {
        use Protocol::*;
        match (self, other) {
            (Udp, Udp) => Some(true),
            (Udp, _) | (_, Udp) => None, // different transports never meet
            (Http, Http) | (Https | Tls, Https | Tls) => Some(true),
            _ => Some(false),
        }
    }
}

/// One listener of a Gateway or ListenerSet, being compiled.
pub(crate) struct CheckedListener<'a> {
    pub(crate) gateway: usize,
    pub(crate) owner: ObjectKey,
    pub(crate) spec: &'a Listener,
    pub(crate) port: u16,
    pub(crate) protocol: Option<Protocol>,
    pub(crate) hostname: Option<HostPattern>,
    pub(crate) kinds: Vec<Kind>,
    pub(crate) not_accepted: Option<(Reason, String)>,
    pub(crate) unresolved: Option<(Reason, String)>,
    pub(crate) conflict: Option<Reason>,
    pub(crate) tls: Option<ServerTls>,
    pub(crate) passthrough: bool,
    pub(crate) attached: BTreeSet<ObjectKey>,
    pub(crate) generation: i64,
}

impl CheckedListener<'_> {
    /// Whether routes may attach (valid and not conflicted).
    pub(crate) fn is_accepted(&self) -> bool {
        self.not_accepted.is_none() && self.conflict.is_none()
    }

    fn is_programmed(&self) -> bool {
        self.is_accepted() && self.unresolved.is_none()
    }

    /// Whether routes from this namespace may attach.
    pub(crate) fn allows_namespace(&self, lookup: &InputLookup<'_>, route_ns: &str) -> bool {
        let from = self
            .spec
            .allowed_routes
            .as_ref()
            .and_then(|a| a.namespaces.as_ref());
        match from.and_then(|f| f.from.as_deref()).unwrap_or("Same") {
            "All" => true,
            "Same" => route_ns == self.owner.namespace,
            "Selector" => from
                .and_then(|f| f.selector.as_ref())
                .is_some_and(|s| s.matches(&lookup.namespace_labels(route_ns))),
            _ => false,
        }
    }

    fn status(&self) -> ListenerStatus {
        let g = self.generation;
        let mut c = Conditions::default();
        let conflict = self.conflict;
        c.set(match (&self.not_accepted, conflict) {
            (Some((r, m)), _) => Condition::new(ConditionType::Accepted, false, *r, m.clone(), g),
            (None, Some(r)) => Condition::new(
                ConditionType::Accepted,
                false,
                r,
                "listener conflicts with an earlier one",
                g,
            ),
            (None, None) => Condition::new(
                ConditionType::Accepted,
                true,
                Reason::Accepted,
                "listener is valid",
                g,
            ),
        });
        c.set(match &self.unresolved {
            Some((r, m)) => Condition::new(ConditionType::ResolvedRefs, false, *r, m.clone(), g),
            None => Condition::new(
                ConditionType::ResolvedRefs,
                true,
                Reason::ResolvedRefs,
                "all references resolved",
                g,
            ),
        });
        c.set(match conflict {
            Some(r) => Condition::new(
                ConditionType::Conflicted,
                true,
                r,
                "listener conflicts with an earlier one",
                g,
            ),
            None => Condition::new(
                ConditionType::Conflicted,
                false,
                Reason::NoConflicts,
                "no conflicts",
                g,
            ),
        });
        c.set(if self.is_programmed() {
            Condition::new(
                ConditionType::Programmed,
                true,
                Reason::Programmed,
                "listener is serving",
                g,
            )
        } else {
            let r = conflict.unwrap_or(Reason::Invalid);
            Condition::new(
                ConditionType::Programmed,
                false,
                r,
                "listener is not serving",
                g,
            )
        });
        ListenerStatus {
            name: self.spec.name.clone(),
            supported_kinds: self
                .kinds
                .iter()
                .map(|k| RouteGroupKind {
                    group: Some(GATEWAY_GROUP.into()),
                    kind: k.as_str().into(),
                })
                .collect(),
            attached_routes: self.attached.len() as i32,
            conditions: c,
        }
    }
}

/// A Gateway being compiled.
pub(crate) struct CheckedGateway<'a> {
    pub(crate) gateway: &'a Gateway,
    pub(crate) name: GatewayName,
    pub(crate) listeners: Vec<usize>,
    pub(crate) listener_sets: Vec<usize>,
    class_accepted: bool,
    not_accepted: Option<(Reason, String)>,
    not_programmed: Option<(Reason, String)>,
    backend_client_cert: Option<Result<Certificate, (Reason, String)>>,
    insecure_fallback: bool,
    addresses: Vec<StatusAddress>,
}

/// A ListenerSet being compiled.
pub(crate) struct CheckedListenerSet<'a> {
    set: &'a ListenerSet,
    pub(crate) key: ObjectKey,
    not_allowed: Option<String>,
    pub(crate) listeners: Vec<usize>,
}

impl CheckedListenerSet<'_> {
    /// Accepted when allowed and at least one listener is valid: accepted, not conflicted and
    /// with every reference resolved (ListenerSetReferenceGrant expects a set whose only
    /// listener lacks its certificate grant to be `ListenersNotValid`).
    pub(crate) fn is_accepted(&self, listeners: &[CheckedListener<'_>]) -> bool {
        self.not_allowed.is_none() && self.listeners.iter().any(|&l| listeners[l].is_programmed())
    }
}

/// Every Gateway of Loom's classes, with its listeners.
pub(crate) struct Gateways<'a> {
    lookup: &'a InputLookup<'a>,
    pub(crate) gateways: Vec<CheckedGateway<'a>>,
    pub(crate) listeners: Vec<CheckedListener<'a>>,
    pub(crate) listener_sets: Vec<CheckedListenerSet<'a>>,
    by_name: HashMap<(String, String), usize>,
    sets_by_name: HashMap<(String, String), usize>,
}

impl<'a> Gateways<'a> {
    pub(crate) fn build(lookup: &'a InputLookup<'a>, classes: &Classes) -> Self {
        let mut this = Gateways {
            lookup,
            gateways: vec![],
            listeners: vec![],
            listener_sets: vec![],
            by_name: HashMap::new(),
            sets_by_name: HashMap::new(),
        };
        for gw in by_age(&lookup.input.gateways, |g| &g.metadata) {
            let Some(&class_accepted) = classes.get(&gw.spec.gateway_class_name) else {
                continue;
            };
            let index = this.gateways.len();
            let ns = gw.metadata.namespace_or_default();
            let owner = ObjectKey {
                kind: Kind::Gateway,
                namespace: ns.into(),
                name: gw.metadata.name.clone(),
            };
            let listeners = gw
                .spec
                .listeners
                .iter()
                .map(|l| this.push_listener(index, owner.clone(), gw, l, gw.metadata.generation()))
                .collect();
            let mut ir = CheckedGateway {
                gateway: gw,
                name: GatewayName::new(ns, &gw.metadata.name),
                listeners,
                listener_sets: vec![],
                class_accepted,
                not_accepted: None,
                not_programmed: None,
                backend_client_cert: None,
                insecure_fallback: false,
                addresses: vec![],
            };
            this.gateway_checks(&mut ir);
            this.by_name
                .insert((ns.into(), gw.metadata.name.clone()), index);
            this.gateways.push(ir);
        }
        this.attach_listener_sets();
        this.resolve_conflicts();
        this
    }

    fn push_listener(
        &mut self,
        gateway: usize,
        owner: ObjectKey,
        gw: &'a Gateway,
        spec: &'a Listener,
        generation: i64,
    ) -> usize {
        let ir = validate_listener(self.lookup, gateway, owner, gw, spec, generation);
        self.listeners.push(ir);
        self.listeners.len() - 1
    }

    fn gateway_checks(&self, ir: &mut CheckedGateway<'a>) {
        let gw = ir.gateway;
        let ns = gw.metadata.namespace_or_default();
        let opts = self.lookup.options;
        if !ir.class_accepted {
            ir.not_accepted = Some((Reason::Invalid, "the GatewayClass is not accepted".into()));
        }
        if let Some(p) = gw
            .spec
            .infrastructure
            .as_ref()
            .and_then(|i| i.parameters_ref.as_ref())
            && (p.group != LOOM_GROUP
                || p.kind != "GatewayClassConfig"
                || self.lookup.class_config(ns, &p.name).is_none())
        {
            ir.not_accepted = Some((
                Reason::InvalidParameters,
                format!(
                    "infrastructure.parametersRef {}/{} {} does not name a GatewayClassConfig",
                    p.group, p.kind, p.name
                ),
            ));
        }
        // Addresses.
        let defaults = opts
            .gateway_addresses
            .get(&(ns.to_owned(), gw.metadata.name.clone()))
            .unwrap_or(&opts.default_addresses);
        for a in &gw.spec.addresses {
            let type_ = a.type_.as_deref().unwrap_or("IPAddress");
            let value = a.value.as_deref().filter(|v| !v.is_empty());
            match type_ {
                "IPAddress" | "Hostname" => {}
                other => {
                    ir.not_accepted = Some((
                        Reason::UnsupportedAddress,
                        format!("address type {other:?} is not supported"),
                    ));
                    continue;
                }
            }
            if type_ == "IPAddress" && value.is_some_and(|v| v.parse::<std::net::IpAddr>().is_err())
            {
                ir.not_accepted = Some((
                    Reason::UnsupportedAddress,
                    format!("{:?} is not an IP address", value.unwrap_or("")),
                ));
                continue;
            }
            let value = match value {
                Some(v) => v.to_owned(),
                None => match defaults.iter().find(|d| d.type_ == type_) {
                    Some(d) => d.value.clone(),
                    None => {
                        ir.not_programmed = Some((
                            Reason::AddressNotUsable,
                            format!("no {type_} address to assign"),
                        ));
                        continue;
                    }
                },
            };
            if opts
                .usable_addresses
                .as_ref()
                .is_some_and(|u| !u.contains(&value))
            {
                ir.not_programmed = Some((
                    Reason::AddressNotUsable,
                    format!("address {value} cannot be served"),
                ));
            }
            ir.addresses.push(StatusAddress {
                type_: type_.into(),
                value,
            });
        }
        if gw.spec.addresses.is_empty() {
            ir.addresses = defaults.clone();
        }
        if let Some(why) = opts
            .gateway_not_programmed
            .get(&(ns.to_owned(), gw.metadata.name.clone()))
        {
            ir.not_programmed = Some(why.clone());
        }
        // Backend client certificate.
        let tls = gw.spec.tls.as_ref();
        if let Some(r) = tls
            .and_then(|t| t.backend.as_ref())
            .and_then(|b| b.client_certificate_ref.as_ref())
        {
            let res = resolve_secret(self.lookup, ("gateway.networking.k8s.io", "Gateway", ns), r)
                .map_err(|(reason, m)| {
                    let reason = if reason == Reason::RefNotPermitted {
                        reason
                    } else {
                        Reason::InvalidClientCertificateRef
                    };
                    (reason, m)
                });
            ir.backend_client_cert = Some(res);
        }
        if let Some(f) = tls.and_then(|t| t.frontend.as_ref()) {
            let modes = f.default.iter().chain(f.per_port.iter().map(|p| &p.tls));
            ir.insecure_fallback = modes
                .filter_map(|t| t.validation.as_ref())
                .any(|v| v.mode.as_deref() == Some("AllowInsecureFallback"));
        }
    }

    fn attach_listener_sets(&mut self) {
        let lookup = self.lookup;
        for set in by_age(&lookup.input.listener_sets, |s| &s.metadata) {
            let ns = set.metadata.namespace_or_default();
            let p = &set.spec.parent_ref;
            if group_or(&p.group, GATEWAY_GROUP) != GATEWAY_GROUP
                || p.kind.as_deref().unwrap_or("Gateway") != "Gateway"
            {
                continue;
            }
            let gw_ns = p.namespace.as_deref().unwrap_or(ns);
            let Some(&gateway) = self.by_name.get(&(gw_ns.to_owned(), p.name.clone())) else {
                continue;
            };
            let gw = self.gateways[gateway].gateway;
            let allowed = gw
                .spec
                .allowed_listeners
                .as_ref()
                .and_then(|a| a.namespaces.as_ref());
            let not_allowed = match allowed.and_then(|a| a.from.as_deref()).unwrap_or("None") {
                "All" => None,
                "Same" if ns == gw_ns => None,
                "Selector"
                    if allowed
                        .and_then(|a| a.selector.as_ref())
                        .is_some_and(|s| s.matches(&lookup.namespace_labels(ns))) =>
                {
                    None
                }
                from => Some(format!(
                    "the Gateway's allowedListeners (from: {from}) does not admit this ListenerSet"
                )),
            };
            let key = ObjectKey {
                kind: Kind::ListenerSet,
                namespace: ns.into(),
                name: set.metadata.name.clone(),
            };
            let listeners = if not_allowed.is_none() {
                set.spec
                    .listeners
                    .iter()
                    .map(|l| {
                        self.push_listener(gateway, key.clone(), gw, l, set.metadata.generation())
                    })
                    .collect()
            } else {
                vec![]
            };
            let index = self.listener_sets.len();
            self.sets_by_name
                .insert((ns.into(), set.metadata.name.clone()), index);
            self.gateways[gateway].listener_sets.push(index);
            self.listener_sets.push(CheckedListenerSet {
                set,
                key,
                not_allowed,
                listeners,
            });
        }
    }

    /// Listener precedence: the Gateway's own listeners in order, then ListenerSets oldest
    /// first (then by namespace/name). A later listener that clashes with an earlier one on
    /// the same port loses with `ProtocolConflict` or `HostnameConflict`.
    fn resolve_conflicts(&mut self) {
        for gw in &self.gateways {
            let order: Vec<usize> = gw
                .listeners
                .iter()
                .copied()
                .chain(
                    gw.listener_sets
                        .iter()
                        .flat_map(|&s| self.listener_sets[s].listeners.iter().copied()),
                )
                .collect();
            let mut kept: Vec<usize> = vec![];
            for i in order {
                let l = &self.listeners[i];
                let (Some(proto), None) = (l.protocol, &l.not_accepted) else {
                    continue;
                };
                let mut conflict = None;
                for &j in &kept {
                    let k = &self.listeners[j];
                    if k.port != l.port {
                        continue;
                    }
                    match proto.shares_port_with(k.protocol.unwrap_or(proto)) {
                        None => {}
                        Some(false) => conflict = Some(Reason::ProtocolConflict),
                        Some(true) => {
                            let host_matters = !matches!(proto, Protocol::Tcp | Protocol::Udp);
                            if !host_matters || k.hostname == l.hostname {
                                conflict = Some(Reason::HostnameConflict);
                            }
                        }
                    }
                    if conflict.is_some() {
                        break;
                    }
                }
                match conflict {
                    Some(r) => self.listeners[i].conflict = Some(r),
                    None => kept.push(i),
                }
            }
        }
    }

    pub(crate) fn gateway_index(&self, ns: &str, name: &str) -> Option<usize> {
        self.by_name.get(&(ns.to_owned(), name.to_owned())).copied()
    }

    pub(crate) fn listener_set_index(&self, ns: &str, name: &str) -> Option<usize> {
        self.sets_by_name
            .get(&(ns.to_owned(), name.to_owned()))
            .copied()
    }

    pub(crate) fn gateway_accepted(&self, gw: usize) -> bool {
        let ir = &self.gateways[gw];
        ir.not_accepted.is_none()
            && (ir.listeners.is_empty()
                || ir
                    .listeners
                    .iter()
                    .any(|&l| self.listeners[l].is_accepted()))
    }

    /// Builds the snapshot from the programmed listeners and the routes attached to them.
    pub(crate) fn snapshot(&self, attached: &Attached) -> Snapshot {
        let mut snapshot = Snapshot::default();
        for (gi, gw) in self.gateways.iter().enumerate() {
            if !self.gateway_accepted(gi) {
                continue;
            }
            let mut g = GatewaySnapshot {
                addresses: gw.addresses.clone(),
                ports: BTreeMap::new(),
                backend_client_certificate: gw
                    .backend_client_cert
                    .as_ref()
                    .and_then(|r| r.as_ref().ok())
                    .cloned(),
            };
            let all = gw.listeners.iter().copied().chain(
                gw.listener_sets
                    .iter()
                    .flat_map(|&s| self.listener_sets[s].listeners.iter().copied()),
            );
            for li in all {
                let l = &self.listeners[li];
                if !l.is_programmed() {
                    continue;
                }
                let port = g.ports.entry(l.port).or_insert_with(|| PortSnapshot {
                    port: l.port,
                    ..Default::default()
                });
                match l.protocol {
                    Some(Protocol::Http | Protocol::Https) => {
                        port.http.push(build_http_listener(l, li, attached))
                    }
                    Some(Protocol::Tls) => {
                        let mut routes: Vec<_> = attached
                            .l4
                            .iter()
                            .filter(|a| a.listener == li)
                            .flat_map(|a| {
                                a.hostnames
                                    .iter()
                                    .map(move |h| (h.clone(), a.order.clone(), a.rule.clone()))
                            })
                            .collect();
                        routes.sort_by(|a, b| {
                            most_specific_first(a.0.as_ref(), b.0.as_ref())
                                .then_with(|| a.1.cmp(&b.1))
                        });
                        port.tls.push(TlsListener {
                            name: l.spec.name.clone(),
                            hostname: l.hostname.clone(),
                            terminate: if l.passthrough { None } else { l.tls.clone() },
                            routes: routes.into_iter().map(|(h, _, r)| (h, r)).collect(),
                        });
                    }
                    Some(p @ (Protocol::Tcp | Protocol::Udp)) => {
                        // Several routes may attach; the oldest gets the traffic.
                        let first = attached
                            .l4
                            .iter()
                            .filter(|a| a.listener == li)
                            .min_by(|a, b| a.order.cmp(&b.order));
                        if let Some(a) = first {
                            let l4 = L4Listener {
                                name: l.spec.name.clone(),
                                rule: a.rule.clone(),
                            };
                            if p == Protocol::Tcp {
                                port.tcp = Some(l4);
                            } else {
                                port.udp = Some(l4);
                            }
                        }
                    }
                    None => {}
                }
            }
            for port in g.ports.values_mut() {
                port.http
                    .sort_by(|a, b| most_specific_first(a.hostname.as_ref(), b.hostname.as_ref()));
                port.tls
                    .sort_by(|a, b| most_specific_first(a.hostname.as_ref(), b.hostname.as_ref()));
            }
            snapshot.gateways.insert(gw.name.clone(), g);
        }
        snapshot
    }

    pub(crate) fn write_status(&self, status: &mut Status) {
        for (gi, gw) in self.gateways.iter().enumerate() {
            let g = gw.gateway.metadata.generation();
            let mut c = Conditions::default();
            let own: Vec<&CheckedListener<'_>> =
                gw.listeners.iter().map(|&l| &self.listeners[l]).collect();
            let valid = own.iter().filter(|l| l.is_accepted()).count();
            let accepted = self.gateway_accepted(gi);
            c.set(match (&gw.not_accepted, valid, own.len()) {
                (Some((r, m)), _, _) => {
                    Condition::new(ConditionType::Accepted, false, *r, m.clone(), g)
                }
                (None, 0, n) if n > 0 => Condition::new(
                    ConditionType::Accepted,
                    false,
                    Reason::ListenersNotValid,
                    "no listener is valid",
                    g,
                ),
                (None, v, n) if v < n => Condition::new(
                    ConditionType::Accepted,
                    true,
                    Reason::ListenersNotValid,
                    "some listeners are not valid",
                    g,
                ),
                _ => Condition::new(
                    ConditionType::Accepted,
                    true,
                    Reason::Accepted,
                    "Gateway is valid",
                    g,
                ),
            });
            c.set(match (&gw.not_programmed, accepted) {
                (_, false) => Condition::new(
                    ConditionType::Programmed,
                    false,
                    Reason::Invalid,
                    "Gateway is not accepted",
                    g,
                ),
                (Some((r, m)), true) => {
                    Condition::new(ConditionType::Programmed, false, *r, m.clone(), g)
                }
                (None, true) => Condition::new(
                    ConditionType::Programmed,
                    true,
                    Reason::Programmed,
                    "Gateway is serving",
                    g,
                ),
            });
            if let Some(res) = &gw.backend_client_cert {
                c.set(match res {
                    Ok(_) => Condition::new(
                        ConditionType::ResolvedRefs,
                        true,
                        Reason::ResolvedRefs,
                        "backend client certificate resolved",
                        g,
                    ),
                    Err((r, m)) => {
                        Condition::new(ConditionType::ResolvedRefs, false, *r, m.clone(), g)
                    }
                });
            }
            if gw.insecure_fallback {
                c.set(Condition::new(
                    ConditionType::InsecureFrontendValidationMode,
                    true,
                    Reason::ConfigurationChanged,
                    "AllowInsecureFallback accepts clients without a valid certificate",
                    g,
                ));
            }
            let attached_listener_sets = gw
                .listener_sets
                .iter()
                .filter(|&&s| self.listener_sets[s].is_accepted(&self.listeners))
                .count() as i32;
            status.objects.insert(
                ObjectKey {
                    kind: Kind::Gateway,
                    namespace: gw.name.namespace.clone(),
                    name: gw.name.name.clone(),
                },
                ObjectStatus::Gateway(GatewayStatus {
                    addresses: gw.addresses.clone(),
                    conditions: c,
                    listeners: own.iter().map(|l| l.status()).collect(),
                    attached_listener_sets,
                }),
            );
        }
        for set in &self.listener_sets {
            let g = set.set.metadata.generation();
            let mut c = Conditions::default();
            let accepted = set.is_accepted(&self.listeners);
            match &set.not_allowed {
                Some(m) => {
                    c.set(Condition::new(
                        ConditionType::Accepted,
                        false,
                        Reason::NotAllowed,
                        m.clone(),
                        g,
                    ));
                    c.set(Condition::new(
                        ConditionType::Programmed,
                        false,
                        Reason::NotAllowed,
                        m.clone(),
                        g,
                    ));
                }
                None if !accepted => {
                    let m = "no listener is valid";
                    c.set(Condition::new(
                        ConditionType::Accepted,
                        false,
                        Reason::ListenersNotValid,
                        m,
                        g,
                    ));
                    c.set(Condition::new(
                        ConditionType::Programmed,
                        false,
                        Reason::ListenersNotValid,
                        m,
                        g,
                    ));
                }
                None => {
                    let all_valid = set
                        .listeners
                        .iter()
                        .all(|&l| self.listeners[l].is_programmed());
                    let (r, m) = if all_valid {
                        (Reason::Accepted, "ListenerSet is attached")
                    } else {
                        (Reason::ListenersNotValid, "some listeners are not valid")
                    };
                    c.set(Condition::new(ConditionType::Accepted, true, r, m, g));
                    c.set(Condition::new(
                        ConditionType::Programmed,
                        true,
                        Reason::Programmed,
                        "ListenerSet is serving",
                        g,
                    ));
                }
            }
            status.objects.insert(
                set.key.clone(),
                ObjectStatus::ListenerSet(ListenerSetStatus {
                    conditions: c,
                    listeners: set
                        .listeners
                        .iter()
                        .map(|&l| self.listeners[l].status())
                        .collect(),
                }),
            );
        }
    }
}

fn build_http_listener(l: &CheckedListener<'_>, li: usize, attached: &Attached) -> HttpListener {
    type Entries = (
        Vec<(crate::route::HttpMatch, HttpPrecedence, Arc<HttpRule>)>,
        Vec<(crate::route::GrpcMatch, GrpcPrecedence, Arc<HttpRule>)>,
    );
    let mut vhosts: BTreeMap<Option<HostPattern>, Entries> = BTreeMap::new();
    for a in attached.http.iter().filter(|a| a.listener == li) {
        for host in &a.hostnames {
            let entry = vhosts.entry(host.clone()).or_default();
            for r in &a.route.http {
                for (mi, m) in r.matches.iter().enumerate() {
                    let order = RouteOrder {
                        match_index: mi,
                        rule: r.index,
                        ..a.route.order.clone()
                    };
                    entry
                        .0
                        .push((m.clone(), HttpPrecedence::of(m, order), r.rule.clone()));
                }
            }
            for r in &a.route.grpc {
                for (mi, m) in r.matches.iter().enumerate() {
                    let order = RouteOrder {
                        match_index: mi,
                        rule: r.index,
                        ..a.route.order.clone()
                    };
                    entry
                        .1
                        .push((m.clone(), GrpcPrecedence::of(m, order), r.rule.clone()));
                }
            }
        }
    }
    let vhosts = vhosts
        .into_iter()
        .map(|(hostname, (http, grpc))| VirtualHost {
            hostname,
            http: HttpTable::new(http),
            grpc: GrpcTable::new(grpc),
        })
        .collect();
    HttpListener::new(
        l.spec.name.clone(),
        l.owner.clone(),
        l.hostname.clone(),
        l.tls.clone(),
        vhosts,
    )
}

fn validate_listener<'a>(
    lookup: &InputLookup<'_>,
    gateway: usize,
    owner: ObjectKey,
    gw: &Gateway,
    spec: &'a Listener,
    generation: i64,
) -> CheckedListener<'a> {
    let mut ir = CheckedListener {
        gateway,
        owner,
        spec,
        port: u16::try_from(spec.port).unwrap_or(0),
        protocol: Protocol::parse(&spec.protocol),
        hostname: None,
        kinds: vec![],
        not_accepted: None,
        unresolved: None,
        conflict: None,
        tls: None,
        passthrough: false,
        attached: BTreeSet::new(),
        generation,
    };
    let Some(protocol) = ir.protocol else {
        ir.not_accepted = Some((
            Reason::UnsupportedProtocol,
            format!("protocol {:?} is not supported", spec.protocol),
        ));
        return ir;
    };
    if ir.port == 0 {
        ir.not_accepted = Some((
            Reason::UnsupportedValue,
            format!("port {} is out of range", spec.port),
        ));
        return ir;
    }
    if let Some(h) = &spec.hostname {
        match HostPattern::parse(h) {
            Ok(p) => ir.hostname = Some(p),
            Err(e) => {
                ir.not_accepted = Some((Reason::UnsupportedValue, format!("hostname {h:?}: {e}")));
                return ir;
            }
        }
    }
    // Route kinds.
    let supported = protocol.kinds();
    match spec
        .allowed_routes
        .as_ref()
        .map(|a| &a.kinds)
        .filter(|k| !k.is_empty())
    {
        None => ir.kinds = supported.to_vec(),
        Some(kinds) => {
            let mut invalid = vec![];
            for k in kinds {
                let found = supported.iter().find(|s| {
                    s.as_str() == k.kind && group_or(&k.group, GATEWAY_GROUP) == GATEWAY_GROUP
                });
                match found {
                    Some(s) if !ir.kinds.contains(s) => ir.kinds.push(*s),
                    Some(_) => {}
                    None => {
                        invalid.push(format!("{}/{}", group_or(&k.group, GATEWAY_GROUP), k.kind))
                    }
                }
            }
            if !invalid.is_empty() {
                ir.unresolved = Some((
                    Reason::InvalidRouteKinds,
                    format!(
                        "route kinds {} are not supported on {:?} listeners",
                        invalid.join(", "),
                        spec.protocol
                    ),
                ));
            }
        }
    }
    // TLS.
    let from = (
        GATEWAY_GROUP,
        ir.owner.kind.as_str(),
        ir.owner.namespace.as_str(),
    );
    match protocol {
        Protocol::Https | Protocol::Tls => {
            let Some(tls) = &spec.tls else {
                ir.not_accepted = Some((
                    Reason::UnsupportedValue,
                    format!("{:?} listeners need tls", spec.protocol),
                ));
                return ir;
            };
            let mode = tls.mode.as_deref().unwrap_or("Terminate");
            match (protocol, mode) {
                (Protocol::Tls, "Passthrough") => {
                    ir.passthrough = true;
                    return ir;
                }
                (_, "Terminate") => {}
                (_, m) => {
                    ir.not_accepted = Some((
                        Reason::UnsupportedValue,
                        format!(
                            "tls mode {m:?} is not supported on {:?} listeners",
                            spec.protocol
                        ),
                    ));
                    return ir;
                }
            }
            let mut certificates = vec![];
            for r in &tls.certificate_refs {
                match resolve_secret(lookup, from, r) {
                    Ok(c) => certificates.push(Arc::new(c)),
                    Err((reason, m)) => {
                        let reason = if reason == Reason::RefNotPermitted {
                            reason
                        } else {
                            Reason::InvalidCertificateRef
                        };
                        ir.unresolved.get_or_insert((reason, m));
                    }
                }
            }
            if tls.certificate_refs.is_empty() {
                ir.unresolved
                    .get_or_insert((Reason::InvalidCertificateRef, "no certificateRefs".into()));
            }
            let client_validation = if protocol == Protocol::Https {
                frontend_validation(lookup, gw, &mut ir)
            } else {
                None
            };
            ir.tls = Some(ServerTls {
                certificates,
                client_validation,
            });
        }
        _ => {}
    }
    ir
}

/// Applies `spec.tls.frontend` to an HTTPS listener.
fn frontend_validation(
    lookup: &InputLookup<'_>,
    gw: &Gateway,
    ir: &mut CheckedListener<'_>,
) -> Option<ClientValidation> {
    let frontend = gw.spec.tls.as_ref()?.frontend.as_ref()?;
    let config = frontend
        .per_port
        .iter()
        .find(|p| p.port == i32::from(ir.port))
        .map(|p| &p.tls)
        .or(frontend.default.as_ref())?;
    let v = config.validation.as_ref()?;
    let gw_ns = gw.metadata.namespace_or_default();
    let mut ca_pem = vec![];
    let mut failure = None;
    for r in &v.ca_certificate_refs {
        let kind = r.kind.as_deref().unwrap_or("ConfigMap");
        let group = r.group.as_deref().unwrap_or("");
        let ns = r.namespace.as_deref().unwrap_or(gw_ns);
        let res = if !group.is_empty() || !matches!(kind, "ConfigMap" | "Secret") {
            Err((
                Reason::InvalidCaCertificateKind,
                format!("caCertificateRef kind {group}/{kind} is not supported"),
            ))
        } else if !lookup.grant_allows((GATEWAY_GROUP, "Gateway", gw_ns), ("", kind, ns, &r.name)) {
            Err((
                Reason::RefNotPermitted,
                format!("no ReferenceGrant allows {kind} {ns}/{}", r.name),
            ))
        } else {
            let data = match kind {
                "ConfigMap" => lookup
                    .config_map(ns, &r.name)
                    .and_then(|c| c.data.get("ca.crt"))
                    .map(|s| s.as_bytes().to_vec()),
                _ => lookup
                    .secret(ns, &r.name)
                    .and_then(|s| s.data.get("ca.crt"))
                    .cloned(),
            };
            match data {
                Some(d) if parses_certificates(&d) => Ok(d),
                Some(_) => Err((
                    Reason::InvalidCaCertificateRef,
                    format!("{kind} {ns}/{} has no valid ca.crt", r.name),
                )),
                None => Err((
                    Reason::InvalidCaCertificateRef,
                    format!("{kind} {ns}/{} not found or has no ca.crt", r.name),
                )),
            }
        };
        match res {
            Ok(d) => ca_pem.extend_from_slice(&d),
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    if let Some((reason, m)) = failure {
        ir.unresolved = Some((reason, m));
        ir.not_accepted = Some((
            Reason::NoValidCaCertificate,
            "client certificate validation has no valid CA certificate".into(),
        ));
        return None;
    }
    Some(ClientValidation {
        ca_pem,
        allow_insecure_fallback: v.mode.as_deref() == Some("AllowInsecureFallback"),
    })
}

/// Resolves a certificate reference to a usable `kubernetes.io/tls` Secret.
pub(crate) fn resolve_secret(
    lookup: &InputLookup<'_>,
    from: (&str, &str, &str),
    r: &ObjectReference,
) -> Result<Certificate, (Reason, String)> {
    let group = r.group.as_deref().unwrap_or("");
    let kind = r.kind.as_deref().unwrap_or("Secret");
    if !group.is_empty() || kind != "Secret" {
        return Err((
            Reason::InvalidKind,
            format!("certificate reference {group}/{kind} is not a Secret"),
        ));
    }
    let ns = r.namespace.as_deref().unwrap_or(from.2);
    if !lookup.grant_allows(from, ("", "Secret", ns, &r.name)) {
        return Err((
            Reason::RefNotPermitted,
            format!("no ReferenceGrant allows Secret {ns}/{}", r.name),
        ));
    }
    let Some(secret) = lookup.secret(ns, &r.name) else {
        return Err((
            Reason::InvalidCertificateRef,
            format!("Secret {ns}/{} not found", r.name),
        ));
    };
    let (Some(cert), Some(key)) = (secret.data.get("tls.crt"), secret.data.get("tls.key")) else {
        return Err((
            Reason::InvalidCertificateRef,
            format!("Secret {ns}/{} has no tls.crt and tls.key", r.name),
        ));
    };
    if !parses_certificates(cert) || PrivateKeyDer::from_pem_slice(key).is_err() {
        return Err((
            Reason::InvalidCertificateRef,
            format!(
                "Secret {ns}/{} does not hold a PEM certificate and key",
                r.name
            ),
        ));
    }
    Ok(Certificate {
        secret: ObjectKey {
            kind: Kind::Secret,
            namespace: ns.into(),
            name: r.name.clone(),
        },
        cert_pem: cert.clone(),
        key_pem: key.clone(),
    })
}

/// Whether the bytes hold at least one PEM certificate and nothing malformed.
pub(crate) fn parses_certificates(pem: &[u8]) -> bool {
    let mut n = 0;
    for c in CertificateDer::pem_slice_iter(pem) {
        if c.is_err() {
            return false;
        }
        n += 1;
    }
    n > 0
}
