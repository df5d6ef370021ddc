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
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Entries kept before the cache starts over (configurations rarely hold more).
const CACHE_LIMIT: usize = 256;

/// A built SAN verifier and its connection-pool group, or why it could not be built.
type BuiltVerifier = Result<(Arc<SanVerifier>, u64), String>;

struct Cache {
    /// By CA bundle PEM: (parsed bundle, connection-pool group).
    cas: HashMap<Vec<u8>, Trust>,
    /// By certificate PEM: (key PEM, parsed pair).
    keys: HashMap<Vec<u8>, (Vec<u8>, Arc<CertKey>)>,
    /// By CA bundle PEM, then subjectAltNames (looked up without copying either).
    sans: HashMap<Vec<u8>, HashMap<Vec<String>, BuiltVerifier>>,
}

fn cache() -> &'static Mutex<Cache> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    CACHE.get_or_init(|| {
        Mutex::new(Cache {
            cas: HashMap::new(),
            keys: HashMap::new(),
            sans: HashMap::new(),
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

/// Verifies a backend's certificate against a BackendTLSPolicy's `subjectAltNames` instead of
/// its hostname, which is then only the SNI: "the certificate served by the backend MUST have
/// at least one Subject Alternative Name matching one of the specified SubjectAltNames"
/// (Gateway API, BackendTLSPolicyValidation). The chain is verified as usual. A name with `:`
/// in it is a URI SAN and a `*.` name a wildcard DNS SAN: the certificate must carry it as
/// written (ASCII case aside). Any other name is a host name the certificate must be valid
/// for, as webpki matches host names (a wildcard certificate covers it).
#[derive(Debug)]
pub(crate) struct SanVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    dns: Vec<ServerName<'static>>,
    /// URIs and wildcard names, lower-cased.
    exact: Vec<String>,
}

fn name_mismatch(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        )
    )
}

/// The URI and DNS subjectAltNames of a certificate, lower-cased.
fn sans_of(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return vec![];
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return vec![];
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(n)
            | x509_parser::extensions::GeneralName::DNSName(n) => Some(n.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

impl ServerCertVerifier for SanVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verify = |name: &ServerName<'_>| {
            self.webpki
                .verify_server_cert(end_entity, intermediates, name, ocsp_response, now)
        };
        for name in &self.dns {
            match verify(name) {
                Ok(verified) => return Ok(verified),
                Err(e) if name_mismatch(&e) => {}
                Err(e) => return Err(e),
            }
        }
        if !self.exact.is_empty() {
            // The chain, whatever names the certificate has; then its SANs as written.
            match verify(server_name) {
                Err(e) if !name_mismatch(&e) => return Err(e),
                _ => {}
            }
            if sans_of(end_entity).iter().any(|n| self.exact.contains(n)) {
                return Ok(ServerCertVerified::assertion());
            }
        }
        Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName,
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// The verifier of a policy with subjectAltNames (`None` without them), and the connection-pool
/// group its connections use.
pub(crate) fn san_verifier(tls: &BackendTls) -> Result<Option<(Arc<SanVerifier>, u64)>, String> {
    if tls.subject_alt_names.is_empty() {
        return Ok(None);
    }
    let mut c = cache().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(built) = c
        .sans
        .get(&tls.ca_pem)
        .and_then(|by_names| by_names.get(&tls.subject_alt_names))
    {
        return built.clone().map(Some);
    }
    // Built once, failures included (a request does not load the system roots again).
    let built = build_san_verifier(tls);
    if c.sans.len() >= CACHE_LIMIT {
        c.sans.clear();
    }
    c.sans
        .entry(tls.ca_pem.clone())
        .or_default()
        .insert(tls.subject_alt_names.clone(), built.clone());
    built.map(Some)
}

fn build_san_verifier(tls: &BackendTls) -> Result<(Arc<SanVerifier>, u64), String> {
    let mut roots = RootCertStore::empty();
    if tls.ca_pem.is_empty() {
        let native = pingora::tls::load_native_certs().map_err(|e| format!("system roots: {e}"))?;
        roots.add_parsable_certificates(native);
    } else {
        for der in certificates(&tls.ca_pem)? {
            roots
                .add(CertificateDer::from(der))
                .map_err(|e| format!("CA: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| format!("CA: {e}"))?;
    let (mut dns, mut exact) = (vec![], vec![]);
    for name in &tls.subject_alt_names {
        if name.contains(':') || name.starts_with("*.") {
            // A URI, or a wildcard name: the certificate must carry it as written.
            exact.push(name.to_ascii_lowercase());
        } else {
            let n = ServerName::try_from(name.clone())
                .map_err(|e| format!("subjectAltName {name}: {e}"))?;
            dns.push(n);
        }
    }
    let mut h = DefaultHasher::new();
    tls.ca_pem.hash(&mut h);
    tls.subject_alt_names.hash(&mut h);
    Ok((Arc::new(SanVerifier { webpki, dns, exact }), h.finish() | 2))
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
