//! Assembly: the snapshot from the programmed listeners and the routes attached to them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::model::*;
use super::plugins::Plugins;
use super::traffic::{RateLimitTable, TrafficPolicies};
use crate::input::Kind;
use crate::route::host::{HostPattern, most_specific_first};
use crate::route::{
    EntryId, GrpcMatch, GrpcPrecedence, GrpcTable, HttpMatch, HttpPrecedence, HttpTable, RouteOrder,
};
use crate::snapshot::*;

impl Gateways<'_> {
    /// Builds the snapshot from the programmed listeners and the routes attached to them.
    pub(crate) fn snapshot(
        &self,
        attached: &Attached<'_>,
        traffic: &TrafficPolicies,
        plugins: &Plugins,
        mut vhosts: Option<&mut VhostMemo>,
    ) -> Snapshot {
        let mut snapshot = Snapshot::default();
        let mut limits = RateLimitTable::default();
        for (gi, gw) in self.gateways.iter().enumerate() {
            if !self.gateway_accepted(gi) {
                continue;
            }
            let mut ports: BTreeMap<u16, PortBuilder> = BTreeMap::new();
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
                let port = ports.entry(l.port).or_default();
                let mut http = || {
                    let mut limit = RulePolicies {
                        traffic,
                        plugins: (gw.plugins.disabled_by.is_none()).then_some(plugins),
                        table: &mut limits,
                        gateway: &gw.name,
                        listener: (l.owner.kind == Kind::Gateway).then_some(l.spec.name.as_str()),
                        done: HashMap::new(),
                    };
                    build_http_listener(l, li, attached, &mut limit, vhosts.as_deref_mut())
                };
                match l.protocol {
                    Some(Protocol::Http) => port.http.push(http()),
                    Some(Protocol::Https) => {
                        let listener = http();
                        if gw.http3 {
                            port.http3.push(listener.clone());
                        }
                        port.https.push(listener);
                    }
                    Some(Protocol::Http3) => port.http3.push(http()),
                    Some(Protocol::Tls) => port.tls.push(build_tls_listener(l, li, attached)),
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
            let g = GatewaySnapshot {
                addresses: gw.addresses.clone(),
                ports: ports
                    .into_iter()
                    .map(|(port, p)| {
                        let mut built = p.build(port);
                        built.client = traffic.client_settings(&gw.name, port);
                        (port, built)
                    })
                    .collect(),
                backend_client_certificate: gw
                    .backend_client_cert
                    .as_ref()
                    .and_then(|r| r.as_ref().ok())
                    .cloned(),
            };
            snapshot.gateways.insert(gw.name.clone(), g);
        }
        snapshot.rate_limits = limits.all;
        snapshot.plugins = plugins.all();
        snapshot
    }
}

/// The listeners of one port, gathered by protocol.
#[derive(Default)]
struct PortBuilder {
    http: Vec<HttpListener>,
    https: Vec<HttpListener>,
    tls: Vec<TlsListener>,
    tcp: Option<L4Listener>,
    udp: Option<L4Listener>,
    http3: Vec<HttpListener>,
}

impl PortBuilder {
    /// What the port is. Listener conflicts leave one kind of TCP listener on a port: HTTP,
    /// or HTTPS and TLS (the SNI chooses), or one TCP listener; UDP shares any port.
    fn build(self, port: u16) -> PortSnapshot {
        let by_hostname = |a: &Option<HostPattern>, b: &Option<HostPattern>| {
            most_specific_first(a.as_ref(), b.as_ref())
        };
        let PortBuilder {
            mut http,
            mut https,
            mut tls,
            tcp,
            udp,
            mut http3,
        } = self;
        http3.sort_by(|a, b| by_hostname(&a.hostname, &b.hostname));
        http.sort_by(|a, b| by_hostname(&a.hostname, &b.hostname));
        https.sort_by(|a, b| by_hostname(&a.hostname, &b.hostname));
        tls.sort_by(|a, b| by_hostname(&a.hostname, &b.hostname));
        let listeners = if !https.is_empty() || !tls.is_empty() {
            Some(PortListeners::Tls { https, tls })
        } else if !http.is_empty() {
            Some(PortListeners::Http(http))
        } else {
            tcp.map(PortListeners::Tcp)
        };
        PortSnapshot {
            port,
            listeners,
            udp: match udp {
                Some(l4) => Some(UdpListeners::L4(l4)),
                None if !http3.is_empty() => Some(UdpListeners::Http3(http3)),
                None => None,
            },
            client: None,
        }
    }
}

fn build_tls_listener(l: &CheckedListener<'_>, li: usize, attached: &Attached<'_>) -> TlsListener {
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
        most_specific_first(a.0.as_ref(), b.0.as_ref()).then_with(|| a.1.cmp(&b.1))
    });
    TlsListener {
        name: l.spec.name.clone(),
        hostname: l.hostname.clone(),
        terminate: if l.passthrough { None } else { l.tls.clone() },
        routes: routes.into_iter().map(|(h, _, r)| (h, r)).collect(),
    }
}

/// The rate limits and plugins of one listener's rules: a rule a policy limits or a plugin
/// targets gets its own copy carrying them (the same rule on another listener may have
/// others, or none).
struct RulePolicies<'a> {
    traffic: &'a TrafficPolicies,
    /// `None`: the Gateway's GatewayClassConfig turns plugins off.
    plugins: Option<&'a Plugins>,
    table: &'a mut RateLimitTable,
    gateway: &'a GatewayName,
    /// The listener's name, when a Gateway's `sectionName` can name it.
    listener: Option<&'a str>,
    /// Rules already looked at, by address: their copy, if they needed one.
    done: HashMap<*const HttpRule, Option<Arc<HttpRule>>>,
}

impl RulePolicies<'_> {
    /// The rule's copy with the limits and plugins that apply to it here; `None`: the rule as
    /// it is (not cloned: a compile takes most rules as they are, and an `Arc` clone each was
    /// a cache miss each).
    fn rule(&mut self, rule: &Arc<HttpRule>) -> Option<Arc<HttpRule>> {
        if !self.traffic.limit_any() && !self.plugins.is_some_and(Plugins::target_any) {
            return None; // nothing to look up (nor to remember) for any rule
        }
        if let Some(r) = self.done.get(&Arc::as_ptr(rule)) {
            return r.clone();
        }
        let limit = self.traffic.rate_limit(
            self.table,
            self.gateway,
            self.listener,
            &rule.route,
            rule.rule_name.as_deref(),
        );
        let plugins = self
            .plugins
            .map(|p| {
                p.for_rule(
                    self.gateway,
                    self.listener,
                    &rule.route,
                    rule.rule_name.as_deref(),
                )
            })
            .and_then(RulePlugins::new);
        let limited = match (limit, plugins) {
            (None, None) => None,
            (limit, plugins) => Some(Arc::new(HttpRule {
                rate_limit: limit,
                plugins: plugins.map(Arc::new),
                ..HttpRule::clone(rule)
            })),
        };
        self.done.insert(Arc::as_ptr(rule), limited.clone());
        limited
    }
}

/// The virtual hosts of the last compile, by listener, each with the rules it was built from
/// (their addresses, in the order they came: a rule's `Arc` is one compiled rule, and the
/// virtual host holds it, so the address stays its own). Valid only while nothing but routes
/// changed (listener indices are the same).
#[derive(Default)]
pub(crate) struct VhostMemo {
    last: Vhosts,
    next: Vhosts,
}

/// By listener index, the virtual hosts in hostname order, with the addresses of their rules.
type Vhosts = HashMap<usize, Vec<(Box<[usize]>, Arc<VirtualHost>)>>;

impl VhostMemo {
    /// Forgets the virtual hosts the last compile did not build or take.
    pub(crate) fn forget_gone(&mut self) {
        self.last = std::mem::take(&mut self.next);
    }
}

/// The rules of one hostname on a listener, in the order they were attached.
#[derive(Default)]
struct HostRules<'a> {
    http: Vec<HostRule<'a, HttpMatch>>,
    grpc: Vec<HostRule<'a, GrpcMatch>>,
}

/// A rule of a route, and its copy with the policies that apply to it here, if it needs one.
type HostRule<'a, M> = (
    &'a CompiledRoute,
    &'a CompiledRule<M>,
    Option<Arc<HttpRule>>,
);

/// The rule a virtual host serves.
fn served<'r, M>((_, r, copy): &'r HostRule<'_, M>) -> &'r Arc<HttpRule> {
    copy.as_ref().unwrap_or(&r.rule)
}

impl HostRules<'_> {
    /// The rules' addresses, HTTP then gRPC.
    fn signature(&self) -> Box<[usize]> {
        let http = self.http.iter().map(|r| Arc::as_ptr(served(r)).addr());
        let grpc = self.grpc.iter().map(|r| Arc::as_ptr(served(r)).addr());
        http.chain([0]).chain(grpc).collect()
    }

    /// The virtual host, taking from `last` (the last compile's for the same hostname) each
    /// path's entries that are the same ones: a rule's address, which `last` holds, and a
    /// match's index are an entry's id.
    fn build(self, hostname: Option<HostPattern>, last: Option<&VirtualHost>) -> VirtualHost {
        let matches: Vec<_> = each_match(&self.http).collect();
        let offers: Vec<_> = (matches.iter())
            .map(|m| (m.value, EntryId(Arc::as_ptr(m.rule).addr(), m.index)))
            .collect();
        // The order (two strings) only for the entries built again.
        let make = |i: usize| {
            let m = &matches[i];
            (HttpPrecedence::of(m.value, m.order()), m.rule.clone())
        };
        let http = HttpTable::update(last.map(|v| &v.http), &offers, make);
        let grpc = (each_match(&self.grpc))
            .map(|m| {
                (
                    m.value.clone(),
                    GrpcPrecedence::of(m.value, m.order()),
                    m.rule.clone(),
                )
            })
            .collect();
        VirtualHost {
            hostname,
            http,
            grpc: GrpcTable::new(grpc),
        }
    }
}

/// One match of a rule a virtual host serves.
struct RuleMatch<'r, M> {
    route: &'r CompiledRoute,
    compiled: &'r CompiledRule<M>,
    rule: &'r Arc<HttpRule>,
    /// The match's index in its rule.
    index: usize,
    value: &'r M,
}

impl<M> RuleMatch<'_, M> {
    /// Where the match stands in the spec's tiebreak: its route's order, then the rule's
    /// index and the match's.
    fn order(&self) -> RouteOrder {
        RouteOrder {
            match_index: self.index,
            rule: self.compiled.index,
            ..self.route.order.clone()
        }
    }
}

/// Each match of each rule, in order.
fn each_match<'r, M>(rules: &'r [HostRule<'_, M>]) -> impl Iterator<Item = RuleMatch<'r, M>> {
    rules.iter().flat_map(|h| {
        let (route, compiled, _) = *h;
        let rule = served(h);
        (compiled.matches.iter().enumerate()).map(move |(index, value)| RuleMatch {
            route,
            compiled,
            rule,
            index,
            value,
        })
    })
}

fn build_http_listener(
    l: &CheckedListener<'_>,
    li: usize,
    attached: &Attached<'_>,
    limits: &mut RulePolicies<'_>,
    memo: Option<&mut VhostMemo>,
) -> HttpListener {
    // By reference: a hostname is copied only for a virtual host built again.
    let mut hosts: BTreeMap<&Option<HostPattern>, HostRules<'_>> = BTreeMap::new();
    for a in attached.http.iter().filter(|a| a.listener == li) {
        for host in a.hostnames.iter() {
            let rules = hosts.entry(host).or_default();
            for r in &a.route.http {
                rules.http.push((a.route, r, limits.rule(&r.rule)));
            }
            for r in &a.route.grpc {
                rules.grpc.push((a.route, r, limits.rule(&r.rule)));
            }
        }
    }
    let vhosts = match memo {
        None => {
            let build = |(hostname, rules): (&Option<HostPattern>, HostRules<'_>)| {
                Arc::new(rules.build(hostname.clone(), None))
            };
            hosts.into_iter().map(build).collect()
        }
        Some(memo) => {
            // Both in hostname order: a merge walk.
            let mut last = memo
                .last
                .remove(&li)
                .unwrap_or_default()
                .into_iter()
                .peekable();
            let mut kept = Vec::with_capacity(hosts.len());
            for (hostname, rules) in hosts {
                while last.next_if(|(_, v)| v.hostname < *hostname).is_some() {}
                let signature = rules.signature();
                let vhost = match last.next_if(|(_, v)| v.hostname == *hostname) {
                    Some((was, vhost)) if was == signature => vhost,
                    Some((_, vhost)) => Arc::new(rules.build(hostname.clone(), Some(&vhost))),
                    None => Arc::new(rules.build(hostname.clone(), None)),
                };
                kept.push((signature, vhost));
            }
            let vhosts = kept.iter().map(|(_, v)| v.clone()).collect();
            memo.next.insert(li, kept);
            vhosts
        }
    };
    HttpListener::new(
        l.spec.name.clone(),
        l.owner.clone(),
        l.hostname.clone(),
        l.tls.clone(),
        vhosts,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{Kind, ObjectKey};

    fn key(name: &str) -> ObjectKey {
        ObjectKey {
            kind: Kind::Gateway,
            namespace: "default".into(),
            name: name.into(),
        }
    }

    fn host(h: &str) -> Option<HostPattern> {
        Some(HostPattern::parse(h).unwrap())
    }

    fn http(name: &str, hostname: Option<HostPattern>, tls: bool) -> HttpListener {
        let tls = tls.then(ServerTls::default);
        HttpListener::new(name.into(), key("gw"), hostname, tls, vec![])
    }

    fn l4(name: &str) -> L4Listener {
        L4Listener {
            name: name.into(),
            rule: Arc::new(L4Rule {
                route: key("route"),
                backends: vec![],
            }),
        }
    }

    fn names(listeners: &[HttpListener]) -> Vec<&str> {
        listeners.iter().map(|l| l.name.as_str()).collect()
    }

    #[test]
    fn a_port_is_http_most_specific_hostname_first() {
        let port = PortBuilder {
            http: vec![
                http("any", None, false),
                http("wild", host("*.example.com"), false),
                http("exact", host("a.example.com"), false),
            ],
            ..Default::default()
        }
        .build(80);
        let Some(PortListeners::Http(listeners)) = &port.listeners else {
            panic!("{port:?}");
        };
        assert_eq!(names(listeners), ["exact", "wild", "any"]);
        assert!(port.tls_listeners().is_empty() && port.tcp_listener().is_none());
    }

    #[test]
    fn https_and_tls_listeners_share_a_tls_port() {
        let passthrough = TlsListener {
            name: "passthrough".into(),
            hostname: host("db.example.com"),
            terminate: None,
            routes: vec![],
        };
        let port = PortBuilder {
            https: vec![http("web", host("*.example.com"), true)],
            tls: vec![passthrough],
            udp: Some(l4("quic")),
            ..Default::default()
        }
        .build(443);
        let Some(PortListeners::Tls { https, tls }) = &port.listeners else {
            panic!("{port:?}");
        };
        assert_eq!(names(https), ["web"]);
        assert_eq!(tls[0].name, "passthrough");
        assert_eq!(names(port.http_listeners()), ["web"]);
        assert_eq!(port.udp_listener().map(|l| l.name.as_str()), Some("quic"));
        // HTTPS alone is a TLS port too.
        let port = PortBuilder {
            https: vec![http("web", None, true)],
            ..Default::default()
        }
        .build(443);
        assert!(matches!(&port.listeners, Some(PortListeners::Tls { tls, .. }) if tls.is_empty()));
    }

    #[test]
    fn a_tcp_port_has_its_route_and_a_udp_only_port_has_no_tcp_side() {
        let port = PortBuilder {
            tcp: Some(l4("db")),
            udp: Some(l4("dns")),
            ..Default::default()
        }
        .build(53);
        assert_eq!(port.tcp_listener().map(|l| l.name.as_str()), Some("db"));
        let port = PortBuilder {
            udp: Some(l4("dns")),
            ..Default::default()
        }
        .build(53);
        assert!(port.listeners.is_none());
        assert!(port.http_listeners().is_empty());
        // A TCP listener no route attached to serves nothing yet.
        let port = PortBuilder::default().build(9000);
        assert!(port.listeners.is_none() && port.udp.is_none());
    }
}
