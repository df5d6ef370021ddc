//! References to Secrets and ConfigMaps: certificates and CA bundles, and PEM parsing.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::error::{CaRefError, SecretRefError};
use super::lookup::InputLookup;
use crate::input::*;
use crate::snapshot::Certificate;

/// Resolves a certificate reference to a usable `kubernetes.io/tls` Secret.
pub(crate) fn resolve_secret(
    lookup: &InputLookup<'_>,
    from: (&str, &str, &str),
    r: &ObjectReference,
) -> Result<Certificate, SecretRefError> {
    let group = r.group.as_deref().unwrap_or("");
    let kind = r.kind.as_deref().unwrap_or("Secret");
    if !group.is_empty() || kind != "Secret" {
        return Err(SecretRefError::NotASecret {
            group: group.into(),
            kind: kind.into(),
        });
    }
    let ns = r.namespace.as_deref().unwrap_or(from.2);
    let (namespace, name) = (ns.to_owned(), r.name.clone());
    if !lookup.grant_allows(from, ("", "Secret", ns, &r.name)) {
        return Err(SecretRefError::NotPermitted { namespace, name });
    }
    let Some(secret) = lookup.secret(ns, &r.name) else {
        return Err(SecretRefError::NotFound { namespace, name });
    };
    let (Some(cert), Some(key)) = (secret.data.get("tls.crt"), secret.data.get("tls.key")) else {
        return Err(SecretRefError::MissingKeys { namespace, name });
    };
    if !parses_certificates(cert) || PrivateKeyDer::from_pem_slice(key).is_err() {
        return Err(SecretRefError::NotPem { namespace, name });
    }
    Ok(Certificate {
        secret: ObjectKey {
            kind: Kind::Secret,
            namespace,
            name,
        },
        cert_pem: cert.clone(),
        key_pem: key.clone(),
    })
}

/// Resolves a Gateway's `caCertificateRef` (frontend client validation) to the PEM bundle in
/// a ConfigMap's or Secret's `ca.crt`.
pub(crate) fn resolve_ca_certificate(
    lookup: &InputLookup<'_>,
    gateway_namespace: &str,
    r: &ObjectReference,
) -> Result<Vec<u8>, CaRefError> {
    let kind = r.kind.as_deref().unwrap_or("ConfigMap");
    let group = r.group.as_deref().unwrap_or("");
    let ns = r.namespace.as_deref().unwrap_or(gateway_namespace);
    if !group.is_empty() || !matches!(kind, "ConfigMap" | "Secret") {
        return Err(CaRefError::UnsupportedKind {
            group: group.into(),
            kind: kind.into(),
        });
    }
    let (kind_, namespace, name) = (kind.to_owned(), ns.to_owned(), r.name.clone());
    let from = (GATEWAY_GROUP, "Gateway", gateway_namespace);
    if !lookup.grant_allows(from, ("", kind, ns, &r.name)) {
        return Err(CaRefError::NotPermitted {
            kind: kind_,
            namespace,
            name,
        });
    }
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
        Some(_) => Err(CaRefError::Invalid {
            kind: kind_,
            namespace,
            name,
        }),
        None => Err(CaRefError::Missing {
            kind: kind_,
            namespace,
            name,
        }),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::Options;
    use crate::load::load_str;
    use crate::status::Reason;

    fn input(yaml: &str) -> Input {
        let loaded = load_str("test.yaml", yaml);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let mut input = Input::default();
        for (_, object) in loaded.objects {
            input.upsert(object);
        }
        input
    }

    fn ca_ref(kind: Option<&str>, namespace: Option<&str>, name: &str) -> ObjectReference {
        ObjectReference {
            group: None,
            kind: kind.map(Into::into),
            name: name.into(),
            namespace: namespace.map(Into::into),
        }
    }

    #[test]
    fn nothing_but_pem_certificates_parse() {
        assert!(!parses_certificates(b""));
        assert!(!parses_certificates(b"not a certificate"));
        assert!(!parses_certificates(
            b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n"
        ));
    }

    #[test]
    fn a_ca_certificate_reference_says_why_it_does_not_resolve() {
        let input = input(
            r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: garbage, namespace: infra}
data: {ca.crt: "not a certificate"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: elsewhere, namespace: other}
data: {ca.crt: "not a certificate"}
"#,
        );
        let options = Options::default();
        let lookup = InputLookup::new(&input, &options);
        let resolve = |r| resolve_ca_certificate(&lookup, "infra", &r).unwrap_err();
        assert_eq!(
            resolve(ca_ref(Some("Service"), None, "svc")).to_string(),
            "caCertificateRef kind /Service is not supported"
        );
        assert_eq!(
            resolve(ca_ref(None, Some("other"), "elsewhere")).reason(),
            Reason::RefNotPermitted
        );
        assert_eq!(
            resolve(ca_ref(None, None, "garbage")).to_string(),
            "ConfigMap infra/garbage has no valid ca.crt"
        );
        assert_eq!(
            resolve(ca_ref(Some("Secret"), None, "absent")).to_string(),
            "Secret infra/absent not found or has no ca.crt"
        );
    }
}
