//! Request matching: the compiled form of HTTPRoute and GRPCRoute matches, their precedence,
//! and two matchers over one table — a fast index (matchit) and a linear reference matcher
//! written straight from the spec. Property tests check that they always agree.
//!
//! Precedence among the rules of one virtual host (Gateway API, `HTTPRouteRule`):
//!
//! > 1. "Exact" path match. 2. "Prefix" path match with largest number of characters.
//! > 3. Method match. 4. Largest number of header matches. 5. Largest number of query param
//! > matches. [...] If ties still exist across multiple Routes, matching precedence MUST be
//! > determined in order of the following criteria: The oldest Route based on creation
//! > timestamp. The Route appearing first in alphabetical order by "{namespace}/{name}". [...]
//! > If ties still exist within an HTTPRoute, matching precedence MUST be granted to the FIRST
//! > matching rule (in list order).
//!
//! `RegularExpression` precedence is implementation-specific: Loom puts regex paths after Exact
//! and before PathPrefix (longer patterns first), as Envoy Gateway does, so that a catch-all
//! `PathPrefix /` does not hide every regex rule.

pub mod header;
pub mod host;
pub mod path;

use std::cmp::Reverse;

use http::{HeaderMap, Method};

use self::header::{HeaderMatch, QueryMatch, ValueMatch};
use self::path::{PathMatch, prefix_matches};
use crate::input::Timestamp;

/// The parts of a request matching looks at. `path` must already be normalised
/// ([`path::normalize`]).
#[derive(Clone, Copy, Debug)]
pub struct RequestView<'a> {
    /// Method.
    pub method: &'a Method,
    /// Normalised path, without the query.
    pub path: &'a str,
    /// Raw query string, without `?`.
    pub query: Option<&'a str>,
    /// Headers.
    pub headers: &'a HeaderMap,
}

/// One compiled `HTTPRouteMatch`.
#[derive(Clone, Debug)]
pub struct HttpMatch {
    /// Path.
    pub path: PathMatch,
    /// Method, if matched.
    pub method: Option<Method>,
    /// Headers, ANDed.
    pub headers: Vec<HeaderMatch>,
    /// Query parameters, ANDed.
    pub query: Vec<QueryMatch>,
}

impl HttpMatch {
    /// Whether the request matches (path included).
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        self.path.matches(req.path) && self.matches_except_path(req)
    }

    fn matches_except_path(&self, req: &RequestView<'_>) -> bool {
        self.method.as_ref().is_none_or(|m| m == req.method)
            && self.headers.iter().all(|h| h.matches(req.headers))
            && self.query.iter().all(|q| q.matches(req.query))
    }
}

/// Where a route sits in the spec's tie-breaks: age, then `namespace/name`, then rule and
/// match order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RouteOrder {
    /// Creation time.
    pub created: Timestamp,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Rule index.
    pub rule: usize,
    /// Match index within the rule.
    pub match_index: usize,
}

/// The precedence summary of an HTTP match: smaller sorts first and wins.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HttpPrecedence {
    path_class: u8,
    path_len: Reverse<usize>,
    method: Reverse<bool>,
    headers: Reverse<usize>,
    query: Reverse<usize>,
    order: RouteOrder,
}

impl HttpPrecedence {
    /// The summary of a match at a position.
    pub fn of(m: &HttpMatch, order: RouteOrder) -> Self {
        HttpPrecedence {
            path_class: match m.path {
                PathMatch::Exact(_) => 0,
                PathMatch::Regex(_) => 1,
                PathMatch::Prefix(_) => 2,
            },
            path_len: Reverse(m.path.len()),
            method: Reverse(m.method.is_some()),
            headers: Reverse(m.headers.len()),
            query: Reverse(m.query.len()),
            order,
        }
    }
}

#[derive(Clone, Debug, Default)]
struct KeyCandidates {
    exact: Vec<u32>,
    prefix: Vec<u32>,
}

/// The HTTP rules of one virtual host, sorted by precedence, with a fast path index.
#[derive(Clone, Debug)]
pub struct HttpTable<T> {
    entries: Vec<(HttpMatch, T)>,
    index: Option<matchit::Router<KeyCandidates>>,
    regex: Vec<u32>,
}

impl<T> HttpTable<T> {
    /// Builds a table; entries may come in any order.
    pub fn new(mut entries: Vec<(HttpMatch, HttpPrecedence, T)>) -> Self {
        entries.sort_by(|a, b| a.1.cmp(&b.1));
        let entries: Vec<(HttpMatch, T)> = entries.into_iter().map(|(m, _, t)| (m, t)).collect();
        let index = build_index(&entries);
        let regex = (0..entries.len() as u32)
            .filter(|&i| matches!(entries[i as usize].0.path, PathMatch::Regex(_)))
            .collect();
        HttpTable {
            entries,
            index,
            regex,
        }
    }

    /// Number of matches in the table.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in precedence order.
    pub fn entries(&self) -> impl Iterator<Item = (&HttpMatch, &T)> {
        self.entries.iter().map(|(m, t)| (m, t))
    }

    /// The winning entry for a request (fast path). Allocation-free unless a header is
    /// repeated or a query value is percent-encoded.
    pub fn find(&self, req: &RequestView<'_>) -> Option<(&HttpMatch, &T)> {
        let Some(index) = &self.index else {
            return self.find_reference(req);
        };
        let node = index.at(req.path).ok().map(|m| m.value);
        let check = |i: &u32| {
            let (m, t) = &self.entries[*i as usize];
            m.matches_except_path(req).then_some((m, t))
        };
        if let Some(n) = node
            && let Some(hit) = n.exact.iter().find_map(check)
        {
            return Some(hit);
        }
        if let Some(hit) = self.regex.iter().find_map(|i| {
            let (m, t) = &self.entries[*i as usize];
            m.matches(req).then_some((m, t))
        }) {
            return Some(hit);
        }
        node.and_then(|n| n.prefix.iter().find_map(check))
    }

    /// The winning entry by a linear scan in precedence order: the spec, read literally.
    pub fn find_reference(&self, req: &RequestView<'_>) -> Option<(&HttpMatch, &T)> {
        self.entries
            .iter()
            .find(|(m, _)| m.matches(req))
            .map(|(m, t)| (m, t))
    }
}

fn escape(path: &str) -> String {
    path.replace('{', "{{").replace('}', "}}")
}

fn build_index<T>(entries: &[(HttpMatch, T)]) -> Option<matchit::Router<KeyCandidates>> {
    use std::collections::BTreeMap;
    // Keys: every exact path, and for every prefix `/p` the keys `/p`, `/p/` and `/p/{*rest}`
    // (a catch-all never matches an empty remainder). Each key's lists hold every candidate
    // whose path matches the paths that reach that key, in precedence order, so that a
    // failed method/header/query check falls back to the next candidate without re-matching.
    #[derive(PartialEq, Eq, PartialOrd, Ord)]
    enum Key {
        Literal(String),
        Under(String),
    }
    let mut keys = std::collections::BTreeSet::new();
    for (m, _) in entries {
        match &m.path {
            PathMatch::Exact(p) => {
                keys.insert(Key::Literal(p.clone()));
            }
            PathMatch::Prefix(p) if p == "/" => {
                keys.insert(Key::Literal("/".into()));
                keys.insert(Key::Under(String::new()));
            }
            PathMatch::Prefix(p) => {
                keys.insert(Key::Literal(p.clone()));
                keys.insert(Key::Literal(format!("{p}/")));
                keys.insert(Key::Under(p.clone()));
            }
            PathMatch::Regex(_) => {}
        }
    }
    let mut lists: BTreeMap<String, KeyCandidates> = BTreeMap::new();
    for key in keys {
        type Covers = Box<dyn Fn(&PathMatch) -> bool>;
        let (route, sample_matches): (String, Covers) = match key {
            Key::Literal(p) => {
                let route = escape(&p);
                (route, Box::new(move |m: &PathMatch| m.matches(&p)))
            }
            Key::Under(p) => {
                let route = format!("{}/{{*rest}}", escape(&p));
                // Every path under `p/` (non-empty remainder) that no longer key covers.
                (
                    route,
                    Box::new(move |m: &PathMatch| match m {
                        PathMatch::Prefix(q) => prefix_matches(q, &format!("{p}/")),
                        _ => false,
                    }),
                )
            }
        };
        let mut c = KeyCandidates::default();
        for (i, (m, _)) in entries.iter().enumerate() {
            if !sample_matches(&m.path) {
                continue;
            }
            match m.path {
                PathMatch::Exact(_) => c.exact.push(i as u32),
                PathMatch::Prefix(_) => c.prefix.push(i as u32),
                PathMatch::Regex(_) => {}
            }
        }
        lists.insert(route, c);
    }
    let mut router = matchit::Router::new();
    for (route, c) in lists {
        router.insert(route, c).ok()?;
    }
    Some(router)
}

/// One compiled `GRPCRouteMatch`.
#[derive(Clone, Debug)]
pub struct GrpcMatch {
    /// Service match (`None` = any).
    pub service: Option<ValueMatch>,
    /// Method match (`None` = any).
    pub method: Option<ValueMatch>,
    /// Header (metadata) matches.
    pub headers: Vec<HeaderMatch>,
}

impl GrpcMatch {
    /// Whether a gRPC request (`path` = `/package.Service/Method`) matches.
    pub fn matches(&self, path: &str, headers: &HeaderMap) -> bool {
        let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
            return false;
        };
        self.service
            .as_ref()
            .is_none_or(|s| s.matches(service.as_bytes()))
            && self
                .method
                .as_ref()
                .is_none_or(|m| m.matches(method.as_bytes()))
            && self.headers.iter().all(|h| h.matches(headers))
    }

    fn value_len(v: &Option<ValueMatch>) -> usize {
        match v {
            Some(ValueMatch::Exact(s)) => s.len(),
            Some(ValueMatch::Regex(r)) => r.as_str().len(),
            None => 0,
        }
    }
}

/// The precedence summary of a gRPC match (spec: longest service, then method, then most
/// headers, then the route tie-breaks).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GrpcPrecedence {
    service: Reverse<usize>,
    method: Reverse<usize>,
    headers: Reverse<usize>,
    order: RouteOrder,
}

impl GrpcPrecedence {
    /// The summary of a match at a position.
    pub fn of(m: &GrpcMatch, order: RouteOrder) -> Self {
        GrpcPrecedence {
            service: Reverse(GrpcMatch::value_len(&m.service)),
            method: Reverse(GrpcMatch::value_len(&m.method)),
            headers: Reverse(m.headers.len()),
            order,
        }
    }
}

/// The gRPC rules of one virtual host, sorted by precedence.
#[derive(Clone, Debug)]
pub struct GrpcTable<T> {
    entries: Vec<(GrpcMatch, T)>,
}

impl<T> GrpcTable<T> {
    /// Builds a table.
    pub fn new(mut entries: Vec<(GrpcMatch, GrpcPrecedence, T)>) -> Self {
        entries.sort_by(|a, b| a.1.cmp(&b.1));
        GrpcTable {
            entries: entries.into_iter().map(|(m, _, t)| (m, t)).collect(),
        }
    }

    /// The winning entry.
    pub fn find(&self, path: &str, headers: &HeaderMap) -> Option<&T> {
        self.entries
            .iter()
            .find(|(m, _)| m.matches(path, headers))
            .map(|(_, t)| t)
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of matches.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests;
