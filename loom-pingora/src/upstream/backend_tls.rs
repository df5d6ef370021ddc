//! TLS towards backends (BackendTLSPolicy) and the Gateway's backend client certificate,
//! as Pingora peer options.
//!
//! The CA bundles and client keys come from the snapshot as PEM; they are parsed once and
//! kept in a small cache keyed by their bytes (not a hash of them: a collision would trust
//! the wrong CA), so a request only looks them up and clones an `Arc`.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};

use loom_core::snapshot::{BackendTls, Certificate};
use pingora::protocols::tls::CaType;
use pingora::utils::tls::{CertKey, WrappedX509, parse_x509};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Entries kept before the cache starts over (configurations rarely hold more).
const CACHE_LIMIT: usize = 256;

struct Cache {
    /// By CA bundle PEM: (parsed bundle, connection-pool group).
    cas: HashMap<Vec<u8>, Trust>,
    /// By certificate PEM: (key PEM, parsed pair).
    keys: HashMap<Vec<u8>, (Vec<u8>, Arc<CertKey>)>,
}

fn cache() -> &'static Mutex<Cache> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    CACHE.get_or_init(|| {
        Mutex::new(Cache {
            cas: HashMap::new(),
            keys: HashMap::new(),
        })
    })
}

/// Certificates Pingora can use: DER that its X.509 parser accepts (it panics on others).
fn certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = vec![];
    for c in CertificateDer::pem_slice_iter(pem) {
        let der = c.map_err(|e| format!("PEM: {e}"))?;
        x509_parser::parse_x509_certificate(&der).map_err(|e| format!("certificate: {e}"))?;
        out.push(der.to_vec());
    }
    if out.is_empty() {
        return Err("no certificate in the PEM".into());
    }
    Ok(out)
}

/// What a backend connection trusts.
#[derive(Clone)]
pub(crate) struct Trust {
    /// The CA bundle; `None` means the system roots.
    pub(crate) ca: Option<Arc<CaType>>,
    /// Pingora's connection pool does not key connections by CA: without a group of their
    /// own, a connection verified against one policy's CA would be reused for another
    /// policy's backend at the same address and SNI.
    pub(crate) group: u64,
}

/// The trust of a BackendTLSPolicy.
pub(crate) fn trust(tls: &BackendTls) -> Result<Trust, String> {
    if tls.system_roots && tls.ca_pem.is_empty() {
        return Ok(Trust { ca: None, group: 1 });
    }
    let mut c = cache().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(t) = c.cas.get(&tls.ca_pem) {
        return Ok(t.clone());
    }
    let certs: Vec<WrappedX509> = certificates(&tls.ca_pem)?
        .into_iter()
        .map(|der| WrappedX509::new(der, parse_x509))
        .collect();
    let mut h = DefaultHasher::new();
    tls.ca_pem.hash(&mut h);
    let t = Trust {
        ca: Some(Arc::from(certs.into_boxed_slice())),
        group: h.finish() | 2,
    };
    if c.cas.len() >= CACHE_LIMIT {
        c.cas.clear();
    }
    c.cas.insert(tls.ca_pem.clone(), t.clone());
    Ok(t)
}

/// The client certificate and key a Gateway presents to TLS backends.
pub(crate) fn client_cert(cert: &Certificate) -> Result<Arc<CertKey>, String> {
    let mut c = cache().lock().unwrap_or_else(|p| p.into_inner());
    if let Some((key_pem, k)) = c.keys.get(&cert.cert_pem)
        && *key_pem == cert.key_pem
    {
        return Ok(k.clone());
    }
    let chain = certificates(&cert.cert_pem)?;
    let private = PrivateKeyDer::from_pem_slice(&cert.key_pem)
        .map_err(|e| format!("{}: key: {e}", cert.secret))?;
    let certkey = Arc::new(CertKey::new(chain, private.secret_der().to_vec()));
    if c.keys.len() >= CACHE_LIMIT {
        c.keys.clear();
    }
    c.keys.insert(
        cert.cert_pem.clone(),
        (cert.key_pem.clone(), certkey.clone()),
    );
    Ok(certkey)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(ca_pem: Vec<u8>, system_roots: bool) -> BackendTls {
        BackendTls {
            policy: loom_core::input::ObjectKey {
                kind: loom_core::input::Kind::BackendTlsPolicy,
                namespace: "ns".into(),
                name: "p".into(),
            },
            hostname: "backend.example.com".into(),
            ca_pem,
            system_roots,
            subject_alt_names: vec![],
        }
    }

    #[test]
    fn cas_parse_once_and_bad_pem_is_an_error() {
        let root = rcgen::generate_simple_self_signed(vec!["ca.example.com".into()]).unwrap();
        let pem = root.cert.pem().into_bytes();
        let a = trust(&policy(pem.clone(), false)).unwrap();
        let b = trust(&policy(pem, false)).unwrap();
        let (ca_a, ca_b) = (a.ca.unwrap(), b.ca.unwrap());
        assert!(
            Arc::ptr_eq(&ca_a, &ca_b),
            "the second lookup is served from the cache"
        );
        assert_eq!(ca_a.len(), 1);
        let other = rcgen::generate_simple_self_signed(vec!["ca2.example.com".into()]).unwrap();
        let c = trust(&policy(other.cert.pem().into_bytes(), false)).unwrap();
        assert_ne!(
            a.group, c.group,
            "another CA, another connection pool group"
        );
        assert!(trust(&policy(b"not pem".to_vec(), false)).is_err());
        let system = trust(&policy(vec![], true)).unwrap();
        assert!(system.ca.is_none());
        assert_ne!(system.group, a.group);
    }

    #[test]
    fn client_certificates_load_from_pem() {
        let c = rcgen::generate_simple_self_signed(vec!["gw.example.com".into()]).unwrap();
        let cert = Certificate {
            secret: loom_core::input::ObjectKey {
                kind: loom_core::input::Kind::Secret,
                namespace: "ns".into(),
                name: "s".into(),
            },
            cert_pem: c.cert.pem().into_bytes(),
            key_pem: c.signing_key.serialize_pem().into_bytes(),
        };
        let k = client_cert(&cert).unwrap();
        assert_eq!(k.intermediates().len(), 0);
        let mut bad = cert.clone();
        bad.key_pem = b"nope".to_vec();
        assert!(client_cert(&bad).is_err());
    }
}
