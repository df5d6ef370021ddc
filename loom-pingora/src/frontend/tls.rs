//! TLS termination: one rustls configuration per HTTPS port, built from the snapshot's
//! listeners (certificates by SNI, client certificate validation per port).

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use loom_core::route::host::HostPattern;
use loom_core::snapshot::{Certificate, ClientValidation, PortSnapshot};
use pingora::listeners::TlsAccept;
use pingora::listeners::tls::TlsSettings;
use pingora::protocols::tls::TlsRef;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;

use crate::pipeline::downstream::ClientSni;

struct CaptureSni;

#[async_trait]
impl TlsAccept for CaptureSni {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        Some(Arc::new(ClientSni(
            tls.server_name().map(str::to_ascii_lowercase),
        )))
    }
}

/// Certificates by listener hostname, most specific first.
#[derive(Debug)]
struct SniResolver {
    entries: Vec<(Option<HostPattern>, Arc<CertifiedKey>)>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name().unwrap_or("");
        self.entries
            .iter()
            .find(|(h, _)| h.as_ref().is_none_or(|h| h.matches(sni)))
            .or_else(|| self.entries.iter().find(|(h, _)| h.is_none()))
            .map(|(_, k)| k.clone())
    }
}

fn certified_key(c: &Certificate) -> Result<Arc<CertifiedKey>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&c.cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: tls.crt: {e}", c.secret))?;
    let key = PrivateKeyDer::from_pem_slice(&c.key_pem)
        .map_err(|e| format!("{}: tls.key: {e}", c.secret))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("{}: {e}", c.secret))?;
    Ok(Arc::new(CertifiedKey::new(chain, signer)))
}

/// Builds the TLS settings of an HTTPS port. Errors name the Secret that could not be used;
/// the compiler already validated the PEM, so they are rare (an unsupported key type).
pub(crate) fn settings_for_port(port: &PortSnapshot) -> Result<TlsSettings, String> {
    let mut entries = vec![];
    let mut validation = None;
    for l in port.http_listeners() {
        let Some(tls) = &l.tls else { continue };
        if let Some(c) = tls.certificates.first() {
            entries.push((l.hostname.clone(), certified_key(c)?));
        }
        if validation.is_none() {
            validation = tls.client_validation.clone();
        }
    }
    if entries.is_empty() {
        return Err(format!("port {} has no usable certificate", port.port));
    }
    let mut settings =
        TlsSettings::with_callbacks(Box::new(CaptureSni)).map_err(|e| e.to_string())?;
    settings.set_cert_resolver(Arc::new(SniResolver { entries }));
    settings.enable_h2();
    if let Some(v) = validation {
        settings.set_client_cert_verifier(client_verifier(&v)?);
    }
    Ok(settings)
}

/// The verifier of `frontendValidation`.
fn client_verifier(
    v: &ClientValidation,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&v.ca_pem) {
        let c = c.map_err(|e| format!("client CA: {e}"))?;
        roots.add(c).map_err(|e| format!("client CA: {e}"))?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    );
    let builder = if v.allow_insecure_fallback {
        builder.allow_unauthenticated()
    } else {
        builder
    };
    let verifier = builder.build().map_err(|e| format!("client CA: {e}"))?;
    Ok(if v.allow_insecure_fallback {
        Arc::new(InsecureFallback(verifier))
    } else {
        verifier
    })
}

/// The rustls configuration of a port's HTTP/3 listeners: certificates by SNI, client
/// validation, TLS 1.3 only (QUIC), ALPN `h3`.
pub(crate) fn quic_config(port: &PortSnapshot) -> Result<rustls::ServerConfig, String> {
    let mut entries = vec![];
    let mut validation = None;
    for l in port.http3_listeners() {
        let Some(tls) = &l.tls else { continue };
        if let Some(c) = tls.certificates.first() {
            entries.push((l.hostname.clone(), certified_key(c)?));
        }
        if validation.is_none() {
            validation = tls.client_validation.clone();
        }
    }
    if entries.is_empty() {
        return Err(format!(
            "port {} has no usable certificate for HTTP/3",
            port.port
        ));
    }
    let builder = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .map_err(|e| e.to_string())?;
    let builder = match validation {
        Some(v) => builder.with_client_cert_verifier(client_verifier(&v)?),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(SniResolver { entries }));
    config.alpn_protocols = vec![b"h3".to_vec()];
    Ok(config)
}

/// The rustls configuration of a port's terminating TLSRoute listeners; `None` when every TLS
/// listener on the port is passthrough.
pub(crate) fn terminate_config(
    port: &PortSnapshot,
) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
    let mut entries = vec![];
    for l in port.tls_listeners() {
        if let Some(c) = l.terminate.as_ref().and_then(|t| t.certificates.first()) {
            entries.push((l.hostname.clone(), certified_key(c)?));
        }
    }
    if entries.is_empty() {
        return Ok(None);
    }
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_cert_resolver(Arc::new(SniResolver { entries }));
    Ok(Some(Arc::new(config)))
}

/// `AllowInsecureFallback`: "connections are allowed even if the client certificate is not
/// valid or not presented" — a certificate that does not chain to the CA is let through as
/// if none had been sent. The client must still prove it holds the key it presented.
#[derive(Debug)]
struct InsecureFallback(Arc<dyn rustls::server::danger::ClientCertVerifier>);

impl rustls::server::danger::ClientCertVerifier for InsecureFallback {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        if let Err(e) = self.0.verify_client_cert(end_entity, intermediates, now) {
            tracing::debug!("client certificate not valid ({e}); allowed by AllowInsecureFallback");
        }
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
