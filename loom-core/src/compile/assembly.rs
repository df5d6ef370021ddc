//! Assembly: the snapshot from the programmed listeners and the routes attached to them.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::model::*;
use crate::route::host::{HostPattern, most_specific_first};
use crate::route::{GrpcPrecedence, GrpcTable, HttpPrecedence, HttpTable, RouteOrder};
use crate::snapshot::*;

impl Gateways<'_> {
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
