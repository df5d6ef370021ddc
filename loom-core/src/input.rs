//! The input model: plain serde types for the Gateway API objects (v1.6.1, standard and
//! experimental channel), the core Kubernetes objects the compiler needs, and Loom's own kinds.
//!
//! [`Input`] is the whole world, level-triggered: the Kubernetes adapter and the file loader both
//! build one and hand it to [`compile`](crate::compile). Fields mirror the API (`camelCase`);
//! anything the compiler does not read is ignored when deserializing. A field is documented
//! where its name and the API reference do not say it all (not `metadata`, `spec`, `name`, ...).

#![allow(
    missing_docs,
    reason = "fields mirror the Gateway API and Kubernetes schemas; docs restating names are noise"
)]

mod core;
mod gateway;
mod loom;
mod meta;
mod policy;
mod refs;
mod route;

pub use self::{core::*, gateway::*, loom::*, meta::*, policy::*, route::*};

use std::fmt;
use std::sync::Arc;

/// The API group of the Gateway API.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
/// The API group of Loom's own kinds.
pub const LOOM_GROUP: &str = "gateway.loom.dev";

/// Every object kind Loom reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[allow(missing_docs)]
pub enum Kind {
    GatewayClass,
    Gateway,
    ListenerSet,
    HttpRoute,
    GrpcRoute,
    TlsRoute,
    TcpRoute,
    UdpRoute,
    ReferenceGrant,
    BackendTlsPolicy,
    Namespace,
    Service,
    EndpointSlice,
    Secret,
    ConfigMap,
    GatewayClassConfig,
    RateLimitPolicy,
    CircuitBreakerPolicy,
    ClientTrafficPolicy,
    WasmPlugin,
    Backend,
}

impl Kind {
    /// Every kind, in the order they are listed in status output.
    pub const ALL: [Kind; 21] = [
        Kind::GatewayClass,
        Kind::Gateway,
        Kind::ListenerSet,
        Kind::HttpRoute,
        Kind::GrpcRoute,
        Kind::TlsRoute,
        Kind::TcpRoute,
        Kind::UdpRoute,
        Kind::ReferenceGrant,
        Kind::BackendTlsPolicy,
        Kind::Namespace,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::Secret,
        Kind::ConfigMap,
        Kind::GatewayClassConfig,
        Kind::RateLimitPolicy,
        Kind::CircuitBreakerPolicy,
        Kind::ClientTrafficPolicy,
        Kind::WasmPlugin,
        Kind::Backend,
    ];

    /// The kind's name as written in `kind:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::GatewayClass => "GatewayClass",
            Kind::Gateway => "Gateway",
            Kind::ListenerSet => "ListenerSet",
            Kind::HttpRoute => "HTTPRoute",
            Kind::GrpcRoute => "GRPCRoute",
            Kind::TlsRoute => "TLSRoute",
            Kind::TcpRoute => "TCPRoute",
            Kind::UdpRoute => "UDPRoute",
            Kind::ReferenceGrant => "ReferenceGrant",
            Kind::BackendTlsPolicy => "BackendTLSPolicy",
            Kind::Namespace => "Namespace",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Secret => "Secret",
            Kind::ConfigMap => "ConfigMap",
            Kind::GatewayClassConfig => "GatewayClassConfig",
            Kind::RateLimitPolicy => "RateLimitPolicy",
            Kind::CircuitBreakerPolicy => "CircuitBreakerPolicy",
            Kind::ClientTrafficPolicy => "ClientTrafficPolicy",
            Kind::WasmPlugin => "WASMPlugin",
            Kind::Backend => "Backend",
        }
    }

    /// The API group (`""` for the core group).
    pub fn group(self) -> &'static str {
        match self {
            Kind::Namespace | Kind::Service | Kind::Secret | Kind::ConfigMap => "",
            Kind::EndpointSlice => "discovery.k8s.io",
            Kind::GatewayClassConfig
            | Kind::RateLimitPolicy
            | Kind::CircuitBreakerPolicy
            | Kind::ClientTrafficPolicy
            | Kind::WasmPlugin
            | Kind::Backend => LOOM_GROUP,
            _ => GATEWAY_GROUP,
        }
    }

    /// Whether the kind is a route kind.
    pub fn is_route(self) -> bool {
        matches!(
            self,
            Kind::HttpRoute | Kind::GrpcRoute | Kind::TlsRoute | Kind::TcpRoute | Kind::UdpRoute
        )
    }

    /// Whether objects of this kind live in a namespace.
    pub fn is_namespaced(self) -> bool {
        !matches!(self, Kind::GatewayClass | Kind::Namespace)
    }

    /// Finds the kind for an `apiVersion` and `kind` pair. Older Gateway API versions
    /// (`v1beta1`, `v1alpha2`, `v1alpha3`) and the experimental `XListenerSet` name are accepted.
    pub fn from_api(api_version: &str, kind: &str) -> Option<Kind> {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let kind = match (group, kind) {
            ("gateway.networking.x-k8s.io", "XListenerSet") => return Some(Kind::ListenerSet),
            (_, k) => Kind::ALL.into_iter().find(|c| c.as_str() == k)?,
        };
        (kind.group() == group).then_some(kind)
    }
}

impl serde::Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One object of any kind Loom reads, shared: an [`Input`] holds the same `Arc` (and so
/// does whatever else keeps the object, such as a reloader's cache of parsed documents), so
/// cloning an `Object` never copies the object.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum Object {
    GatewayClass(Arc<GatewayClass>),
    Gateway(Arc<Gateway>),
    ListenerSet(Arc<ListenerSet>),
    HttpRoute(Arc<HttpRoute>),
    GrpcRoute(Arc<GrpcRoute>),
    TlsRoute(Arc<TlsRoute>),
    TcpRoute(Arc<TcpRoute>),
    UdpRoute(Arc<UdpRoute>),
    ReferenceGrant(Arc<ReferenceGrant>),
    BackendTlsPolicy(Arc<BackendTlsPolicy>),
    Namespace(Arc<Namespace>),
    Service(Arc<Service>),
    EndpointSlice(Arc<EndpointSlice>),
    Secret(Arc<Secret>),
    ConfigMap(Arc<ConfigMap>),
    GatewayClassConfig(Arc<GatewayClassConfig>),
    RateLimitPolicy(Arc<RateLimitPolicy>),
    CircuitBreakerPolicy(Arc<CircuitBreakerPolicy>),
    ClientTrafficPolicy(Arc<ClientTrafficPolicy>),
    WasmPlugin(Arc<WasmPlugin>),
    Backend(Arc<Backend>),
}

/// Invokes `$m!` with every kind Loom reads as `Variant => input_list_field` pairs, so the code
/// that must handle every kind (here and in `load`) cannot drift from the list.
macro_rules! with_kinds {
    ($m:ident) => {
        $m! {GatewayClass => gateway_classes, Gateway => gateways, ListenerSet => listener_sets,
        HttpRoute => http_routes, GrpcRoute => grpc_routes, TlsRoute => tls_routes,
        TcpRoute => tcp_routes, UdpRoute => udp_routes, ReferenceGrant => reference_grants,
        BackendTlsPolicy => backend_tls_policies, Namespace => namespaces, Service => services,
        EndpointSlice => endpoint_slices, Secret => secrets, ConfigMap => config_maps,
        GatewayClassConfig => gateway_class_configs, RateLimitPolicy => rate_limit_policies,
        CircuitBreakerPolicy => circuit_breaker_policies,
        ClientTrafficPolicy => client_traffic_policies, WasmPlugin => wasm_plugins,
        Backend => backends}
    };
}
pub(crate) use with_kinds;

macro_rules! object_from {
    ($($k:ident => $f:ident),*) => {$(
        impl From<$k> for Object {
            fn from(o: $k) -> Self {
                Object::$k(Arc::new(o))
            }
        }
    )*};
}
with_kinds!(object_from);

impl Object {
    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        macro_rules! meta {
            ($($k:ident => $f:ident),*) => { match self { $(Object::$k(o) => &o.metadata,)* } };
        }
        with_kinds!(meta)
    }

    /// The object's metadata, mutably (the conformance runner stamps generations and times);
    /// an object shared with others is copied first.
    pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
        macro_rules! meta {
            ($($k:ident => $f:ident),*) => { match self { $(Object::$k(o) => &mut Arc::make_mut(o).metadata,)* } };
        }
        with_kinds!(meta)
    }

    /// A route's `spec.parentRefs`; `None` for kinds that are not routes.
    pub fn parent_refs(&self) -> Option<&[ParentReference]> {
        match self {
            Object::HttpRoute(r) => Some(&r.spec.parent_refs),
            Object::GrpcRoute(r) => Some(&r.spec.parent_refs),
            Object::TlsRoute(r) => Some(&r.spec.parent_refs),
            Object::TcpRoute(r) => Some(&r.spec.parent_refs),
            Object::UdpRoute(r) => Some(&r.spec.parent_refs),
            _ => None,
        }
    }

    /// The object's kind.
    pub fn kind(&self) -> Kind {
        macro_rules! kind {
            ($($k:ident => $f:ident),*) => { match self { $(Object::$k(_) => Kind::$k,)* } };
        }
        with_kinds!(kind)
    }

    /// The object's identity: kind, namespace and name.
    pub fn key(&self) -> ObjectKey {
        ObjectKey::of(self.kind(), self.metadata())
    }

    /// Whether the parts of two versions of an object that bump `metadata.generation` differ
    /// (everything but metadata, for the kinds that have a spec).
    pub fn spec_differs(&self, other: &Object) -> bool {
        let strip = |o: &Object| {
            let mut o = o.clone();
            *o.metadata_mut() = ObjectMeta::default();
            o
        };
        strip(self) != strip(other)
    }
}

/// The identity of an object: kind, namespace (empty for cluster-scoped kinds) and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct ObjectKey {
    /// The kind.
    pub kind: Kind,
    /// The namespace, empty for cluster-scoped kinds.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl ObjectKey {
    /// The key of an object of `kind` with this metadata.
    pub fn of(kind: Kind, meta: &ObjectMeta) -> ObjectKey {
        ObjectKey {
            kind,
            namespace: if kind.is_namespaced() {
                meta.namespace_or_default().to_owned()
            } else {
                String::new()
            },
            name: meta.name.clone(),
        }
    }

    /// Whether `meta` is that of the object this key names (its kind aside).
    fn names(&self, meta: &ObjectMeta) -> bool {
        meta.name == self.name
            && (!self.kind.is_namespaced() || meta.namespace_or_default() == self.namespace)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// The whole world the compiler sees: every object, by kind.
///
/// The order of objects inside a list does not matter: the compiler sorts by
/// (creationTimestamp, namespace, name) wherever the spec gives order a meaning.
///
/// Objects are shared (`Arc`): a [`Compiler`](crate::Compiler) takes an object behind the same
/// `Arc` as in the last compile for unchanged (it holds a clone of the `Arc`, so the object
/// cannot have changed in place).
#[derive(Clone, Debug, Default, PartialEq)]
#[allow(missing_docs)]
pub struct Input {
    pub gateway_classes: Vec<Arc<GatewayClass>>,
    pub gateways: Vec<Arc<Gateway>>,
    pub listener_sets: Vec<Arc<ListenerSet>>,
    pub http_routes: Vec<Arc<HttpRoute>>,
    pub grpc_routes: Vec<Arc<GrpcRoute>>,
    pub tls_routes: Vec<Arc<TlsRoute>>,
    pub tcp_routes: Vec<Arc<TcpRoute>>,
    pub udp_routes: Vec<Arc<UdpRoute>>,
    pub reference_grants: Vec<Arc<ReferenceGrant>>,
    pub backend_tls_policies: Vec<Arc<BackendTlsPolicy>>,
    pub namespaces: Vec<Arc<Namespace>>,
    pub services: Vec<Arc<Service>>,
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
    pub secrets: Vec<Arc<Secret>>,
    pub config_maps: Vec<Arc<ConfigMap>>,
    pub gateway_class_configs: Vec<Arc<GatewayClassConfig>>,
    pub rate_limit_policies: Vec<Arc<RateLimitPolicy>>,
    pub circuit_breaker_policies: Vec<Arc<CircuitBreakerPolicy>>,
    pub client_traffic_policies: Vec<Arc<ClientTrafficPolicy>>,
    pub wasm_plugins: Vec<Arc<WasmPlugin>>,
    pub backends: Vec<Arc<Backend>>,
}

impl Input {
    /// Adds an object, replacing any object with the same kind, namespace and name; an equal
    /// object already there stays as it is (the same `Arc`, which a
    /// [`Compiler`](crate::Compiler) takes for unchanged). Returns the replaced object (for an
    /// equal one, the object passed in).
    pub fn upsert(&mut self, object: Object) -> Option<Object> {
        let key = object.key();
        macro_rules! put {
            ($($k:ident => $field:ident),*) => {
                match object {
                    $(Object::$k(o) => {
                        match self.$field.iter().position(|x| key.names(&x.metadata)) {
                            Some(i) if self.$field[i] == o => Some(Object::$k(o)),
                            Some(i) => {
                                let old = std::mem::replace(&mut self.$field[i], o);
                                Some(Object::$k(old))
                            }
                            None => {
                                self.$field.push(o);
                                None
                            }
                        }
                    })*
                }
            };
        }
        with_kinds!(put)
    }

    /// Removes the object with this key, returning it.
    pub fn remove(&mut self, key: &ObjectKey) -> Option<Object> {
        macro_rules! take {
            ($($k:ident => $field:ident),*) => {
                match key.kind {
                    $(Kind::$k => {
                        let pos = self.$field.iter().position(|o| key.names(&o.metadata))?;
                        Some(Object::$k(self.$field.remove(pos)))
                    })*
                }
            };
        }
        with_kinds!(take)
    }

    /// Finds the object with this key (shared).
    pub fn get(&self, key: &ObjectKey) -> Option<Object> {
        macro_rules! find {
            ($($k:ident => $field:ident),*) => {
                match key.kind {
                    $(Kind::$k => self.$field.iter().find(|o| key.names(&o.metadata)).map(|o| Object::$k(Arc::clone(o))),)*
                }
            };
        }
        with_kinds!(find)
    }

    /// Builds an input from objects in O(n); a later object replaces an earlier one with the
    /// same kind, namespace and name (as a later document does in `kubectl apply`).
    pub fn from_objects(objects: impl IntoIterator<Item = Object>) -> Input {
        let mut slots: Vec<Option<Object>> = Vec::new();
        let mut index: std::collections::HashMap<ObjectKey, usize> =
            std::collections::HashMap::new();
        for o in objects {
            if let Some(old) = index.insert(o.key(), slots.len()) {
                slots[old] = None;
            }
            slots.push(Some(o));
        }
        let mut input = Input::default();
        for o in slots.into_iter().flatten() {
            input.push(o);
        }
        // The lists live as long as the configuration: without the doubling's spare room
        // (up to half of each; 2 MB at 5,000 HTTPRoutes).
        macro_rules! shrink {
            ($($k:ident => $field:ident),*) => { $(input.$field.shrink_to_fit();)* };
        }
        with_kinds!(shrink);
        input
    }

    /// Takes every object equal to one of `other` (same kind, namespace and name) from
    /// `other`: the same `Arc`, which a [`Compiler`](crate::Compiler) sees as unchanged (for
    /// an input loaded afresh from files that were loaded before).
    pub fn share_unchanged(&mut self, other: &Input) {
        fn share<T: PartialEq>(
            mine: &mut [Arc<T>],
            theirs: &[Arc<T>],
            meta: impl Fn(&T) -> &ObjectMeta,
        ) {
            let by_name: std::collections::HashMap<(&str, &str), &Arc<T>> = theirs
                .iter()
                .map(|o| {
                    let m = meta(o);
                    ((m.namespace_or_default(), m.name.as_str()), o)
                })
                .collect();
            for o in mine {
                let m = meta(o);
                if let Some(t) = by_name.get(&(m.namespace_or_default(), m.name.as_str()))
                    && **t == *o
                {
                    *o = Arc::clone(t);
                }
            }
        }
        macro_rules! share {
            ($($k:ident => $field:ident),*) => {
                $(share(&mut self.$field, &other.$field, |o| &o.metadata);)*
            };
        }
        with_kinds!(share);
    }

    fn push(&mut self, object: Object) {
        macro_rules! push {
            ($($k:ident => $field:ident),*) => { match object { $(Object::$k(o) => self.$field.push(o),)* } };
        }
        with_kinds!(push)
    }

    /// The key of every object, kind by kind.
    pub fn keys(&self) -> Vec<ObjectKey> {
        Kind::ALL
            .into_iter()
            .flat_map(|k| self.keys_of(k))
            .collect()
    }

    /// The key of every object of one kind, in input order.
    pub fn keys_of(&self, kind: Kind) -> Vec<ObjectKey> {
        macro_rules! keys {
            ($($k:ident => $field:ident),*) => {
                match kind { $(Kind::$k => self.$field.iter().map(|o| ObjectKey::of(kind, &o.metadata)).collect(),)* }
            };
        }
        with_kinds!(keys)
    }

    /// Every object (shared), kind by kind.
    pub fn objects(&self) -> Vec<Object> {
        let mut out = Vec::new();
        macro_rules! all {
            ($($k:ident => $field:ident),*) => {
                $(out.extend(self.$field.iter().map(|o| Object::$k(Arc::clone(o))));)*
            };
        }
        with_kinds!(all);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_resolve_from_api_version() {
        assert_eq!(
            Kind::from_api("gateway.networking.k8s.io/v1", "HTTPRoute"),
            Some(Kind::HttpRoute)
        );
        assert_eq!(
            Kind::from_api("gateway.networking.k8s.io/v1alpha2", "TCPRoute"),
            Some(Kind::TcpRoute)
        );
        assert_eq!(Kind::from_api("v1", "Service"), Some(Kind::Service));
        assert_eq!(Kind::from_api("apps/v1", "Service"), None);
        assert_eq!(
            Kind::from_api("gateway.loom.dev/v1alpha1", "Backend"),
            Some(Kind::Backend)
        );
        assert_eq!(
            Kind::from_api("gateway.loom.dev/v1alpha1", "ClientTrafficPolicy"),
            Some(Kind::ClientTrafficPolicy)
        );
        assert_eq!(Kind::from_api("apps/v1", "Deployment"), None);
    }

    /// A Namespace with the label `v`.
    fn ns(name: &str, v: &str) -> Object {
        let mut n = Namespace::default();
        n.metadata.name = name.into();
        n.metadata.labels.insert("v".into(), v.into());
        Object::from(n)
    }

    #[test]
    fn from_objects_keeps_the_last_of_each_key() {
        let input = Input::from_objects([ns("a", "1"), ns("b", "1"), ns("a", "2")]);
        assert_eq!(input.namespaces.len(), 2);
        let key = ObjectKey {
            kind: Kind::Namespace,
            namespace: String::new(),
            name: "a".into(),
        };
        let Some(Object::Namespace(a)) = input.get(&key) else {
            panic!()
        };
        assert_eq!(a.metadata.labels["v"], "2");
        let mut input = input;
        assert!(input.remove(&key).is_some());
        assert!(input.get(&key).is_none());
    }

    #[test]
    fn share_unchanged_takes_equal_objects_from_the_other_input() {
        let served = Input::from_objects([ns("a", "1"), ns("b", "1")]);
        let mut loaded = Input::from_objects([ns("a", "1"), ns("b", "2"), ns("c", "1")]);
        loaded.share_unchanged(&served);
        assert!(Arc::ptr_eq(&loaded.namespaces[0], &served.namespaces[0]));
        assert!(!Arc::ptr_eq(&loaded.namespaces[1], &served.namespaces[1]));
        assert_eq!(loaded.namespaces[1].metadata.labels["v"], "2");
        assert_eq!(loaded.namespaces.len(), 3);
    }

    #[test]
    fn upsert_replaces_by_key() {
        let mut input = Input::default();
        let mut ns = Namespace::default();
        ns.metadata.name = "a".into();
        assert!(input.upsert(Object::from(ns.clone())).is_none());
        ns.metadata.labels.insert("x".into(), "y".into());
        assert!(input.upsert(Object::from(ns)).is_some());
        assert_eq!(input.namespaces.len(), 1);
        assert_eq!(input.namespaces[0].metadata.labels["x"], "y");
    }
}
