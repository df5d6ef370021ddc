//! `X-Forwarded-For`, `-Proto` and `-Host`: what the backend learns of the client.
//!
//! With no trusted proxy in front of Loom (`trusted_hops` 0, the default) whatever a client
//! sent in these headers is replaced: `X-Forwarded-For` is the client's address, `-Proto` the
//! scheme it used, `-Host` the Host it asked for; the other forwarding headers a backend might
//! believe (`Forwarded`, `X-Real-IP`, `X-Forwarded-Port`, `X-Forwarded-Prefix`) are removed.
//! With `trusted_hops` > 0 the peer is a proxy Loom trusts: every forwarding header it sent is
//! kept, the peer's address is appended to `X-Forwarded-For` (all its lines, joined), and
//! `-Proto` and `-Host` are set only where it sent none. Loom does not check the peer's
//! address: with `trusted_hops` > 0, only trusted proxies may be able to reach it.

use std::net::IpAddr;

use http::header::{FORWARDED, HOST};
use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;

// Looked up and removed by their parsed names; inserted by their static text, which Pingora's
// case-preserving map takes without a copy (this runs for every request).
static XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
static XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
static XFH: HeaderName = HeaderName::from_static("x-forwarded-host");
/// Removed from requests of untrusted clients.
const UNTRUSTED: [HeaderName; 4] = [
    FORWARDED,
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-forwarded-prefix"),
];

/// Sets the forwarding headers of a request from `peer` over `scheme`.
///
/// This runs for every proxied request; each header Pingora's map takes costs a parse of its
/// name and an allocation, so nothing is removed that is not there and values are built
/// without intermediate strings (bench/RESULTS.md, #16).
pub(crate) fn set_forwarded(
    req: &mut RequestHeader,
    peer: Option<IpAddr>,
    scheme: &'static str,
    trusted_hops: usize,
) -> pingora::Result<()> {
    let trusted = trusted_hops > 0;
    if !trusted && req.headers.keys().any(is_forwarding_header) {
        for name in &UNTRUSTED {
            req.remove_header(name);
        }
    }
    let mut chain = Vec::new();
    if trusted {
        for v in req.headers.get_all(&XFF) {
            let v = v.as_bytes().trim_ascii();
            if !v.is_empty() {
                if !chain.is_empty() {
                    chain.extend_from_slice(b", ");
                }
                chain.extend_from_slice(v);
            }
        }
    }
    let mut ip_text = [0u8; IP_TEXT];
    let ip = peer.map(|ip| write_ip(&mut ip_text, ip));
    let value = match (chain.is_empty(), ip) {
        (true, None) => None,
        (true, Some(ip)) => HeaderValue::from_bytes(ip).ok(),
        (false, ip) => {
            if let Some(ip) = ip {
                chain.extend_from_slice(b", ");
                chain.extend_from_slice(ip);
            }
            HeaderValue::from_maybe_shared(bytes::Bytes::from(chain)).ok()
        }
    };
    match value {
        Some(v) => req.insert_header(XFF.as_str(), v)?,
        None => {
            if req.headers.contains_key(&XFF) {
                req.remove_header(&XFF);
            }
        }
    }
    if !(trusted && req.headers.contains_key(&XFP)) {
        req.insert_header(XFP.as_str(), HeaderValue::from_static(scheme))?;
    }
    if !(trusted && req.headers.contains_key(&XFH)) {
        let host = req.headers.get(HOST).cloned().or_else(|| {
            req.uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        match host {
            Some(h) => req.insert_header(XFH.as_str(), h)?,
            None => {
                req.remove_header(&XFH);
            }
        }
    }
    Ok(())
}

/// Whether `name` is one of the headers an untrusted client's request loses (its own
/// `X-Forwarded-For` is replaced by inserting).
fn is_forwarding_header(name: &HeaderName) -> bool {
    let name = name.as_str();
    (name.starts_with("x-") || name == FORWARDED.as_str()) && UNTRUSTED.iter().any(|u| u == name)
}

/// Room for any address as text (`Display` writes IPv6 in at most 39 characters; 45 is the
/// longest form with an embedded IPv4 address).
const IP_TEXT: usize = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255".len();

/// Writes `ip` as text to `buf`, returning the part written. IPv4 by hand: `Display` goes
/// through the formatting machinery, a tenth of what setting these headers cost per request.
fn write_ip(buf: &mut [u8; IP_TEXT], ip: IpAddr) -> &[u8] {
    match ip {
        IpAddr::V4(v4) => {
            let mut n = 0;
            let mut put = |b: u8| {
                buf[n] = b;
                n += 1;
            };
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    put(b'.');
                }
                if octet >= 100 {
                    put(b'0' + octet / 100);
                }
                if octet >= 10 {
                    put(b'0' + octet / 10 % 10);
                }
                put(b'0' + octet % 10);
            }
            &buf[..n]
        }
        IpAddr::V6(v6) => {
            use std::io::Write;
            let mut rest = &mut buf[..];
            // Cannot fail: IP_TEXT holds the longest text of an address.
            let _ = write!(rest, "{v6}");
            let n = IP_TEXT - rest.len();
            &buf[..n]
        }
    }
}

/// The client's address as Loom determines it: the peer, or with `trusted_hops` proxies in
/// front of Loom, the `X-Forwarded-For` entry the outermost trusted one added (counting the
/// peer as the last hop). Falls back to the leftmost entry when the chain is shorter.
pub(crate) fn client_address(
    req: &RequestHeader,
    peer: Option<IpAddr>,
    trusted_hops: usize,
) -> Option<String> {
    if trusted_hops == 0 {
        return peer.map(|p| p.to_string());
    }
    let mut chain: Vec<String> = req
        .headers
        .get_all(&XFF)
        .iter()
        .flat_map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split(',')
                .map(|s| s.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|v| !v.is_empty())
        .collect();
    chain.extend(peer.map(|p| p.to_string()));
    let index = chain.len().saturating_sub(trusted_hops + 1);
    chain.into_iter().nth(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for (n, v) in headers {
            req.append_header(n.to_string(), *v).unwrap();
        }
        req
    }

    fn get<'r>(req: &'r RequestHeader, name: &str) -> Vec<&'r str> {
        req.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    const CLIENT: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7)));

    #[test]
    fn the_client_address_is_the_peer_or_the_entry_the_trusted_proxies_name() {
        let peer = Some(IpAddr::from([10, 0, 0, 9]));
        let req = request(&[
            ("x-forwarded-for", "1.1.1.1, 2.2.2.2"),
            ("x-forwarded-for", "3.3.3.3"),
        ]);
        assert_eq!(client_address(&req, peer, 0).as_deref(), Some("10.0.0.9"));
        assert_eq!(client_address(&req, peer, 1).as_deref(), Some("3.3.3.3"));
        assert_eq!(client_address(&req, peer, 2).as_deref(), Some("2.2.2.2"));
        assert_eq!(client_address(&req, peer, 9).as_deref(), Some("1.1.1.1"));
    }

    #[test]
    fn untrusted_client_values_are_replaced() {
        let mut req = request(&[
            ("host", "shop.example.com"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-for", "10.0.0.2"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example.com"),
        ]);
        set_forwarded(&mut req, CLIENT, "http", 0).unwrap();
        assert_eq!(get(&req, XFF.as_str()), ["192.0.2.7"]);
        assert_eq!(get(&req, XFP.as_str()), ["http"]);
        assert_eq!(get(&req, XFH.as_str()), ["shop.example.com"]);
    }

    #[test]
    fn a_trusted_proxy_chain_is_kept_and_the_peer_appended() {
        let mut req = request(&[
            ("host", "shop.example.com"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "www.example.com"),
        ]);
        set_forwarded(&mut req, CLIENT, "http", 1).unwrap();
        assert_eq!(get(&req, XFF.as_str()), ["203.0.113.9, 192.0.2.7"]);
        assert_eq!(get(&req, XFP.as_str()), ["https"]);
        assert_eq!(get(&req, XFH.as_str()), ["www.example.com"]);
    }

    #[test]
    fn other_forwarding_headers_of_an_untrusted_client_are_removed() {
        let mut req = request(&[
            ("host", "a"),
            ("forwarded", "for=10.0.0.1;proto=https"),
            ("x-real-ip", "10.0.0.1"),
            ("x-forwarded-port", "443"),
            ("x-forwarded-prefix", "/admin"),
        ]);
        set_forwarded(&mut req, CLIENT, "http", 0).unwrap();
        for name in UNTRUSTED {
            assert!(!req.headers.contains_key(&name), "{name}");
        }
    }

    #[test]
    fn every_x_forwarded_for_line_of_a_trusted_proxy_is_kept() {
        let mut req = request(&[
            ("host", "a"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-for", "198.51.100.2"),
            ("forwarded", "for=203.0.113.9"),
        ]);
        set_forwarded(&mut req, CLIENT, "http", 1).unwrap();
        assert_eq!(
            get(&req, XFF.as_str()),
            ["203.0.113.9, 198.51.100.2, 192.0.2.7"]
        );
        assert_eq!(get(&req, "forwarded"), ["for=203.0.113.9"]);
    }

    #[test]
    fn a_trusted_proxy_that_sent_nothing_gets_fresh_values() {
        let mut req = request(&[("host", "shop.example.com")]);
        set_forwarded(&mut req, CLIENT, "https", 2).unwrap();
        assert_eq!(get(&req, XFF.as_str()), ["192.0.2.7"]);
        assert_eq!(get(&req, XFP.as_str()), ["https"]);
        assert_eq!(get(&req, XFH.as_str()), ["shop.example.com"]);
    }

    #[test]
    fn an_ipv6_client_is_written_bare() {
        let mut req = request(&[("host", "a")]);
        set_forwarded(&mut req, Some("2001:db8::1".parse().unwrap()), "http", 0).unwrap();
        assert_eq!(get(&req, XFF.as_str()), ["2001:db8::1"]);
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        let mut buf = [0u8; IP_TEXT];
        for octet in 0..=255u8 {
            for ip in [
                IpAddr::from([octet, 0, 10, 255]),
                IpAddr::from([9, 99, 100, octet]),
            ] {
                assert_eq!(write_ip(&mut buf, ip), ip.to_string().as_bytes());
            }
        }
        for ip in [
            "2001:db8::1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(write_ip(&mut buf, ip), ip.to_string().as_bytes());
        }
    }
}
