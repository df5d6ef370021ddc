//! References to Secrets and ConfigMaps: certificate Secrets and PEM parsing.

use super::lookup::InputLookup;
use crate::input::*;
use crate::snapshot::*;
use crate::status::*;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

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
