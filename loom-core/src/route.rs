//! Request matching: the compiled form of HTTPRoute and GRPCRoute matches, their precedence,
//! and two matchers over one table — a fast one (path values in hash maps) and a linear
//! reference matcher written straight from the spec. Property tests check that they always
//! agree.
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
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use foldhash::fast::FixedState;
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
/// match order. The names are shared: each match of a route carries one of these.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RouteOrder {
    /// Creation time.
    pub created: Timestamp,
    /// Namespace.
    pub namespace: Arc<str>,
    /// Name.
    pub name: Arc<str>,
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

/// What identifies one entry offered to [`HttpTable::update`] across builds: two entries with
/// the same id, in this build and in the last table, must be the same entry (match,
/// precedence and value). Loom's compile uses the address of a rule the last table still
/// holds, and the match's index in the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EntryId(pub usize, pub usize);

#[derive(Debug)]
struct Entry<T> {
    m: HttpMatch,
    precedence: HttpPrecedence,
    value: T,
}

/// The entries of one path value (all Exact for it, or all PathPrefix for it, or every
/// RegularExpression), in precedence order.
#[derive(Debug)]
struct Group<T> {
    entries: Vec<Entry<T>>,
    /// The ids of the entries in the order they were offered: the group is taken as it is
    /// when the same ids come again.
    ids: Box<[EntryId]>,
}

impl<T> Group<T> {
    fn new(mut entries: Vec<Entry<T>>, ids: Box<[EntryId]>) -> Arc<Self> {
        entries.sort_by(|a, b| a.precedence.cmp(&b.precedence));
        Arc::new(Group { entries, ids })
    }
}

/// Groups by path value.
type Paths<T> = HashMap<Arc<str>, Arc<Group<T>>, FixedState>;

/// The hasher of a table's path values: foldhash (a lookup hashes a few short strings per
/// request), seeded at random for each table, since a route's author picks the values.
pub(crate) fn hasher() -> FixedState {
    FixedState::with_seed(std::hash::RandomState::new().hash_one(0u8))
}

/// The HTTP rules of one virtual host: Exact and PathPrefix entries grouped by their path
/// value, each group in precedence order, and the RegularExpression entries in precedence
/// order.
///
/// A request's path is looked up as itself among the Exact values, and as itself and each
/// part of it that ends before a `/` (longest first, then `/`) among the PathPrefix values: a
/// few hash lookups, whatever the size of the table. Building one takes no sort across
/// groups, and [`HttpTable::update`] takes every group whose entries did not change from the
/// last table, so that one route changed among thousands on a hostname costs its own paths.
pub struct HttpTable<T> {
    exact: Paths<T>,
    prefix: Paths<T>,
    regex: Option<Arc<Group<T>>>,
    /// Characters in the longest PathPrefix value: longer parts of a path are not looked up.
    longest_prefix: usize,
    len: usize,
}

impl<T> Clone for HttpTable<T> {
    fn clone(&self) -> Self {
        HttpTable {
            exact: self.exact.clone(),
            prefix: self.prefix.clone(),
            regex: self.regex.clone(),
            longest_prefix: self.longest_prefix,
            len: self.len,
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for HttpTable<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.sorted()).finish()
    }
}

/// Which group an entry goes to.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Slot<'a> {
    Exact(&'a str),
    Prefix(&'a str),
    Regex,
}

impl<'a> Slot<'a> {
    fn of(m: &'a HttpMatch) -> Self {
        match &m.path {
            PathMatch::Exact(p) => Slot::Exact(p),
            PathMatch::Prefix(p) => Slot::Prefix(p),
            PathMatch::Regex(_) => Slot::Regex,
        }
    }
}

impl<T> HttpTable<T> {
    /// Builds a table; entries may come in any order.
    pub fn new(entries: Vec<(HttpMatch, HttpPrecedence, T)>) -> Self {
        let (matches, mut made): (Vec<_>, Vec<_>) = entries
            .into_iter()
            .map(|(m, precedence, value)| (m, Some((precedence, value))))
            .unzip();
        let offers: Vec<_> = (matches.iter().enumerate())
            .map(|(i, m)| (m, EntryId(i, 0)))
            .collect();
        // Without a last table every group is built: each entry is made once.
        Self::update(None, &offers, |i| {
            made[i].take().expect("an entry is made once")
        })
    }

    /// Builds a table from the entries `offers` names (the match and its id, in a
    /// deterministic order), taking from `last` each group whose entries have the same ids in
    /// the same order, and making the others' entries with `make` (called once with the index
    /// of each of their offers). The result is the table [`HttpTable::new`] builds from the
    /// same entries.
    pub fn update(
        last: Option<&Self>,
        offers: &[(&HttpMatch, EntryId)],
        mut make: impl FnMut(usize) -> (HttpPrecedence, T),
    ) -> Self {
        // Offers of one group chained by index (`next`), in the order given, without a list
        // per group.
        const END: u32 = u32::MAX;
        let mut ends: HashMap<Slot<'_>, (u32, u32), _> =
            HashMap::with_capacity_and_hasher(offers.len(), hasher());
        let mut next = vec![END; offers.len()];
        for (i, (m, _)) in offers.iter().enumerate() {
            let i = i as u32;
            ends.entry(Slot::of(m))
                .and_modify(|(_, tail)| {
                    next[*tail as usize] = i;
                    *tail = i;
                })
                .or_insert((i, i));
        }
        let members = |head: u32| {
            std::iter::successors(Some(head), |&i| {
                Some(next[i as usize]).filter(|&n| n != END)
            })
            .map(|i| i as usize)
        };
        let mut table = HttpTable::empty();
        let exact = ends.keys().filter(|s| matches!(s, Slot::Exact(_))).count();
        table.exact.reserve(exact);
        table.prefix.reserve(ends.len() - exact);
        for (slot, (head, _)) in ends {
            let same = |g: &Group<T>| {
                g.ids.len() == members(head).count()
                    && members(head)
                        .zip(g.ids.iter())
                        .all(|(i, id)| offers[i].1 == *id)
            };
            let mut build = || {
                let ids: Box<[EntryId]> = members(head).map(|i| offers[i].1).collect();
                // Sized up front: a list collected from the chain would have room for four.
                let mut entries = Vec::with_capacity(ids.len());
                entries.extend(members(head).map(|i| {
                    let (precedence, value) = make(i);
                    Entry {
                        m: offers[i].0.clone(),
                        precedence,
                        value,
                    }
                }));
                Group::new(entries, ids)
            };
            let (key, group) = match last.and_then(|l| l.slot(slot)) {
                Some((key, was)) if same(was) => (key, was.clone()),
                Some((key, _)) => (key, build()),
                None => (SlotKey::from(slot), build()),
            };
            table.put(key, group);
        }
        table
    }

    fn empty() -> Self {
        HttpTable {
            exact: Paths::with_hasher(hasher()),
            prefix: Paths::with_hasher(hasher()),
            regex: None,
            longest_prefix: 0,
            len: 0,
        }
    }

    /// The group of a slot, with its key.
    fn slot(&self, slot: Slot<'_>) -> Option<(SlotKey, &Arc<Group<T>>)> {
        match slot {
            Slot::Exact(p) => {
                (self.exact.get_key_value(p)).map(|(k, g)| (SlotKey::Exact(k.clone()), g))
            }
            Slot::Prefix(p) => {
                (self.prefix.get_key_value(p)).map(|(k, g)| (SlotKey::Prefix(k.clone()), g))
            }
            Slot::Regex => self.regex.as_ref().map(|g| (SlotKey::Regex, g)),
        }
    }

    fn put(&mut self, slot: SlotKey, group: Arc<Group<T>>) {
        self.len += group.entries.len();
        match slot {
            SlotKey::Exact(p) => {
                self.exact.insert(p, group);
            }
            SlotKey::Prefix(p) => {
                self.longest_prefix = self.longest_prefix.max(p.len());
                self.prefix.insert(p, group);
            }
            SlotKey::Regex => self.regex = Some(group),
        }
    }

    /// Number of matches in the table.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every entry, in precedence order (sorted on each call: for tools and tests, not the
    /// request path).
    fn sorted(&self) -> Vec<&Entry<T>> {
        let mut all: Vec<&Entry<T>> = self
            .exact
            .values()
            .chain(self.prefix.values())
            .chain(&self.regex)
            .flat_map(|g| &g.entries)
            .collect();
        all.sort_by(|a, b| a.precedence.cmp(&b.precedence));
        all
    }

    /// The entries in precedence order, with their precedence summaries.
    pub fn entries_with_precedence(
        &self,
    ) -> impl Iterator<Item = (&HttpMatch, &HttpPrecedence, &T)> {
        self.sorted()
            .into_iter()
            .map(|e| (&e.m, &e.precedence, &e.value))
    }

    /// The entries in precedence order.
    pub fn entries(&self) -> impl Iterator<Item = (&HttpMatch, &T)> {
        self.sorted().into_iter().map(|e| (&e.m, &e.value))
    }

    /// The values of the entries, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.exact
            .values()
            .chain(self.prefix.values())
            .chain(&self.regex)
            .flat_map(|g| g.entries.iter().map(|e| &e.value))
    }

    /// The winning entry for a request (fast path). Allocation-free unless a header is
    /// repeated or a query value is percent-encoded.
    ///
    /// Global precedence is Exact, then RegularExpression, then PathPrefix by length: the
    /// Exact group of the path, the regex group and the PathPrefix groups of the path's
    /// covering prefixes (longest first) are each in precedence order, so scanning them in
    /// that order finds the same winner as [`Self::find_reference`].
    pub fn find(&self, req: &RequestView<'_>) -> Option<(&HttpMatch, &T)> {
        let check = |e: &&Entry<T>| e.m.matches_except_path(req);
        let exact = self
            .exact
            .get(req.path)
            .and_then(|g| g.entries.iter().find(check));
        let hit = exact
            .or_else(|| {
                let regex = self.regex.as_ref()?;
                regex.entries.iter().find(|e| e.m.matches(req))
            })
            .or_else(|| {
                if self.prefix.is_empty() {
                    return None;
                }
                covering_prefixes(req.path, self.longest_prefix)
                    .filter_map(|p| self.prefix.get(p))
                    .find_map(|g| g.entries.iter().find(check))
            })?;
        Some((&hit.m, &hit.value))
    }

    /// The winning entry by a linear scan in precedence order: the spec, read literally.
    pub fn find_reference(&self, req: &RequestView<'_>) -> Option<(&HttpMatch, &T)> {
        self.sorted()
            .into_iter()
            .find(|e| e.m.matches(req))
            .map(|e| (&e.m, &e.value))
    }
}

/// A group's place, owning its key.
enum SlotKey {
    Exact(Arc<str>),
    Prefix(Arc<str>),
    Regex,
}

impl From<Slot<'_>> for SlotKey {
    fn from(slot: Slot<'_>) -> Self {
        match slot {
            Slot::Exact(p) => SlotKey::Exact(p.into()),
            Slot::Prefix(p) => SlotKey::Prefix(p.into()),
            Slot::Regex => SlotKey::Regex,
        }
    }
}

/// The PathPrefix values (stored without a trailing `/`) of at most `longest` characters that
/// can match `path`, longest first: `path` itself, every part of it that ends before a `/`,
/// and `/`.
fn covering_prefixes(path: &str, longest: usize) -> impl Iterator<Item = &str> {
    let bytes = path.as_bytes();
    // The end of the longest part before `end` that ends before a `/` (not the first).
    let slash_before = move |end: usize| {
        let i = bytes.get(1..end)?.iter().rposition(|&b| b == b'/')?;
        Some(i + 1)
    };
    let first = if path.len() <= longest {
        Some(path.len())
    } else {
        slash_before(longest + 1)
    };
    std::iter::successors(first, move |&end| slash_before(end))
        .map(move |end| &path[..end])
        .filter(|p| *p != "/")
        .chain(std::iter::once("/"))
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
