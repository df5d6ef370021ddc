//! A plain-data description of a snapshot.

use std::time::Duration;

use super::{HttpRule, L4Listener, Snapshot, WeightedBackend};

/// A plain-data description of a snapshot, for `loom check --snapshot`, snapshot tests and
/// debugging: every gateway, port, listener, virtual host and rule in precedence order.
pub fn describe(snapshot: &Snapshot) -> serde_json::Value {
    use serde_json::{Value, json};
    let backends = |bs: &[WeightedBackend]| -> Vec<Value> {
        bs.iter()
            .map(|b| match &b.target {
                Ok(t) => json!({"weight": b.weight, "backend": t.object.to_string(), "port": t.port,
                    "protocol": t.protocol, "endpoints": t.endpoints, "tls": t.tls.as_ref().map(|t| &t.hostname)}),
                Err(why) => json!({"weight": b.weight, "invalid": why.to_string()}),
            })
            .collect()
    };
    let rule = |r: &HttpRule| {
        let mut filters = vec![];
        let f = &r.filters;
        if f.request_headers.is_some() {
            filters.push("RequestHeaderModifier".to_owned());
        }
        if f.response_headers.is_some() {
            filters.push("ResponseHeaderModifier".to_owned());
        }
        if let Some(rd) = &f.redirect {
            filters.push(format!("RequestRedirect({})", rd.status));
        }
        if f.rewrite.is_some() {
            filters.push("URLRewrite".to_owned());
        }
        for m in &f.mirrors {
            filters.push(format!(
                "RequestMirror({} {}/{})",
                m.backend.object, m.numerator, m.denominator
            ));
        }
        if f.cors.is_some() {
            filters.push("CORS".to_owned());
        }
        // WASMPlugins in the order they run, each with its module (or why it has none).
        let plugins: Vec<Value> = r
            .plugins
            .iter()
            .flat_map(|p| p.all())
            .map(|p| json!({"plugin": p.plugin.to_string(), "phase": p.phase, "priority": p.priority,
                "module": p.module.as_ref().map(|d| format!("sha256:{}", d.0)).unwrap_or_else(|why| why.clone())}))
            .collect();
        let mut described = json!({"route": r.route.to_string(), "rule": r.rule_index, "name": r.rule_name, "filters": filters,
            "backends": backends(&r.backends), "invalid": r.invalid.as_ref().map(ToString::to_string), "timeouts": r.timeouts, "retry": r.retry});
        if !plugins.is_empty() {
            described["plugins"] = plugins.into();
        }
        described
    };
    let mut gateways = serde_json::Map::new();
    for (name, g) in &snapshot.gateways {
        let mut ports = serde_json::Map::new();
        for (port, p) in &g.ports {
            let listener = |l: &super::HttpListener| {
                let vhosts: Vec<Value> = l
                        .vhosts
                        .iter()
                        .map(|v| {
                            let http: Vec<Value> = v
                                .http
                                .entries()
                                .map(|(m, r)| json!({"path": format!("{:?}", m.path), "method": m.method.as_ref().map(|m| m.as_str()),
                                    "headers": m.headers.len(), "query": m.query.len(), "then": rule(r)}))
                                .collect();
                            json!({"hostname": v.hostname.as_ref().map(|h| h.to_string()), "http": http, "grpcMatches": v.grpc.len()})
                        })
                        .collect();
                json!({"listener": l.name, "hostname": l.hostname.as_ref().map(|h| h.to_string()), "tls": l.tls.is_some(), "vhosts": vhosts})
            };
            let http: Vec<Value> = p.http_listeners().iter().map(listener).collect();
            let tls: Vec<Value> = p
                .tls_listeners()
                .iter()
                .map(|l| json!({"listener": l.name, "terminate": l.terminate.is_some(),
                    "routes": l.routes.iter().map(|(h, r)| json!({"sni": h.as_ref().map(|h| h.to_string()), "route": r.route.to_string(), "backends": backends(&r.backends)})).collect::<Vec<_>>()}))
                .collect();
            let l4 = |l: Option<&L4Listener>| {
                l.map(|l| json!({"listener": l.name, "route": l.rule.route.to_string(), "backends": backends(&l.rule.backends)}))
            };
            let mut described = json!({"http": http, "tls": tls, "tcp": l4(p.tcp_listener()), "udp": l4(p.udp_listener())});
            if !p.http3_listeners().is_empty() {
                described["http3"] = p.http3_listeners().iter().map(listener).collect();
            }
            if let Some(c) = &p.client {
                // What a ClientTrafficPolicy sets; fields it leaves out are the data plane's
                // defaults (flags), not shown here.
                described["client"] = json!({"policy": c.policy.to_string(), "headerTimeout": c.header_timeout.map(secs),
                    "idleTimeout": c.idle_timeout.map(secs), "maxConnections": c.max_connections});
            }
            ports.insert(port.to_string(), described);
        }
        gateways.insert(
            format!("{}/{}", name.namespace, name.name),
            json!({"addresses": g.addresses, "ports": ports}),
        );
    }
    Value::Object(gateways)
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}
