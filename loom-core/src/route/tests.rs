//! Precedence unit tests, and the property that the fast matcher ([`HttpTable::find`]) and the
//! reference matcher ([`HttpTable::find_reference`]) always pick the same entry.

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use proptest::prelude::*;

use super::header::{HeaderMatch, QueryMatch, ValueMatch};
use super::path::PathMatch;
use super::*;
use crate::input::Timestamp;

fn path(type_: &str, value: &str) -> PathMatch {
    PathMatch::parse(Some(type_), Some(value)).unwrap()
}

fn on(path: PathMatch) -> HttpMatch {
    HttpMatch {
        path,
        method: None,
        headers: vec![],
        query: vec![],
    }
}

fn with_method(mut m: HttpMatch, method: Method) -> HttpMatch {
    m.method = Some(method);
    m
}

fn with_header(mut m: HttpMatch, name: &str, value: &str) -> HttpMatch {
    m.headers
        .push(HeaderMatch::parse(None, name, value).unwrap());
    m
}

fn with_query(mut m: HttpMatch, name: &str, value: &str) -> HttpMatch {
    m.query.push(QueryMatch {
        name: name.into(),
        value: ValueMatch::Exact(value.into()),
    });
    m
}

fn order(
    created: Option<&str>,
    namespace: &str,
    name: &str,
    rule: usize,
    match_index: usize,
) -> RouteOrder {
    RouteOrder {
        created: Timestamp::parse(created),
        namespace: namespace.into(),
        name: name.into(),
        rule,
        match_index,
    }
}

/// A route order that does not decide anything (same for every entry).
fn same() -> RouteOrder {
    order(None, "default", "route", 0, 0)
}

fn table(entries: Vec<(HttpMatch, RouteOrder, &'static str)>) -> HttpTable<&'static str> {
    HttpTable::new(
        entries
            .into_iter()
            .map(|(m, o, id)| {
                let p = HttpPrecedence::of(&m, o);
                (m, p, id)
            })
            .collect(),
    )
}

struct Req<'a> {
    method: Method,
    path: &'a str,
    query: Option<&'a str>,
    headers: HeaderMap,
}

fn get(path: &str) -> Req<'_> {
    Req {
        method: Method::GET,
        path,
        query: None,
        headers: HeaderMap::new(),
    }
}

impl<'a> Req<'a> {
    fn method(mut self, m: Method) -> Self {
        self.method = m;
        self
    }

    fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.append(name, HeaderValue::from_static(value));
        self
    }

    fn query(mut self, q: &'a str) -> Self {
        self.query = Some(q);
        self
    }
}

/// The winner's id, checking that both matchers agree.
fn winner<T: Copy + PartialEq + std::fmt::Debug>(t: &HttpTable<T>, r: &Req<'_>) -> Option<T> {
    let view = RequestView {
        method: &r.method,
        path: r.path,
        query: r.query,
        headers: &r.headers,
    };
    let fast = t.find(&view).map(|(_, id)| *id);
    let reference = t.find_reference(&view).map(|(_, id)| *id);
    assert_eq!(
        fast, reference,
        "find and find_reference disagree on {} {}",
        r.method, r.path
    );
    fast
}

#[test]
fn exact_beats_longest_prefix_beats_shorter_prefix() {
    let t = table(vec![
        (on(path("PathPrefix", "/")), same(), "root"),
        (on(path("PathPrefix", "/a")), same(), "prefix /a"),
        (on(path("PathPrefix", "/a/b")), same(), "prefix /a/b"),
        (on(path("Exact", "/a/b")), same(), "exact /a/b"),
    ]);
    assert_eq!(winner(&t, &get("/a/b")), Some("exact /a/b"));
    assert_eq!(winner(&t, &get("/a/b/")), Some("prefix /a/b"));
    assert_eq!(winner(&t, &get("/a/b/c")), Some("prefix /a/b"));
    assert_eq!(winner(&t, &get("/a/bc")), Some("prefix /a"));
    assert_eq!(winner(&t, &get("/a")), Some("prefix /a"));
    assert_eq!(winner(&t, &get("/ab")), Some("root"));
    assert_eq!(winner(&t, &get("/")), Some("root"));
}

#[test]
fn a_path_with_a_trailing_slash_goes_to_the_prefix_it_extends_not_to_an_exact_match() {
    // The index has no key for `/p/`: it is found through `/p`, whose Exact entries do not
    // match it, and never through a shorter prefix's catch-all.
    let t = table(vec![
        (on(path("PathPrefix", "/")), same(), "root"),
        (on(path("PathPrefix", "/ab")), same(), "prefix /ab"),
        (on(path("Exact", "/x")), same(), "exact /x"),
        (on(path("PathPrefix", "/y")), same(), "prefix /y"),
        (on(path("Exact", "/y/")), same(), "exact /y/"),
    ]);
    assert_eq!(winner(&t, &get("/ab/")), Some("prefix /ab"));
    assert_eq!(winner(&t, &get("/ab//")), Some("prefix /ab"));
    assert_eq!(winner(&t, &get("/x/")), Some("root"));
    assert_eq!(winner(&t, &get("/y/")), Some("exact /y/"));
    assert_eq!(winner(&t, &get("/y")), Some("prefix /y"));
    assert_eq!(winner(&t, &get("/y/z")), Some("prefix /y"));
}

#[test]
fn prefix_length_counts_characters_not_segments() {
    // "/abcdef" (7 characters, 1 segment) beats "/a/b" (4 characters, 2 segments) when both
    // match; here they never overlap, so check the table order instead.
    let t = table(vec![
        (on(path("PathPrefix", "/a/b")), same(), "two segments"),
        (on(path("PathPrefix", "/abcdef")), same(), "long segment"),
    ]);
    let ids: Vec<_> = t.entries().map(|(_, id)| *id).collect();
    assert_eq!(ids, ["long segment", "two segments"]);
    // A trailing slash in the value does not make a prefix longer.
    let t = table(vec![
        (
            on(path("PathPrefix", "/a/")),
            order(None, "a", "first", 0, 0),
            "slash",
        ),
        (
            on(path("PathPrefix", "/a")),
            order(None, "b", "second", 0, 0),
            "no slash",
        ),
    ]);
    assert_eq!(winner(&t, &get("/a/x")), Some("slash"));
}

#[test]
fn regex_sits_between_exact_and_prefix() {
    let t = table(vec![
        (on(path("PathPrefix", "/v1/items")), same(), "prefix"),
        (
            on(path("RegularExpression", "/v[0-9]+/.*")),
            same(),
            "regex",
        ),
        (on(path("Exact", "/v1/items")), same(), "exact"),
    ]);
    assert_eq!(winner(&t, &get("/v1/items")), Some("exact"));
    assert_eq!(winner(&t, &get("/v1/items/3")), Some("regex"));
    assert_eq!(winner(&t, &get("/vx/items/3")), None);
}

#[test]
fn path_beats_method() {
    let t = table(vec![
        (
            with_method(on(path("PathPrefix", "/a")), Method::GET),
            same(),
            "GET /a",
        ),
        (on(path("PathPrefix", "/a/b")), same(), "/a/b"),
    ]);
    assert_eq!(winner(&t, &get("/a/b")), Some("/a/b"));
    assert_eq!(winner(&t, &get("/a")), Some("GET /a"));
    assert_eq!(winner(&t, &get("/a").method(Method::POST)), None);
}

#[test]
fn method_match_beats_no_method() {
    let t = table(vec![
        // Older route without a method: it would win every other tie.
        (
            on(path("PathPrefix", "/a")),
            order(Some("2020-01-01T00:00:00Z"), "a", "a", 0, 0),
            "any",
        ),
        (
            with_method(on(path("PathPrefix", "/a")), Method::POST),
            order(Some("2024-01-01T00:00:00Z"), "z", "z", 3, 2),
            "POST",
        ),
    ]);
    assert_eq!(winner(&t, &get("/a").method(Method::POST)), Some("POST"));
    assert_eq!(winner(&t, &get("/a")), Some("any"));
}

#[test]
fn method_beats_header_count() {
    let t = table(vec![
        (
            with_header(with_header(on(path("PathPrefix", "/")), "x", "1"), "y", "1"),
            same(),
            "2 headers",
        ),
        (
            with_method(on(path("PathPrefix", "/")), Method::GET),
            same(),
            "GET",
        ),
    ]);
    assert_eq!(
        winner(&t, &get("/").header("x", "1").header("y", "1")),
        Some("GET")
    );
    let put = get("/")
        .method(Method::PUT)
        .header("x", "1")
        .header("y", "1");
    assert_eq!(winner(&t, &put), Some("2 headers"));
}

#[test]
fn more_headers_beat_fewer() {
    let t = table(vec![
        (on(path("PathPrefix", "/")), same(), "none"),
        (
            with_header(on(path("PathPrefix", "/")), "x", "1"),
            same(),
            "x",
        ),
        (
            with_header(with_header(on(path("PathPrefix", "/")), "x", "1"), "y", "1"),
            same(),
            "x+y",
        ),
    ]);
    assert_eq!(
        winner(&t, &get("/").header("x", "1").header("y", "1")),
        Some("x+y")
    );
    assert_eq!(
        winner(&t, &get("/").header("x", "1").header("y", "2")),
        Some("x")
    );
    assert_eq!(winner(&t, &get("/").header("X", "1")), Some("x"));
    assert_eq!(winner(&t, &get("/").header("y", "1")), Some("none"));
}

#[test]
fn header_count_beats_query_count() {
    let t = table(vec![
        (
            with_query(with_query(on(path("PathPrefix", "/")), "a", "1"), "b", "1"),
            same(),
            "2 params",
        ),
        (
            with_header(on(path("PathPrefix", "/")), "x", "1"),
            same(),
            "1 header",
        ),
    ]);
    assert_eq!(
        winner(&t, &get("/").header("x", "1").query("a=1&b=1")),
        Some("1 header")
    );
    assert_eq!(winner(&t, &get("/").query("a=1&b=1")), Some("2 params"));
}

#[test]
fn more_query_params_beat_fewer() {
    let t = table(vec![
        (
            with_query(on(path("PathPrefix", "/")), "a", "1"),
            same(),
            "a",
        ),
        (
            with_query(with_query(on(path("PathPrefix", "/")), "a", "1"), "b", "2"),
            same(),
            "a+b",
        ),
        (on(path("PathPrefix", "/")), same(), "none"),
    ]);
    assert_eq!(winner(&t, &get("/").query("b=2&a=1")), Some("a+b"));
    assert_eq!(winner(&t, &get("/").query("a=1&b=3")), Some("a"));
    assert_eq!(winner(&t, &get("/").query("b=2")), Some("none"));
    assert_eq!(winner(&t, &get("/")), Some("none"));
}

#[test]
fn oldest_route_wins_a_tie() {
    let m = || on(path("PathPrefix", "/a"));
    let t = table(vec![
        (
            m(),
            order(Some("2024-01-01T00:00:00Z"), "a", "a", 0, 0),
            "newer",
        ),
        (
            m(),
            order(Some("2023-06-01T00:00:00Z"), "z", "z", 5, 5),
            "older",
        ),
    ]);
    assert_eq!(winner(&t, &get("/a")), Some("older"));
    // An absent timestamp sorts before any present one.
    let t = table(vec![
        (
            m(),
            order(Some("1970-01-01T00:00:00Z"), "a", "a", 0, 0),
            "epoch",
        ),
        (m(), order(None, "z", "z", 0, 0), "none"),
    ]);
    assert_eq!(winner(&t, &get("/a")), Some("none"));
}

#[test]
fn then_namespace_slash_name_wins() {
    let m = || on(path("PathPrefix", "/a"));
    let ts = Some("2024-01-01T00:00:00Z");
    let t = table(vec![
        (m(), order(ts, "b", "a", 0, 0), "b/a"),
        (m(), order(ts, "a", "z", 1, 0), "a/z"),
        (m(), order(ts, "a", "y", 2, 0), "a/y"),
    ]);
    assert_eq!(winner(&t, &get("/a")), Some("a/y"));
    let ids: Vec<_> = t.entries().map(|(_, id)| *id).collect();
    assert_eq!(ids, ["a/y", "a/z", "b/a"]);
}

#[test]
fn then_first_rule_then_first_match() {
    let m = || on(path("PathPrefix", "/a"));
    let t = table(vec![
        (m(), order(None, "ns", "r", 2, 0), "rule 2"),
        (m(), order(None, "ns", "r", 1, 1), "rule 1 match 1"),
        (m(), order(None, "ns", "r", 1, 0), "rule 1 match 0"),
    ]);
    let ids: Vec<_> = t.entries().map(|(_, id)| *id).collect();
    assert_eq!(ids, ["rule 1 match 0", "rule 1 match 1", "rule 2"]);
    assert_eq!(winner(&t, &get("/a/x")), Some("rule 1 match 0"));
}

#[test]
fn falls_back_to_shorter_prefix_when_header_fails() {
    let t = table(vec![
        (on(path("PathPrefix", "/")), same(), "root"),
        (on(path("PathPrefix", "/a")), same(), "/a"),
        (
            with_header(on(path("PathPrefix", "/a/b")), "x", "1"),
            same(),
            "/a/b with x",
        ),
        (
            with_header(on(path("Exact", "/a/b/c")), "y", "1"),
            same(),
            "exact with y",
        ),
    ]);
    assert_eq!(
        winner(&t, &get("/a/b/c").header("y", "1")),
        Some("exact with y")
    );
    assert_eq!(
        winner(&t, &get("/a/b/c").header("x", "1")),
        Some("/a/b with x")
    );
    assert_eq!(winner(&t, &get("/a/b/c")), Some("/a"));
    assert_eq!(winner(&t, &get("/a/b")), Some("/a"));
    assert_eq!(winner(&t, &get("/a/b/")), Some("/a"));
    assert_eq!(winner(&t, &get("/b")), Some("root"));
}

#[test]
fn falls_back_across_method_and_query() {
    let t = table(vec![
        (
            with_query(on(path("Exact", "/a")), "v", "2"),
            same(),
            "exact v=2",
        ),
        (
            with_method(on(path("PathPrefix", "/a")), Method::DELETE),
            same(),
            "DELETE /a",
        ),
        (on(path("RegularExpression", "/a|/b")), same(), "regex"),
        (on(path("PathPrefix", "/")), same(), "root"),
    ]);
    assert_eq!(winner(&t, &get("/a").query("v=2")), Some("exact v=2"));
    assert_eq!(winner(&t, &get("/a").query("v=1")), Some("regex"));
    assert_eq!(
        winner(&t, &get("/a/x").method(Method::DELETE)),
        Some("DELETE /a")
    );
    assert_eq!(winner(&t, &get("/a/x")), Some("root"));
}

#[test]
fn repeated_headers_match_any_value_or_the_joined_value() {
    let t = table(vec![(
        with_header(on(path("PathPrefix", "/")), "x", "1,2"),
        same(),
        "joined",
    )]);
    assert_eq!(
        winner(&t, &get("/").header("x", "1").header("x", "2")),
        Some("joined")
    );
    assert_eq!(winner(&t, &get("/").header("x", "1")), None);
}

#[test]
fn exact_and_prefix_values_with_special_characters() {
    // Route patterns give `{`, `}`, `*` and `:` meaning; the index takes them literally.
    let t = table(vec![
        (on(path("Exact", "/a*b")), same(), "star"),
        (on(path("PathPrefix", "/:id")), same(), "colon"),
        (on(path("PathPrefix", "/x")), same(), "x"),
    ]);
    assert_eq!(winner(&t, &get("/a*b")), Some("star"));
    assert_eq!(winner(&t, &get("/aXb")), None);
    assert_eq!(winner(&t, &get("/:id/1")), Some("colon"));
    assert_eq!(winner(&t, &get("/7")), None);
    assert_eq!(winner(&t, &get("/x/{y}")), Some("x"));
}

#[test]
fn empty_table_matches_nothing() {
    let t = table(vec![]);
    assert!(t.is_empty());
    assert_eq!(winner(&t, &get("/")), None);
}

// ---------------------------------------------------------------------------------------------
// Property: `find` and `find_reference` agree.

const MATCH_PATHS: &[&str] = &[
    "/", "/a", "/a/", "/a/b", "/a/b/", "/ab", "/a/b/c", "/b", "/a/bc",
];
const REGEXES: &[&str] = &["/a.*", "/a/[bc]", "/.*/c", "/ab?", "/b|/a/b/c"];
const SEGMENTS: &[&str] = &["a", "b", "ab", "c", "bc", ""];
const HEADER_NAMES: &[&str] = &["x", "y"];
const VALUES: &[&str] = &["1", "2"];
const QUERY_NAMES: &[&str] = &["q", "r"];

fn arb_path_match() -> impl Strategy<Value = PathMatch> {
    prop_oneof![
        4 => prop::sample::select(MATCH_PATHS).prop_map(|v| path("PathPrefix", v)),
        3 => prop::sample::select(MATCH_PATHS).prop_map(|v| path("Exact", v)),
        1 => prop::sample::select(REGEXES).prop_map(|v| path("RegularExpression", v)),
    ]
}

fn arb_value_match() -> impl Strategy<Value = ValueMatch> {
    prop_oneof![
        4 => prop::sample::select(VALUES).prop_map(|v| ValueMatch::Exact(v.into())),
        1 => Just(ValueMatch::parse(Some("RegularExpression"), "[12]").unwrap()),
    ]
}

fn arb_http_match() -> impl Strategy<Value = HttpMatch> {
    (
        arb_path_match(),
        prop::option::weighted(0.3, prop::sample::select(vec![Method::GET, Method::POST])),
        prop::collection::vec(
            (prop::sample::select(HEADER_NAMES), arb_value_match()),
            0..=2,
        ),
        prop::collection::vec(
            (prop::sample::select(QUERY_NAMES), arb_value_match()),
            0..=2,
        ),
    )
        .prop_map(|(path, method, headers, query)| HttpMatch {
            path,
            method,
            headers: headers
                .into_iter()
                .map(|(n, value)| HeaderMatch {
                    name: HeaderName::from_static(n),
                    value,
                })
                .collect(),
            query: query
                .into_iter()
                .map(|(n, value)| QueryMatch {
                    name: n.into(),
                    value,
                })
                .collect(),
        })
}

fn arb_order() -> impl Strategy<Value = RouteOrder> {
    (
        prop::sample::select(vec![
            None,
            Some("2024-01-01T00:00:00Z"),
            Some("2025-01-01T00:00:00Z"),
        ]),
        prop::sample::select(vec!["a", "b"]),
        prop::sample::select(vec!["r1", "r2"]),
        0..3usize,
        0..2usize,
    )
        .prop_map(|(created, ns, name, rule, mi)| order(created, ns, name, rule, mi))
}

#[derive(Debug, Clone)]
struct ArbRequest {
    method: Method,
    path: String,
    query: Option<String>,
    headers: Vec<(&'static str, &'static str)>,
}

impl ArbRequest {
    fn header_map(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (k, v) in &self.headers {
            headers.append(*k, HeaderValue::from_static(v));
        }
        headers
    }

    fn view<'a>(&'a self, headers: &'a HeaderMap) -> RequestView<'a> {
        RequestView {
            method: &self.method,
            path: &self.path,
            query: self.query.as_deref(),
            headers,
        }
    }
}

fn arb_request_path() -> impl Strategy<Value = String> {
    prop_oneof![
        // Paths built from the same vocabulary as the match values, so that they often hit.
        (
            prop::collection::vec(prop::sample::select(SEGMENTS), 0..=4),
            any::<bool>()
        )
            .prop_map(|(segs, trailing)| {
                let mut p = String::new();
                for s in segs {
                    p.push('/');
                    p.push_str(s);
                }
                if trailing || p.is_empty() {
                    p.push('/');
                }
                p
            }),
        prop::sample::select(MATCH_PATHS).prop_map(str::to_owned),
    ]
}

fn arb_request() -> impl Strategy<Value = ArbRequest> {
    (
        prop::sample::select(vec![Method::GET, Method::POST, Method::PUT]),
        arb_request_path(),
        prop::collection::vec(
            (
                prop::sample::select(QUERY_NAMES),
                prop::sample::select(vec!["1", "2", "3"]),
            ),
            0..=3,
        ),
        prop::collection::vec(
            (
                prop::sample::select(HEADER_NAMES),
                prop::sample::select(vec!["1", "2", "3"]),
            ),
            0..=3,
        ),
    )
        .prop_map(|(method, path, query, headers)| ArbRequest {
            method,
            path,
            query: (!query.is_empty()).then(|| {
                query
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("&")
            }),
            headers,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn find_agrees_with_find_reference(
        matches in prop::collection::vec((arb_http_match(), arb_order()), 0..12),
        requests in prop::collection::vec(arb_request(), 1..16),
    ) {
        let table = HttpTable::new(
            matches
                .into_iter()
                .enumerate()
                .map(|(id, (m, o))| {
                    let p = HttpPrecedence::of(&m, o);
                    (m, p, id)
                })
                .collect(),
        );
        for r in &requests {
            let headers = r.header_map();
            let view = r.view(&headers);
            let fast = table.find(&view).map(|(_, id)| *id);
            let reference = table.find_reference(&view).map(|(_, id)| *id);
            prop_assert_eq!(fast, reference, "request {:?}", r);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// `HttpTable::update`: what it takes from the last table, and that it builds what `new` builds.

/// The entries of a table by id, in precedence order.
fn ids(t: &HttpTable<usize>) -> Vec<usize> {
    t.entries().map(|(_, id)| *id).collect()
}

/// A table of `pool`'s entries named by `offered` (an entry's id is its index in `pool`).
fn update(
    last: Option<&HttpTable<usize>>,
    pool: &[(HttpMatch, RouteOrder)],
    offered: &[usize],
) -> HttpTable<usize> {
    let offers: Vec<_> = offered
        .iter()
        .map(|&i| (&pool[i].0, EntryId(i, 0)))
        .collect();
    HttpTable::update(last, &offers, |o| {
        let (m, order) = &pool[offered[o]];
        (HttpPrecedence::of(m, order.clone()), offered[o])
    })
}

fn built_new(pool: &[(HttpMatch, RouteOrder)], offered: &[usize]) -> HttpTable<usize> {
    HttpTable::new(
        offered
            .iter()
            .map(|&i| {
                let (m, order) = &pool[i];
                (m.clone(), HttpPrecedence::of(m, order.clone()), i)
            })
            .collect(),
    )
}

#[test]
fn update_takes_every_path_whose_entries_are_the_same_and_builds_the_others() {
    let pool = vec![
        (on(path("PathPrefix", "/a")), order(None, "ns", "r1", 0, 0)),
        (on(path("PathPrefix", "/b")), order(None, "ns", "r2", 0, 0)),
        (on(path("Exact", "/c")), order(None, "ns", "r3", 0, 0)),
        (on(path("PathPrefix", "/b")), order(None, "ns", "r4", 0, 0)),
        (
            on(path("RegularExpression", "/d.*")),
            order(None, "ns", "r5", 0, 0),
        ),
    ];
    let first = update(None, &pool, &[0, 1, 2, 4]);
    // Entry 3 joins `/b`: that path is built again; `/a`, `/c` and the regexes are taken.
    let second = update(Some(&first), &pool, &[0, 1, 2, 3, 4]);
    assert!(Arc::ptr_eq(&first.prefix["/a"], &second.prefix["/a"]));
    assert!(Arc::ptr_eq(&first.exact["/c"], &second.exact["/c"]));
    assert!(Arc::ptr_eq(
        first.regex.as_ref().unwrap(),
        second.regex.as_ref().unwrap()
    ));
    assert!(!Arc::ptr_eq(&first.prefix["/b"], &second.prefix["/b"]));
    assert_eq!(ids(&second), ids(&built_new(&pool, &[0, 1, 2, 3, 4])));
    assert_eq!(
        winner(&second, &get("/b/x")),
        Some(1),
        "r2 is older by name"
    );
    // Offered in another order, a path is built again (its ids differ) to the same result.
    let third = update(Some(&second), &pool, &[0, 3, 1, 2, 4]);
    assert!(!Arc::ptr_eq(&second.prefix["/b"], &third.prefix["/b"]));
    assert_eq!(ids(&third), ids(&second));
    // A path no longer offered is gone.
    let fourth = update(Some(&third), &pool, &[1, 3]);
    assert_eq!(ids(&fourth), [1, 3]);
    assert_eq!(winner(&fourth, &get("/a")), None);
    assert_eq!(winner(&fourth, &get("/c")), None);
    assert_eq!(winner(&fourth, &get("/dx")), None);
    assert_eq!(fourth.len(), 2);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// One table after another, each offered entries of a shared pool (an id is always the
    /// same entry): each is the table `new` builds, and finds what the reference finds.
    #[test]
    fn update_builds_what_new_builds_after_every_change(
        pool in prop::collection::vec((arb_http_match(), arb_order()), 1..10),
        steps in prop::collection::vec(
            prop::collection::vec(any::<prop::sample::Index>(), 0..10),
            1..6,
        ),
        requests in prop::collection::vec(arb_request(), 1..8),
    ) {
        let mut last: Option<HttpTable<usize>> = None;
        for step in steps {
            let offered: Vec<usize> = step.iter().map(|i| i.index(pool.len())).collect();
            let table = update(last.as_ref(), &pool, &offered);
            let whole = built_new(&pool, &offered);
            prop_assert_eq!(ids(&table), ids(&whole));
            prop_assert_eq!(table.len(), whole.len());
            for r in &requests {
                let headers = r.header_map();
                let view = r.view(&headers);
                let fast = table.find(&view).map(|(_, id)| *id);
                let reference = whole.find_reference(&view).map(|(_, id)| *id);
                prop_assert_eq!(fast, reference, "request {:?}", r);
            }
            last = Some(table);
        }
    }
}

#[test]
fn covering_prefixes_are_longest_first_and_segment_aligned() {
    let all = |path| super::covering_prefixes(path, usize::MAX).collect::<Vec<_>>();
    assert_eq!(all("/a/b/c"), ["/a/b/c", "/a/b", "/a", "/"]);
    assert_eq!(all("/a/"), ["/a/", "/a", "/"]);
    assert_eq!(all("/"), ["/"]);
    assert_eq!(all(""), ["", "/"]);
    // Parts longer than the longest PathPrefix value are not looked up.
    let upto = |path, longest| super::covering_prefixes(path, longest).collect::<Vec<_>>();
    assert_eq!(upto("/ab/c/de", 5), ["/ab/c", "/ab", "/"]);
    assert_eq!(upto("/ab/c/de", 4), ["/ab", "/"]);
    assert_eq!(upto("/ab/c/de", 1), ["/"]);
    assert_eq!(upto("/ab", 3), ["/ab", "/"]);
}
