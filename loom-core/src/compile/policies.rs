//! Policies: BackendTLSPolicies validated, conflicts settled (GEP-713: the older policy wins)
//! (Loom's traffic policies are in `traffic`, WASMPlugins in `plugins`).

use super::error::BackendTlsPolicyError;
use super::lookup::{InputLookup, by_age};
use super::model::*;
use super::references::parses_certificates;
use crate::input::*;
use crate::snapshot::*;

pub(crate) fn backend_tls_policies(lookup: &InputLookup<'_>) -> TlsPolicies {
    let mut policies: Vec<TlsPolicy> = vec![];
    for p in by_age(&lookup.input.backend_tls_policies, |p| &p.metadata) {
        let ns = p.metadata.namespace_or_default();
        let key = ObjectKey {
            kind: Kind::BackendTlsPolicy,
            namespace: ns.into(),
            name: p.metadata.name.clone(),
        };
        let targets: Vec<(String, Option<String>)> = p
            .spec
            .target_refs
            .iter()
            .filter(|t| t.group.is_empty() && t.kind == "Service")
            .map(|t| (t.name.clone(), t.section_name.clone()))
            .collect();
        let v = &p.spec.validation;
        let mut ca_pem = vec![];
        let mut failure = None;
        for r in &v.ca_certificate_refs {
            if !r.group.is_empty() || r.kind != "ConfigMap" {
                failure.get_or_insert(BackendTlsPolicyError::UnsupportedCaKind {
                    group: r.group.clone(),
                    kind: r.kind.clone(),
                });
                continue;
            }
            match lookup
                .config_map(ns, &r.name)
                .and_then(|c| c.data.get("ca.crt"))
            {
                Some(pem) if parses_certificates(pem.as_bytes()) => {
                    ca_pem.extend_from_slice(pem.as_bytes())
                }
                _ => {
                    failure.get_or_insert(BackendTlsPolicyError::InvalidCa {
                        namespace: ns.into(),
                        name: r.name.clone(),
                    });
                }
            }
        }
        let system_roots = v.well_known_ca_certificates.as_deref() == Some("System");
        if v.ca_certificate_refs.is_empty() && !system_roots {
            failure.get_or_insert(BackendTlsPolicyError::NoCaCertificates);
        }
        let validity = match failure {
            Some(f) => Err(f),
            None => Ok(BackendTls {
                policy: key.clone(),
                hostname: v.hostname.clone(),
                ca_pem,
                system_roots,
                subject_alt_names: v
                    .subject_alt_names
                    .iter()
                    .filter_map(|s| s.hostname.clone().or_else(|| s.uri.clone()))
                    .collect(),
            }),
        };
        // GEP-713: the older policy wins a target (Service + sectionName) they share.
        let conflicted = policies.iter().any(|older| {
            older.key.namespace == ns && older.targets.iter().any(|t| targets.contains(t))
        });
        policies.push(TlsPolicy {
            key,
            generation: p.metadata.generation(),
            targets,
            validity,
            conflicted,
        });
    }
    TlsPolicies { policies }
}
