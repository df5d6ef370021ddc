//! The TLS Secrets and CA ConfigMaps the upstream suite creates in code
//! (`base/programmatic-resources.yaml`), with real keys and certificates from rcgen.

use std::net::IpAddr;
use std::path::Path;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Error;
use crate::yaml;

/// The part of `programmatic-resources.yaml` the runner uses.
#[derive(Debug, Deserialize)]
struct Programmatic {
    resources: Vec<Resource>,
}

/// One object to create.
#[derive(Debug, Deserialize)]
struct Resource {
    kind: String,
    namespace: String,
    name: String,
    #[serde(rename = "type")]
    type_: String,
    #[serde(default)]
    hosts: Vec<String>,
}

/// The objects, in creation order.
pub(crate) fn objects(corpus: &Path) -> Result<Vec<Value>, Error> {
    let path = corpus.join("base/programmatic-resources.yaml");
    let text = yaml::read(&path)?;
    let Some(doc) = loom_core::load::split_documents(&text).into_iter().next() else {
        return Ok(vec![]);
    };
    let spec: Programmatic = yaml::parse(&path, doc.first_line, doc.text)?;
    spec.resources.iter().map(object).collect()
}

fn object(r: &Resource) -> Result<Value, Error> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    for h in &r.hosts {
        params.subject_alt_names.push(san(h)?);
    }
    if r.type_ == "ca" {
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    }
    let cert = params.self_signed(&key)?;
    let meta = json!({"name": r.name, "namespace": r.namespace});
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    Ok(match r.kind.as_str() {
        "ConfigMap" => json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
            "data": {"ca.crt": cert.pem(), "key.crt": key.serialize_pem()}}),
        _ => {
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "kubernetes.io/tls",
            "data": {"tls.crt": b64(&cert.pem()), "tls.key": b64(&key.serialize_pem())}})
        }
    })
}

/// `hosts_to_sans`: an IP SAN if it parses as an IP, else a DNS SAN if it is a DNS name after
/// one leading `*.`, else a URI SAN.
fn san(h: &str) -> Result<rcgen::SanType, Error> {
    if let Ok(ip) = h.parse::<IpAddr>() {
        return Ok(rcgen::SanType::IpAddress(ip));
    }
    let dns = h
        .trim_start_matches("*.")
        .split('.')
        .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    Ok(if dns {
        rcgen::SanType::DnsName(h.try_into()?)
    } else {
        rcgen::SanType::URI(h.try_into()?)
    })
}

/// A self-signed TLS Secret for `hosts`.
#[cfg(test)]
pub(crate) fn tls_secret(namespace: &str, name: &str, hosts: &[&str]) -> Value {
    object(&Resource {
        kind: "Secret".into(),
        namespace: namespace.into(),
        name: name.into(),
        type_: "self-signed-server".into(),
        hosts: hosts.iter().map(|h| (*h).into()).collect(),
    })
    .expect("a certificate")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn san_of_an_ip_is_an_ip_san() {
        assert!(matches!(
            san("10.0.0.1").unwrap(),
            rcgen::SanType::IpAddress(_)
        ));
    }

    #[test]
    fn san_of_a_wildcard_name_is_a_dns_san() {
        assert!(matches!(
            san("*.wildcard.org").unwrap(),
            rcgen::SanType::DnsName(_)
        ));
    }

    #[test]
    fn san_of_a_bare_star_is_a_uri_san() {
        assert!(matches!(san("*").unwrap(), rcgen::SanType::URI(_)));
    }

    #[test]
    fn a_ca_config_map_holds_the_certificate_and_key_in_pem() {
        let r = Resource {
            kind: "ConfigMap".into(),
            namespace: "ns".into(),
            name: "ca".into(),
            type_: "ca".into(),
            hosts: vec![],
        };
        let v = object(&r).unwrap();
        assert!(
            v["data"]["ca.crt"]
                .as_str()
                .unwrap()
                .starts_with("-----BEGIN CERTIFICATE")
        );
        assert!(
            v["data"]["key.crt"]
                .as_str()
                .unwrap()
                .contains("PRIVATE KEY")
        );
    }

    #[test]
    fn a_secret_is_a_tls_secret_in_base64() {
        let r = Resource {
            kind: "Secret".into(),
            namespace: "ns".into(),
            name: "cert".into(),
            type_: "self-signed-server".into(),
            hosts: vec!["example.com".into()],
        };
        let v = object(&r).unwrap();
        assert_eq!(v["type"], "kubernetes.io/tls");
        assert_eq!(v["metadata"], json!({"name": "cert", "namespace": "ns"}));
        let crt = base64::engine::general_purpose::STANDARD
            .decode(v["data"]["tls.crt"].as_str().unwrap())
            .unwrap();
        assert!(crt.starts_with(b"-----BEGIN CERTIFICATE"));
    }
}
