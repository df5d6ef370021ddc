//! Filters, compiled: header modifiers, redirects, URL rewrites, mirrors and CORS, each with a
//! pure function over `http` types.

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::route::path::prefix_matches;

/// A compiled `HTTPHeaderFilter`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    /// Overwrite.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Append.
    pub add: Vec<(HeaderName, HeaderValue)>,
    /// Remove.
    pub remove: Vec<HeaderName>,
}

/// A header map a filter can edit: `http::HeaderMap` here, and the data plane's own header
/// types (Pingora's request and response headers), so filters run in place on the hot path.
pub trait HeaderStore {
    /// The first value of a header.
    fn get_header(&self, name: &HeaderName) -> Option<&HeaderValue>;
    /// Replaces every value of a header.
    fn set_header(&mut self, name: HeaderName, value: HeaderValue);
    /// Removes a header.
    fn remove_header(&mut self, name: &HeaderName);
}

impl HeaderStore for HeaderMap {
    fn get_header(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.get(name)
    }

    fn set_header(&mut self, name: HeaderName, value: HeaderValue) {
        self.insert(name, value);
    }

    fn remove_header(&mut self, name: &HeaderName) {
        self.remove(name);
    }
}

impl HeaderEdits {
    /// Applies the edits: set, then add, then remove, as the spec's examples read.
    pub fn apply<H: HeaderStore + ?Sized>(&self, headers: &mut H) {
        for (n, v) in &self.set {
            headers.set_header(n.clone(), v.clone());
        }
        for (n, v) in &self.add {
            // Spec: "add" appends to an existing header value ("foo: bar" + "foo: baz" →
            // "foo: bar,baz"); a separate header line means the same on the wire.
            let joined = headers.get_header(n).map(|old| {
                let mut joined = old.as_bytes().to_vec();
                joined.push(b',');
                joined.extend_from_slice(v.as_bytes());
                HeaderValue::from_bytes(&joined)
            });
            match joined {
                Some(Ok(j)) => headers.set_header(n.clone(), j),
                Some(Err(_)) => {}
                None => headers.set_header(n.clone(), v.clone()),
            }
        }
        for n in &self.remove {
            headers.remove_header(n);
        }
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

/// A path modifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathModifier {
    /// Replace the whole path.
    Full(String),
    /// Replace the matched prefix.
    Prefix(String),
}

impl PathModifier {
    /// The new path. `matched_prefix` is the rule's PathPrefix value (without trailing slash),
    /// or `None` when the rule matched otherwise (the whole path is then the prefix).
    pub fn apply(&self, path: &str, matched_prefix: Option<&str>) -> String {
        match self {
            PathModifier::Full(p) => p.clone(),
            PathModifier::Prefix(replacement) => {
                let prefix = matched_prefix
                    .filter(|p| prefix_matches(p, path))
                    .unwrap_or(path);
                // A `/` prefix leaves the whole path as the remainder.
                let rest = if prefix == "/" {
                    path
                } else {
                    &path[prefix.len().min(path.len())..]
                };
                let base = replacement.trim_end_matches('/');
                let mut out = String::with_capacity(base.len() + rest.len() + 1);
                out.push_str(base);
                out.push_str(rest);
                if out.is_empty() {
                    out.push('/');
                }
                out
            }
        }
    }
}

/// A compiled `HTTPRequestRedirectFilter`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    /// New scheme.
    pub scheme: Option<String>,
    /// New host.
    pub hostname: Option<String>,
    /// New path.
    pub path: Option<PathModifier>,
    /// New port.
    pub port: Option<u16>,
    /// Status code.
    pub status: u16,
}

impl Redirect {
    /// The `Location` header, following the spec's port rules:
    ///
    /// > If no port is specified, the redirect port MUST be derived using the following rules:
    /// > If redirect scheme is not-empty, the redirect port MUST be the well-known port
    /// > associated with the redirect scheme [...]. If redirect scheme is empty, the redirect
    /// > port MUST be the Gateway Listener port.
    ///
    /// and leaving out `:80` for http and `:443` for https.
    pub fn location(
        &self,
        scheme: &str,
        host: &str,
        listener_port: u16,
        path: &str,
        query: Option<&str>,
        matched_prefix: Option<&str>,
    ) -> String {
        let scheme = self.scheme.as_deref().unwrap_or(scheme);
        let host = self.hostname.as_deref().unwrap_or(host);
        let port = match (self.port, &self.scheme) {
            (Some(p), _) => p,
            (None, Some(s)) => match s.as_str() {
                "http" => 80,
                "https" => 443,
                _ => listener_port,
            },
            (None, None) => listener_port,
        };
        let default_port = matches!((scheme, port), ("http", 80) | ("https", 443));
        let path = match &self.path {
            Some(m) => m.apply(path, matched_prefix),
            None => path.to_owned(),
        };
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let mut loc = if default_port {
            format!("{scheme}://{host}{path}")
        } else {
            format!("{scheme}://{host}:{port}{path}")
        };
        if let Some(q) = query {
            loc.push('?');
            loc.push_str(q);
        }
        loc
    }
}

/// A compiled `HTTPURLRewriteFilter`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rewrite {
    /// New `Host`.
    pub hostname: Option<HeaderValue>,
    /// New path.
    pub path: Option<PathModifier>,
}

/// A compiled CORS filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cors {
    /// Allowed origins; `*` allows any. Entries may hold one `*` wildcard in the host.
    pub allow_origins: Vec<String>,
    /// Credentials.
    pub allow_credentials: bool,
    /// Methods (`*` = any).
    pub allow_methods: Vec<String>,
    /// Request headers (`*` = any).
    pub allow_headers: Vec<String>,
    /// Exposed headers.
    pub expose_headers: Vec<String>,
    /// Preflight cache seconds.
    pub max_age: i32,
}

impl Cors {
    /// Whether an `Origin` is allowed.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.allow_origins.iter().any(|o| {
            if o == "*" {
                return true;
            }
            match o.split_once('*') {
                None => o.eq_ignore_ascii_case(origin),
                Some((pre, post)) => {
                    // Bytes, not str slices: an origin may hold non-ASCII bytes.
                    let (o, pre, post) = (origin.as_bytes(), pre.as_bytes(), post.as_bytes());
                    o.len() > pre.len() + post.len()
                        && o[..pre.len()].eq_ignore_ascii_case(pre)
                        && o[o.len() - post.len()..].eq_ignore_ascii_case(post)
                }
            }
        })
    }

    fn allow_origin_value(&self, origin: &str) -> String {
        if self.allow_origins.iter().any(|o| o == "*") && !self.allow_credentials {
            "*".into()
        } else {
            origin.into()
        }
    }

    /// Whether a request is a CORS preflight (OPTIONS with Origin and
    /// Access-Control-Request-Method).
    pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
        method == Method::OPTIONS
            && headers.contains_key(http::header::ORIGIN)
            && headers.contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// The headers of a preflight answer; empty when the origin is not allowed.
    pub fn preflight_headers(&self, headers: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
        use http::header::*;
        let Some(origin) = headers.get(ORIGIN).and_then(|v| v.to_str().ok()) else {
            return vec![];
        };
        if !self.origin_allowed(origin) {
            return vec![];
        }
        let mut out = vec![];
        let mut push = |n: HeaderName, v: &str| {
            if let Ok(v) = HeaderValue::from_str(v) {
                out.push((n, v));
            }
        };
        push(
            ACCESS_CONTROL_ALLOW_ORIGIN,
            &self.allow_origin_value(origin),
        );
        let requested_method = headers
            .get(ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|v| v.to_str().ok());
        let methods = if self.allow_methods.iter().any(|m| m == "*") {
            // With credentials, `*` is literal to browsers: echo the requested method.
            requested_method.map_or_else(|| "*".to_owned(), str::to_owned)
        } else {
            self.allow_methods.join(", ")
        };
        if !methods.is_empty() {
            push(ACCESS_CONTROL_ALLOW_METHODS, &methods);
        }
        let requested_headers = headers
            .get(ACCESS_CONTROL_REQUEST_HEADERS)
            .and_then(|v| v.to_str().ok());
        let allow_headers = if self.allow_headers.iter().any(|h| h == "*") {
            requested_headers.map_or_else(|| "*".to_owned(), str::to_owned)
        } else {
            self.allow_headers.join(", ")
        };
        if !allow_headers.is_empty() {
            push(ACCESS_CONTROL_ALLOW_HEADERS, &allow_headers);
        }
        if !self.expose_headers.is_empty() {
            push(
                ACCESS_CONTROL_EXPOSE_HEADERS,
                &self.expose_headers.join(", "),
            );
        }
        push(ACCESS_CONTROL_MAX_AGE, &self.max_age.to_string());
        if self.allow_credentials {
            push(ACCESS_CONTROL_ALLOW_CREDENTIALS, "true");
        }
        out
    }

    /// The headers added to an actual (non-preflight) response; empty without an allowed
    /// Origin.
    pub fn response_headers(&self, origin: Option<&HeaderValue>) -> Vec<(HeaderName, HeaderValue)> {
        use http::header::*;
        let Some(origin) = origin.and_then(|v| v.to_str().ok()) else {
            return vec![];
        };
        if !self.origin_allowed(origin) {
            return vec![];
        }
        let mut out = vec![];
        if let Ok(v) = HeaderValue::from_str(&self.allow_origin_value(origin)) {
            out.push((ACCESS_CONTROL_ALLOW_ORIGIN, v));
        }
        if self.allow_credentials {
            out.push((
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ));
        }
        if !self.expose_headers.is_empty()
            && let Ok(v) = HeaderValue::from_str(&self.expose_headers.join(", "))
        {
            out.push((ACCESS_CONTROL_EXPOSE_HEADERS, v));
        }
        out
    }
}

/// Parses a Gateway API duration (`1h`, `500ms`, `1h30m10s`, `0s`) into milliseconds.
pub fn parse_duration_ms(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut total = 0u64;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 5 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (mult, len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('s') {
            (1000, 1)
        } else {
            return None;
        };
        total = total.saturating_add(n * mult);
        rest = &rest[len..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_rewrites_follow_the_spec_table() {
        let r = |prefix: &str, path: &str, repl: &str| {
            PathModifier::Prefix(repl.into()).apply(path, Some(prefix))
        };
        assert_eq!(r("/foo", "/foo/bar", "/xyz"), "/xyz/bar");
        assert_eq!(r("/foo", "/foo/bar", "/xyz/"), "/xyz/bar");
        assert_eq!(r("/foo", "/foo", "/xyz"), "/xyz");
        assert_eq!(r("/foo", "/foo/", "/xyz"), "/xyz/");
        assert_eq!(r("/foo", "/foo", "/"), "/");
        assert_eq!(r("/foo", "/foo/", "/"), "/");
        assert_eq!(r("/foo", "/foo/bar", "/"), "/bar");
        assert_eq!(r("/", "/bar", "/xyz"), "/xyz/bar");
        assert_eq!(r("/", "/bar", "/xyz/"), "/xyz/bar");
        assert_eq!(r("/", "/", "/xyz"), "/xyz/");
    }

    #[test]
    fn redirect_ports_follow_the_spec() {
        let mut r = Redirect {
            scheme: Some("https".into()),
            hostname: None,
            path: None,
            port: None,
            status: 302,
        };
        assert_eq!(
            r.location("http", "a.com", 8080, "/p", None, None),
            "https://a.com/p"
        );
        r.scheme = None;
        assert_eq!(
            r.location("http", "a.com", 8080, "/p", Some("q=1"), None),
            "http://a.com:8080/p?q=1"
        );
        assert_eq!(
            r.location("http", "a.com", 80, "/p", None, None),
            "http://a.com/p"
        );
        r.port = Some(443);
        assert_eq!(
            r.location("http", "a.com", 80, "/p", None, None),
            "http://a.com:443/p"
        );
    }

    #[test]
    fn header_edits_set_add_remove() {
        let mut h = HeaderMap::new();
        h.insert("a", "1".parse().unwrap());
        h.insert("b", "2".parse().unwrap());
        let e = HeaderEdits {
            set: vec![(HeaderName::from_static("c"), HeaderValue::from_static("3"))],
            add: vec![(HeaderName::from_static("a"), HeaderValue::from_static("x"))],
            remove: vec![HeaderName::from_static("b")],
        };
        e.apply(&mut h);
        assert_eq!(h["a"], "1,x");
        assert_eq!(h["c"], "3");
        assert!(!h.contains_key("b"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("1h1m1s"), Some(3_661_000));
        assert_eq!(parse_duration_ms("0s"), Some(0));
        assert_eq!(parse_duration_ms("1d"), None);
        assert_eq!(parse_duration_ms(""), None);
    }

    #[test]
    fn cors_wildcard_origins() {
        let c = Cors {
            allow_origins: vec!["https://*.bar.com".into()],
            allow_credentials: false,
            allow_methods: vec![],
            allow_headers: vec![],
            expose_headers: vec![],
            max_age: 5,
        };
        assert!(c.origin_allowed("https://www.bar.com"));
        assert!(c.origin_allowed("https://a.b.bar.com"));
        assert!(!c.origin_allowed("https://bar.com"));
        assert!(!c.origin_allowed("http://www.bar.com"));
        // Multi-byte characters where a slice would split them must not panic.
        assert!(!c.origin_allowed("httpéé://www.bar.co"));
        assert!(!c.origin_allowed("https://www.bar.cé"));
    }
}
