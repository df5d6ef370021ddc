//! The input's objects by namespace and name, built once and read by every pass.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::Options;
use crate::input::*;

/// The input's objects by namespace and name, the options, and the ReferenceGrant check:
/// built once, read by every pass.
pub(crate) struct InputLookup<'a> {
    pub(crate) input: &'a Input,
    pub(crate) options: &'a Options,
    namespaces: HashMap<&'a str, &'a Namespace>,
    services: HashMap<(&'a str, &'a str), &'a Service>,
    secrets: HashMap<(&'a str, &'a str), &'a Secret>,
    config_maps: HashMap<(&'a str, &'a str), &'a ConfigMap>,
    backends: HashMap<(&'a str, &'a str), &'a Backend>,
    class_configs: HashMap<(&'a str, &'a str), &'a GatewayClassConfig>,
    slices: HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
}

/// The objects not being deleted.
pub(crate) fn live<T>(
    items: &[Arc<T>],
    meta: impl Fn(&T) -> &ObjectMeta,
) -> impl Iterator<Item = &T> {
    items
        .iter()
        .map(|o| &**o)
        .filter(move |o| meta(o).deletion_timestamp.is_none())
}

macro_rules! index {
    ($items:expr) => {
        live($items, |o| &o.metadata)
            .map(|o| {
                (
                    (o.metadata.namespace_or_default(), o.metadata.name.as_str()),
                    o,
                )
            })
            .collect()
    };
}

impl<'a> InputLookup<'a> {
    pub(crate) fn new(input: &'a Input, options: &'a Options) -> Self {
        let mut slices: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for s in live(&input.endpoint_slices, |o| &o.metadata) {
            if let Some(svc) = s.metadata.labels.get("kubernetes.io/service-name") {
                slices
                    .entry((s.metadata.namespace_or_default(), svc.as_str()))
                    .or_default()
                    .push(s);
            }
        }
        for v in slices.values_mut() {
            v.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        }
        InputLookup {
            input,
            options,
            namespaces: live(&input.namespaces, |o| &o.metadata)
                .map(|n| (n.metadata.name.as_str(), n))
                .collect(),
            services: index!(&input.services),
            secrets: index!(&input.secrets),
            config_maps: index!(&input.config_maps),
            backends: index!(&input.backends),
            class_configs: index!(&input.gateway_class_configs),
            slices,
        }
    }

    /// A namespace's labels, with the `kubernetes.io/metadata.name` label Kubernetes adds.
    pub(crate) fn namespace_labels(&self, ns: &str) -> BTreeMap<String, String> {
        let mut labels = self
            .namespaces
            .get(ns)
            .map(|n| n.metadata.labels.clone())
            .unwrap_or_default();
        labels.insert("kubernetes.io/metadata.name".into(), ns.into());
        labels
    }

    pub(crate) fn service(&self, ns: &str, name: &str) -> Option<&'a Service> {
        self.services.get(&(ns, name)).copied()
    }

    pub(crate) fn secret(&self, ns: &str, name: &str) -> Option<&'a Secret> {
        self.secrets.get(&(ns, name)).copied()
    }

    pub(crate) fn config_map(&self, ns: &str, name: &str) -> Option<&'a ConfigMap> {
        self.config_maps.get(&(ns, name)).copied()
    }

    pub(crate) fn backend(&self, ns: &str, name: &str) -> Option<&'a Backend> {
        self.backends.get(&(ns, name)).copied()
    }

    pub(crate) fn class_config(&self, ns: &str, name: &str) -> Option<&'a GatewayClassConfig> {
        self.class_configs.get(&(ns, name)).copied()
    }

    pub(crate) fn endpoint_slices<'s>(
        &'s self,
        ns: &'s str,
        service: &'s str,
    ) -> &'s [&'a EndpointSlice] {
        self.slices.get(&(ns, service)).map_or(&[], Vec::as_slice)
    }

    /// Whether a ReferenceGrant in `to_ns` lets `from` refer to the object.
    pub(crate) fn grant_allows(
        &self,
        from: (&str, &str, &str),
        to: (&str, &str, &str, &str),
    ) -> bool {
        let (from_group, from_kind, from_ns) = from;
        let (to_group, to_kind, to_ns, to_name) = to;
        if from_ns == to_ns {
            return true;
        }
        live(&self.input.reference_grants, |o| &o.metadata)
            .filter(|g| g.metadata.namespace_or_default() == to_ns)
            .any(|g| {
                g.spec
                    .from
                    .iter()
                    .any(|f| f.group == from_group && f.kind == from_kind && f.namespace == from_ns)
                    && g.spec.to.iter().any(|t| {
                        t.group == to_group
                            && t.kind == to_kind
                            && t.name.as_deref().is_none_or(|n| n == to_name)
                    })
            })
    }
}

/// Sorts objects the way the spec breaks ties: oldest first, then namespace/name.
pub(crate) fn by_age<T>(items: &[Arc<T>], meta: impl Fn(&T) -> &ObjectMeta) -> Vec<&T> {
    by_age_shared(items, meta)
        .into_iter()
        .map(|o| &**o)
        .collect()
}

/// [`by_age`], the objects as they are shared.
pub(crate) fn by_age_shared<T>(items: &[Arc<T>], meta: impl Fn(&T) -> &ObjectMeta) -> Vec<&Arc<T>> {
    // Each key once (its timestamp parsed), not once per comparison.
    let mut v: Vec<_> = items
        .iter()
        .filter(|o| meta(o).deletion_timestamp.is_none())
        .map(|o| (meta(o).age_key(), o))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v.into_iter().map(|(_, o)| o).collect()
}

/// Group defaulting: an absent group takes the field's default (the Gateway API group for
/// parentRefs and route kinds, the core group for backendRefs). An explicit `""` is the core
/// group, so a parentRef with `group: ""` names no Gateway.
pub(crate) fn group_or<'s>(group: &'s Option<String>, default: &'s str) -> &'s str {
    group.as_deref().unwrap_or(default)
}
