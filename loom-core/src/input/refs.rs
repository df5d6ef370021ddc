//! Which Secrets and ConfigMaps the configuration names, so that an adapter can fetch exactly
//! those (a cluster's other Secrets are none of Loom's business).

use std::collections::BTreeSet;

use super::{Input, Kind, Listener, ObjectKey, ObjectReference};

impl Input {
    /// Every Secret and ConfigMap a Gateway, ListenerSet or BackendTLSPolicy refers to:
    /// listener certificates, frontend client-validation CAs, the backend client
    /// certificate, BackendTLSPolicy CAs. Whether the reference is allowed (ReferenceGrant)
    /// is the compiler's question; this is a superset.
    pub fn referenced_secrets_and_config_maps(&self) -> BTreeSet<ObjectKey> {
        let mut out = BTreeSet::new();
        let mut add = |r: &ObjectReference, from_ns: &str, default_kind: Kind| {
            if !r.group.as_deref().unwrap_or("").is_empty() {
                return;
            }
            let kind = match r.kind.as_deref() {
                None => default_kind,
                Some("Secret") => Kind::Secret,
                Some("ConfigMap") => Kind::ConfigMap,
                Some(_) => return,
            };
            out.insert(ObjectKey {
                kind,
                namespace: r.namespace.clone().unwrap_or_else(|| from_ns.to_owned()),
                name: r.name.clone(),
            });
        };
        fn listeners(ls: &[Listener], ns: &str, add: &mut dyn FnMut(&ObjectReference, &str, Kind)) {
            for r in ls
                .iter()
                .filter_map(|l| l.tls.as_ref())
                .flat_map(|t| &t.certificate_refs)
            {
                add(r, ns, Kind::Secret);
            }
        }
        for g in &self.gateways {
            let ns = g.metadata.namespace_or_default();
            listeners(&g.spec.listeners, ns, &mut add);
            let Some(tls) = &g.spec.tls else { continue };
            if let Some(r) = tls
                .backend
                .as_ref()
                .and_then(|b| b.client_certificate_ref.as_ref())
            {
                add(r, ns, Kind::Secret);
            }
            if let Some(f) = &tls.frontend {
                let configs = f.default.iter().chain(f.per_port.iter().map(|p| &p.tls));
                for r in configs
                    .filter_map(|c| c.validation.as_ref())
                    .flat_map(|v| &v.ca_certificate_refs)
                {
                    add(r, ns, Kind::ConfigMap);
                }
            }
        }
        for s in &self.listener_sets {
            listeners(
                &s.spec.listeners,
                s.metadata.namespace_or_default(),
                &mut add,
            );
        }
        for p in &self.backend_tls_policies {
            let ns = p.metadata.namespace_or_default();
            for r in &p.spec.validation.ca_certificate_refs {
                let r = ObjectReference {
                    group: Some(r.group.clone()),
                    kind: Some(r.kind.clone()),
                    name: r.name.clone(),
                    namespace: None,
                };
                add(&r, ns, Kind::ConfigMap);
            }
        }
        // A WASMPlugin's registry credentials.
        for p in &self.wasm_plugins {
            if let Some(name) = &p.spec.image_pull_secret {
                out.insert(ObjectKey {
                    kind: Kind::Secret,
                    namespace: p.metadata.namespace_or_default().into(),
                    name: name.clone(),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::load::load_str;

    use super::*;

    #[test]
    fn every_kind_of_reference_is_found() {
        let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: loom
  listeners:
  - name: https
    port: 443
    protocol: HTTPS
    tls:
      certificateRefs: [{name: cert}, {name: other-ns, namespace: certs}, {group: x.io, kind: Vault, name: no}]
  tls:
    backend: {clientCertificateRef: {name: client}}
    frontend:
      default: {validation: {caCertificateRefs: [{kind: ConfigMap, group: "", name: ca}]}}
      perPort: [{port: 443, tls: {validation: {caCertificateRefs: [{kind: Secret, group: "", name: ca-secret}]}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: ls, namespace: apps}
spec:
  parentRef: {name: gw, namespace: infra}
  listeners:
  - {name: x, port: 8443, protocol: HTTPS, tls: {certificateRefs: [{name: ls-cert}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {name: p, namespace: apps}
spec:
  targetRefs: [{group: "", kind: Service, name: svc}]
  validation: {hostname: a.example.com, caCertificateRefs: [{group: "", kind: ConfigMap, name: backend-ca}]}
---
apiVersion: gateway.loom.dev/v1alpha1
kind: WASMPlugin
metadata: {name: auth, namespace: apps}
spec:
  targetRef: {group: gateway.networking.k8s.io, kind: Gateway, name: gw}
  url: oci://registry.example.com/auth:v1
  imagePullSecret: registry-creds
"#;
        let loaded = load_str("refs.yaml", yaml);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let input = Input::from_objects(loaded.objects.into_iter().map(|(_, o)| o));
        let key = |kind, ns: &str, name: &str| ObjectKey {
            kind,
            namespace: ns.into(),
            name: name.into(),
        };
        let want: BTreeSet<ObjectKey> = [
            key(Kind::Secret, "infra", "cert"),
            key(Kind::Secret, "certs", "other-ns"),
            key(Kind::Secret, "infra", "client"),
            key(Kind::ConfigMap, "infra", "ca"),
            key(Kind::Secret, "infra", "ca-secret"),
            key(Kind::Secret, "apps", "ls-cert"),
            key(Kind::ConfigMap, "apps", "backend-ca"),
            key(Kind::Secret, "apps", "registry-creds"),
        ]
        .into();
        assert_eq!(input.referenced_secrets_and_config_maps(), want);
    }
}
