//! Differential fuzzing of the HTTP matcher: for an arbitrary table and request, the fast
//! `HttpTable::find` (path values looked up by hash) must pick the same entry as the linear reference matcher
//! `HttpTable::find_reference`.

#![no_main]

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use loom_core::input::Timestamp;
use loom_core::route::header::{HeaderMatch, QueryMatch, ValueMatch};
use loom_core::route::path::{PathMatch, normalize};
use loom_core::route::{HttpMatch, HttpPrecedence, HttpTable, RequestView, RouteOrder};

/// A path segment: mostly from a small alphabet, so that matches and requests overlap.
#[derive(Arbitrary, Debug)]
enum Segment<'a> {
    A,
    B,
    Ab,
    C,
    Empty,
    Dot,
    Raw(&'a str),
}

impl Segment<'_> {
    fn as_str(&self) -> &str {
        match self {
            Segment::A => "a",
            Segment::B => "b",
            Segment::Ab => "ab",
            Segment::C => "c",
            Segment::Empty => "",
            Segment::Dot => ".",
            Segment::Raw(s) => s,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Path<'a> {
    segments: Vec<Segment<'a>>,
    trailing_slash: bool,
}

impl Path<'_> {
    fn render(&self) -> String {
        let mut p = String::new();
        for s in &self.segments {
            p.push('/');
            p.push_str(s.as_str());
        }
        if self.trailing_slash || p.is_empty() {
            p.push('/');
        }
        p
    }
}

const REGEXES: &[&str] = &[
    "/a.*",
    "/a/[bc]",
    "/.*/c",
    "/ab?",
    "/b|/a/b/c",
    "/[^/]*",
    "/a/.+/c",
];

#[derive(Arbitrary, Debug)]
enum PathSpec<'a> {
    Exact(Path<'a>),
    Prefix(Path<'a>),
    Regex(u8),
    RawRegex(&'a str),
}

#[derive(Arbitrary, Debug)]
enum Name {
    X,
    Y,
    Z,
}

#[derive(Arbitrary, Debug)]
enum Value<'a> {
    One,
    Two,
    Regex12,
    Raw(&'a str),
}

impl Value<'_> {
    fn compile(&self) -> Option<ValueMatch> {
        match self {
            Value::One => Some(ValueMatch::Exact("1".into())),
            Value::Two => Some(ValueMatch::Exact("2".into())),
            Value::Regex12 => ValueMatch::parse(Some("RegularExpression"), "[12]").ok(),
            Value::Raw(s) => Some(ValueMatch::Exact((*s).to_owned())),
        }
    }
}

fn header_name(n: &Name) -> HeaderName {
    HeaderName::from_static(match n {
        Name::X => "x",
        Name::Y => "y",
        Name::Z => "z",
    })
}

fn query_name(n: &Name) -> &'static str {
    match n {
        Name::X => "q",
        Name::Y => "r",
        Name::Z => "s",
    }
}

#[derive(Arbitrary, Debug)]
enum FuzzMethod {
    Get,
    Post,
    Put,
}

impl FuzzMethod {
    fn method(&self) -> Method {
        match self {
            FuzzMethod::Get => Method::GET,
            FuzzMethod::Post => Method::POST,
            FuzzMethod::Put => Method::PUT,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Match<'a> {
    path: PathSpec<'a>,
    method: Option<FuzzMethod>,
    headers: Vec<(Name, Value<'a>)>,
    query: Vec<(Name, Value<'a>)>,
    // Tie-breaks.
    created: Option<u8>,
    namespace: u8,
    name: u8,
    rule: u8,
    match_index: u8,
}

#[derive(Arbitrary, Debug)]
enum RequestPath<'a> {
    Built(Path<'a>),
    Raw(&'a str),
}

#[derive(Arbitrary, Debug)]
struct Request<'a> {
    method: FuzzMethod,
    path: RequestPath<'a>,
    query: Option<Vec<(Name, Value<'a>)>>,
    headers: Vec<(Name, Value<'a>)>,
}

#[derive(Arbitrary, Debug)]
struct Case<'a> {
    table: Vec<Match<'a>>,
    requests: Vec<Request<'a>>,
}

fn compile_match(m: &Match<'_>) -> Option<HttpMatch> {
    let path = match &m.path {
        PathSpec::Exact(p) => PathMatch::parse(Some("Exact"), Some(&p.render())).ok()?,
        PathSpec::Prefix(p) => PathMatch::parse(Some("PathPrefix"), Some(&p.render())).ok()?,
        PathSpec::Regex(i) => PathMatch::parse(
            Some("RegularExpression"),
            Some(REGEXES[usize::from(*i) % REGEXES.len()]),
        )
        .ok()?,
        PathSpec::RawRegex(r) if r.len() <= 32 => {
            PathMatch::parse(Some("RegularExpression"), Some(r)).ok()?
        }
        PathSpec::RawRegex(_) => return None,
    };
    let headers = m
        .headers
        .iter()
        .map(|(n, v)| {
            Some(HeaderMatch {
                name: header_name(n),
                value: v.compile()?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let query = m
        .query
        .iter()
        .map(|(n, v)| {
            Some(QueryMatch {
                name: query_name(n).into(),
                value: v.compile()?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(HttpMatch {
        path,
        method: m.method.as_ref().map(FuzzMethod::method),
        headers,
        query,
    })
}

fn order(m: &Match<'_>) -> RouteOrder {
    let created = m
        .created
        .map(|s| format!("2026-01-01T00:00:{:02}Z", s % 60));
    RouteOrder {
        created: Timestamp::parse(created.as_deref()),
        namespace: format!("ns{}", m.namespace % 3).into(),
        name: format!("r{}", m.name % 3).into(),
        rule: usize::from(m.rule % 4),
        match_index: usize::from(m.match_index % 3),
    }
}

fn value_str<'a>(v: &Value<'a>) -> &'a str {
    match v {
        Value::One => "1",
        Value::Two => "2",
        Value::Regex12 => "12",
        Value::Raw(s) => s,
    }
}

fuzz_target!(|case: Case<'_>| {
    let entries: Vec<(HttpMatch, HttpPrecedence, usize)> = case
        .table
        .iter()
        .take(64)
        .filter_map(|m| {
            let compiled = compile_match(m)?;
            let precedence = HttpPrecedence::of(&compiled, order(m));
            Some((compiled, precedence))
        })
        .enumerate()
        .map(|(id, (m, p))| (m, p, id))
        .collect();
    let table = HttpTable::new(entries);
    for r in case.requests.iter().take(16) {
        let raw = match &r.path {
            RequestPath::Built(p) => p.render(),
            RequestPath::Raw(s) => (*s).to_owned(),
        };
        // Matching sees normalised paths only.
        let Ok(path) = normalize(&raw) else { continue };
        let query = r.query.as_ref().map(|q| {
            q.iter()
                .map(|(n, v)| format!("{}={}", query_name(n), value_str(v)))
                .collect::<Vec<_>>()
                .join("&")
        });
        let mut headers = HeaderMap::new();
        for (n, v) in &r.headers {
            if let Ok(v) = HeaderValue::from_str(value_str(v)) {
                headers.append(header_name(n), v);
            }
        }
        let method = r.method.method();
        let view = RequestView {
            method: &method,
            path: &path,
            query: query.as_deref(),
            headers: &headers,
        };
        let fast = table.find(&view).map(|(_, id)| *id);
        let reference = table.find_reference(&view).map(|(_, id)| *id);
        assert_eq!(
            fast, reference,
            "path {path:?} query {query:?} headers {headers:?} method {method}"
        );
    }
});
