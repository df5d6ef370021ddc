//! The limits Gateway API's CRDs set (`maxItems`, `maxLength` in v1.6.1's `apis/v1`), enforced
//! on files as the API server enforces them on `kubectl apply`, in its words (the messages of
//! Kubernetes' `field.TooMany` and `field.TooLong`), so that a file Loom serves would also be
//! accepted by a cluster.

use crate::input::Object;

/// A field over a limit: its dotted path and what the API server would say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OverLimit {
    pub(crate) field: String,
    pub(crate) message: String,
}

fn too_many(field: String, n: usize, max: usize) -> Option<OverLimit> {
    (n > max).then(|| OverLimit {
        field,
        message: format!("Too many: {n}: must have at most {max} items"),
    })
}

fn too_long(field: String, s: &str, max: usize) -> Option<OverLimit> {
    (s.len() > max).then(|| OverLimit {
        field,
        message: format!("Too long: may not be more than {max} bytes"),
    })
}

/// RFC 1123 names (hostnames) have at most this many bytes.
const HOSTNAME: usize = 253;

/// The limits HTTPRoute and GRPCRoute share; `rules` are each rule's numbers of matches,
/// filters and backendRefs.
fn route_limits(
    over: &mut Vec<Option<OverLimit>>,
    parent_refs: usize,
    hostnames: &[String],
    rules: impl ExactSizeIterator<Item = (usize, usize, usize)>,
) {
    over.push(too_many("spec.parentRefs".into(), parent_refs, 32));
    over.push(too_many("spec.hostnames".into(), hostnames.len(), 16));
    for (i, h) in hostnames.iter().enumerate() {
        over.push(too_long(format!("spec.hostnames[{i}]"), h, HOSTNAME));
    }
    over.push(too_many("spec.rules".into(), rules.len(), 16));
    for (i, (matches, filters, backend_refs)) in rules.enumerate() {
        let at = |f: &str| format!("spec.rules[{i}].{f}");
        over.push(too_many(at("matches"), matches, 64));
        over.push(too_many(at("filters"), filters, 16));
        over.push(too_many(at("backendRefs"), backend_refs, 16));
    }
}

/// The first field of `object` over its CRD's limit, if any.
pub(crate) fn first_over_limit(object: &Object) -> Option<OverLimit> {
    let mut over = vec![];
    match object {
        Object::HttpRoute(r) => {
            let s = &r.spec;
            let rules = s
                .rules
                .iter()
                .map(|r| (r.matches.len(), r.filters.len(), r.backend_refs.len()));
            route_limits(&mut over, s.parent_refs.len(), &s.hostnames, rules);
        }
        Object::GrpcRoute(r) => {
            let s = &r.spec;
            let rules = s
                .rules
                .iter()
                .map(|r| (r.matches.len(), r.filters.len(), r.backend_refs.len()));
            route_limits(&mut over, s.parent_refs.len(), &s.hostnames, rules);
            for (i, rule) in s.rules.iter().enumerate() {
                for (j, m) in rule.matches.iter().enumerate() {
                    let field = format!("spec.rules[{i}].matches[{j}].headers");
                    over.push(too_many(field, m.headers.len(), 16));
                }
            }
        }
        Object::Gateway(g) => {
            let s = &g.spec;
            over.push(too_many("spec.listeners".into(), s.listeners.len(), 64));
            over.push(too_many("spec.addresses".into(), s.addresses.len(), 16));
            for (i, l) in s.listeners.iter().enumerate() {
                if let Some(h) = &l.hostname {
                    over.push(too_long(
                        format!("spec.listeners[{i}].hostname"),
                        h,
                        HOSTNAME,
                    ));
                }
            }
        }
        _ => {}
    }
    over.into_iter().flatten().next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Kind;

    /// The object as a cluster would hold it (not through `load_str`, which refuses it).
    fn over(yaml: &str) -> Option<OverLimit> {
        let value: serde_json::Value = serde_saphyr::from_str(yaml).unwrap();
        let kind = match value["kind"].as_str() {
            Some("Gateway") => Kind::Gateway,
            _ => Kind::HttpRoute,
        };
        first_over_limit(&crate::load::from_value(kind, value).unwrap())
    }

    fn route(rules: usize, hostname: &str) -> String {
        let rules: String = (0..rules)
            .map(|_| "  - backendRefs: [{name: s, port: 80}]\n")
            .collect();
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: ns}}\nspec:\n  hostnames: [{hostname}]\n  rules:\n{rules}"
        )
    }

    #[test]
    fn sixteen_rules_are_fine_and_seventeen_too_many() {
        assert_eq!(over(&route(16, "a.example.com")), None);
        assert_eq!(
            over(&route(17, "a.example.com")),
            Some(OverLimit {
                field: "spec.rules".into(),
                message: "Too many: 17: must have at most 16 items".into(),
            })
        );
    }

    #[test]
    fn a_hostname_over_253_bytes_is_too_long() {
        let long = format!("{}.example.com", "a".repeat(250));
        assert_eq!(
            over(&route(1, &long)),
            Some(OverLimit {
                field: "spec.hostnames[0]".into(),
                message: "Too long: may not be more than 253 bytes".into(),
            })
        );
    }

    #[test]
    fn a_gateway_with_65_listeners_has_too_many() {
        let listeners: String = (0..65)
            .map(|i| format!("  - {{name: l{i}, port: {}, protocol: HTTP}}\n", 1000 + i))
            .collect();
        let yaml = format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: g, namespace: ns}}\nspec:\n  gatewayClassName: loom\n  listeners:\n{listeners}"
        );
        assert_eq!(over(&yaml).map(|o| o.field), Some("spec.listeners".into()));
    }
}
