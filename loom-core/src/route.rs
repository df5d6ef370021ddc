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
use self::path::PathMatch;
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

    /// The first precedence criterion on which `self` beats `other` (for `loom explain`).
    pub fn deciding_step(&self, other: &HttpPrecedence) -> &'static str {
        let (a, b) = (&self.order, &other.order);
        if self.path_class != other.path_class {
            "path match type (Exact > RegularExpression > PathPrefix)"
        } else if self.path_len != other.path_len {
            "longer path value"
        } else if self.method != other.method {
            "method match"
        } else if self.headers != other.headers {
            "more header matches"
        } else if self.query != other.query {
            "more query parameter matches"
        } else if a.created != b.created {
            "older route (creationTimestamp)"
        } else if (&a.namespace, &a.name) != (&b.namespace, &b.name) {
            "route namespace/name, alphabetically"
        } else if a.rule != b.rule {
            "earlier rule in the route"
        } else {
            "earlier match in the rule"
        }
    }
}

/// What one matchit key leads to: the Exact entries for that literal path, and the PathPrefix
/// groups that cover it, longest prefix first (the fallback chain when a longer prefix's
/// method/header/query checks fail).
#[derive(Clone, Debug, Default)]
struct Node {
    exact: Vec<u32>,
    prefix_chain: Vec<u32>,
}

#[derive(Clone, Debug)]
struct PathIndex {
    router: matchit::Router<Node>,
    /// Entries per PathPrefix value, in precedence order.
    prefix_groups: Vec<Vec<u32>>,
}

impl PathIndex {
    /// The Exact entries for `path` and the node whose prefix chain covers it.
    fn node(&self, path: &str) -> (&[u32], Option<&Node>) {
        let found = self.router.at(path).ok();
        // A literal key (an Exact path, or a PathPrefix value itself) has no parameter.
        if let Some(m) = &found
            && m.params.is_empty()
        {
            return (&m.value.exact, Some(m.value));
        }
        // `/p/` has no key of its own unless an Exact match names it, and the catch-all
        // `/p/{*rest}` does not match it: it is covered by exactly what covers the literal
        // `/p` (a PathPrefix value never ends in `/`), whose Exact entries do not match it.
        if let Some(stripped) = path.strip_suffix('/').filter(|p| !p.is_empty())
            && let Ok(m) = self.router.at(stripped)
            && m.params.is_empty()
        {
            return (&[], Some(m.value));
        }
        (&[], found.map(|m| m.value))
    }
}

/// The HTTP rules of one virtual host, sorted by precedence, with a fast path index.
#[derive(Clone, Debug)]
pub struct HttpTable<T> {
    entries: Vec<(HttpMatch, T)>,
    precedence: Vec<HttpPrecedence>,
    index: Option<PathIndex>,
    regex: Vec<u32>,
}

impl<T> HttpTable<T> {
    /// Builds a table; entries may come in any order.
    pub fn new(mut entries: Vec<(HttpMatch, HttpPrecedence, T)>) -> Self {
        entries.sort_by(|a, b| a.1.cmp(&b.1));
        let (entries, precedence): (Vec<(HttpMatch, T)>, Vec<HttpPrecedence>) =
            entries.into_iter().map(|(m, p, t)| ((m, t), p)).unzip();
        let index = build_index(&entries);
        let regex = (0..entries.len() as u32)
            .filter(|&i| matches!(entries[i as usize].0.path, PathMatch::Regex(_)))
            .collect();
        HttpTable {
            entries,
            precedence,
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

    /// The entries in precedence order, with their precedence summaries.
    pub fn entries_with_precedence(
        &self,
    ) -> impl Iterator<Item = (&HttpMatch, &HttpPrecedence, &T)> {
        self.entries
            .iter()
            .zip(&self.precedence)
            .map(|((m, t), p)| (m, p, t))
    }

    /// The entries in precedence order.
    pub fn entries(&self) -> impl Iterator<Item = (&HttpMatch, &T)> {
        self.entries.iter().map(|(m, t)| (m, t))
    }

    /// The winning entry for a request (fast path). Allocation-free unless a header is
    /// repeated or a query value is percent-encoded.
    ///
    /// Global precedence is Exact, then RegularExpression, then PathPrefix by length: the
    /// node's Exact list, the regex list and the node's prefix chain (longest first) are each in
    /// precedence order, so scanning them in that order finds the same winner as
    /// [`Self::find_reference`].
    pub fn find(&self, req: &RequestView<'_>) -> Option<(&HttpMatch, &T)> {
        let Some(index) = &self.index else {
            return self.find_reference(req);
        };
        let (exact, node) = index.node(req.path);
        let check = |i: &u32| {
            let (m, t) = &self.entries[*i as usize];
            m.matches_except_path(req).then_some((m, t))
        };
        if let Some(hit) = exact.iter().find_map(check) {
            return Some(hit);
        }
        if let Some(hit) = self.regex.iter().find_map(|i| {
            let (m, t) = &self.entries[*i as usize];
            m.matches(req).then_some((m, t))
        }) {
            return Some(hit);
        }
        let n = node?;
        n.prefix_chain
            .iter()
            .find_map(|g| index.prefix_groups[*g as usize].iter().find_map(check))
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

/// The PathPrefix values (stored without a trailing `/`) that match `path`, longest first:
/// `path` itself, every part of it that ends before a `/`, and `/`.
fn covering_prefixes(path: &str) -> impl Iterator<Item = &str> {
    let ends = path
        .char_indices()
        .filter(|&(i, c)| c == '/' && i > 0)
        .map(|(i, _)| i);
    std::iter::once(path.len())
        .chain(ends.collect::<Vec<_>>().into_iter().rev())
        .map(move |j| &path[..j])
        .filter(|p| *p != "/")
        .chain(std::iter::once("/"))
}

fn build_index<T>(entries: &[(HttpMatch, T)]) -> Option<PathIndex> {
    use std::collections::{BTreeMap, BTreeSet};
    // Keys: every Exact path, and for every PathPrefix `/p` the keys `/p` and `/p/{*rest}` (`/`
    // gives `/` and `/{*rest}`). Each key gets the Exact entries for its literal path and the
    // chain of prefix groups that cover every path reaching it. A catch-all never matches an
    // empty remainder: `/p/` is found through `/p` (see `PathIndex::node`). Cost: O(keys ×
    // depth).
    let mut exact: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    let mut prefix: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (i, (m, _)) in entries.iter().enumerate() {
        match &m.path {
            PathMatch::Exact(p) => exact.entry(p).or_default().push(i as u32),
            PathMatch::Prefix(p) => prefix.entry(p).or_default().push(i as u32),
            PathMatch::Regex(_) => {}
        }
    }
    let group_ids: BTreeMap<&str, u32> = prefix
        .keys()
        .enumerate()
        .map(|(g, p)| (*p, g as u32))
        .collect();
    // PathPrefix values are kept without a trailing `/` (except `/`), so `/p/` and `/p` have
    // the same covering groups: one chain serves both of a prefix's keys.
    let chain = |path: &str| -> Vec<u32> {
        covering_prefixes(path)
            .filter_map(|p| group_ids.get(p).copied())
            .collect()
    };
    let mut router = matchit::Router::new();
    let literals: BTreeSet<&str> = exact.keys().chain(prefix.keys()).copied().collect();
    for path in literals {
        let prefix_chain = chain(path);
        if prefix.contains_key(path) {
            let rest = match path {
                "/" => "/{*rest}".to_owned(),
                p => format!("{}/{{*rest}}", escape(p)),
            };
            let node = Node {
                exact: vec![],
                prefix_chain: prefix_chain.clone(),
            };
            router.insert(rest, node).ok()?;
        }
        let node = Node {
            exact: exact.get(path).cloned().unwrap_or_default(),
            prefix_chain,
        };
        router.insert(escape(path), node).ok()?;
    }
    Some(PathIndex {
        router,
        prefix_groups: prefix.into_values().collect(),
    })
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

    /// The entries in precedence order.
    pub fn entries(&self) -> impl Iterator<Item = (&GrpcMatch, &T)> {
        self.entries.iter().map(|(m, t)| (m, t))
    }
}

#[cfg(test)]
mod tests;
