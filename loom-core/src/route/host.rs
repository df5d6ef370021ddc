//! Hostnames: parsed once, matched without allocating.

use std::fmt;

/// A listener or route hostname: exact (`foo.example.com`) or wildcard (`*.example.com`).
/// Stored lower-case; a wildcard keeps its suffix including the leading dot.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HostPattern {
    /// An exact hostname.
    Exact(String),
    /// `*.suffix`: one or more labels, then `.suffix`. Holds `.suffix`.
    Wildcard(String),
}

/// Why a hostname was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidHostname {
    /// Empty or too long.
    #[error("hostname must be 1 to 253 characters")]
    Length,
    /// An IP address, which the spec does not allow.
    #[error("hostname must not be an IP address")]
    IpAddress,
    /// A label with characters outside `[a-z0-9-]`, or starting/ending with `-`.
    #[error("hostname label {0:?} is not a valid DNS label")]
    Label(String),
    /// `*` somewhere other than the whole first label.
    #[error("a wildcard is only allowed as the whole first label (`*.example.com`)")]
    Wildcard,
}

impl HostPattern {
    /// Parses a Gateway API hostname.
    pub fn parse(s: &str) -> Result<HostPattern, InvalidHostname> {
        if s.is_empty() || s.len() > 253 {
            return Err(InvalidHostname::Length);
        }
        if s.parse::<std::net::IpAddr>().is_ok() {
            return Err(InvalidHostname::IpAddress);
        }
        let lower = s.to_ascii_lowercase();
        let (wild, rest) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        for label in rest.split('.') {
            let ok = !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(if label.contains('*') {
                    InvalidHostname::Wildcard
                } else {
                    InvalidHostname::Label(label.into())
                });
            }
        }
        Ok(if wild {
            HostPattern::Wildcard(format!(".{rest}"))
        } else {
            HostPattern::Exact(lower)
        })
    }

    /// Whether a request host (already without port; any case) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h.eq_ignore_ascii_case(host),
            HostPattern::Wildcard(suffix) => {
                host.len() > suffix.len()
                    && host.as_bytes()[host.len() - suffix.len()..]
                        .eq_ignore_ascii_case(suffix.as_bytes())
            }
        }
    }

    /// The intersection of a listener hostname and a route hostname, as the spec defines it:
    /// the more specific of the two when one covers the other.
    pub fn intersect(listener: Option<&HostPattern>, route: &HostPattern) -> Option<HostPattern> {
        let Some(l) = listener else {
            return Some(route.clone());
        };
        match (l, route) {
            (HostPattern::Exact(a), HostPattern::Exact(b)) => (a == b).then(|| route.clone()),
            (HostPattern::Wildcard(_), HostPattern::Exact(b)) => {
                l.matches(b).then(|| route.clone())
            }
            (HostPattern::Exact(a), HostPattern::Wildcard(_)) => {
                route.matches(a).then(|| l.clone())
            }
            (HostPattern::Wildcard(a), HostPattern::Wildcard(b)) => {
                if b.len() >= a.len() && b.ends_with(a.as_str()) {
                    Some(route.clone())
                } else if a.ends_with(b.as_str()) {
                    Some(l.clone())
                } else {
                    None
                }
            }
        }
    }

    /// Specificity for precedence: exact before wildcard, longer before shorter.
    pub fn specificity(&self) -> (bool, usize) {
        match self {
            HostPattern::Exact(h) => (true, h.len()),
            HostPattern::Wildcard(s) => (false, s.len()),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Wildcard(s) => write!(f, "*{s}"),
        }
    }
}

/// Orders optional hostnames most specific first: exact before wildcard, longer before
/// shorter, then by name; `None` (any host) last. Used for listeners, virtual hosts and SNI
/// routes alike.
pub fn most_specific_first(a: Option<&HostPattern>, b: Option<&HostPattern>) -> std::cmp::Ordering {
    use std::cmp::{Ordering, Reverse};
    match (a, b) {
        (Some(x), Some(y)) => Reverse(x.specificity())
            .cmp(&Reverse(y.specificity()))
            .then_with(|| x.cmp(y)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// The host part of a `Host` header or `:authority` (port and IPv6 brackets handled), without
/// allocating.
pub fn host_without_port(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split_once(']').map_or(authority, |(h, _)| h);
    }
    match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
    .trim_end_matches('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> HostPattern {
        HostPattern::parse(s).unwrap()
    }

    #[test]
    fn parses_and_rejects() {
        assert_eq!(
            h("Foo.Example.com"),
            HostPattern::Exact("foo.example.com".into())
        );
        assert_eq!(
            h("*.example.com"),
            HostPattern::Wildcard(".example.com".into())
        );
        assert_eq!(
            HostPattern::parse("1.2.3.4"),
            Err(InvalidHostname::IpAddress)
        );
        assert_eq!(
            HostPattern::parse("a.*.com"),
            Err(InvalidHostname::Wildcard)
        );
        assert!(HostPattern::parse("-a.com").is_err());
        assert!(HostPattern::parse("").is_err());
    }

    #[test]
    fn wildcards_match_one_or_more_labels() {
        let w = h("*.example.com");
        assert!(w.matches("a.example.com"));
        assert!(w.matches("a.b.example.com"));
        assert!(w.matches("A.EXAMPLE.COM"));
        assert!(!w.matches("example.com"));
        assert!(!w.matches("aexample.com"));
    }

    #[test]
    fn intersection_takes_the_more_specific() {
        let i =
            |l: &str, r: &str| HostPattern::intersect(Some(&h(l)), &h(r)).map(|p| p.to_string());
        assert_eq!(
            i("*.example.com", "foo.example.com").as_deref(),
            Some("foo.example.com")
        );
        assert_eq!(
            i("foo.example.com", "*.example.com").as_deref(),
            Some("foo.example.com")
        );
        assert_eq!(
            i("*.example.com", "*.foo.example.com").as_deref(),
            Some("*.foo.example.com")
        );
        assert_eq!(
            i("*.foo.example.com", "*.example.com").as_deref(),
            Some("*.foo.example.com")
        );
        assert_eq!(i("a.com", "b.com"), None);
        assert_eq!(i("*.a.com", "*.b.com"), None);
        assert_eq!(HostPattern::intersect(None, &h("x.com")), Some(h("x.com")));
    }

    #[test]
    fn strips_ports() {
        assert_eq!(host_without_port("a.com:8080"), "a.com");
        assert_eq!(host_without_port("a.com"), "a.com");
        assert_eq!(host_without_port("[::1]:80"), "::1");
        assert_eq!(host_without_port("a.com."), "a.com");
    }
}
