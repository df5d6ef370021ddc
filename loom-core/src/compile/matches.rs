//! Route matches: HTTPRouteMatch and GRPCRouteMatch values compiled (also used by the
//! rules of RateLimitPolicies).

use super::error::InvalidRule;
use crate::input::*;
use crate::route::header::{HeaderMatch, QueryMatch, ValueMatch, parse_method};
use crate::route::path::PathMatch;
use crate::route::{GrpcMatch, HttpMatch};

/// An empty list matches every request (`PathPrefix /`), as the API server defaults it.
pub(crate) fn compile_http_matches(
    matches: &[HttpRouteMatch],
) -> Result<Vec<HttpMatch>, InvalidRule> {
    if matches.is_empty() {
        return Ok(vec![HttpMatch {
            path: PathMatch::Prefix("/".into()),
            method: None,
            headers: vec![],
            query: vec![],
        }]);
    }
    exactly(
        matches.len(),
        matches.iter().map(|m| {
            let path = match &m.path {
                Some(p) => PathMatch::parse(p.type_.as_deref(), p.value.as_deref())?,
                None => PathMatch::Prefix("/".into()),
            };
            let mut headers: Vec<HeaderMatch> = Vec::with_capacity(m.headers.len());
            for h in &m.headers {
                let hm = HeaderMatch::parse(h.type_.as_deref(), &h.name, &h.value)?;
                // Spec: "only the first entry with an equivalent name MUST be considered".
                if !headers.iter().any(|x| x.name == hm.name) {
                    headers.push(hm);
                }
            }
            let mut query: Vec<QueryMatch> = Vec::with_capacity(m.query_params.len());
            for q in &m.query_params {
                if !query.iter().any(|x| x.name == q.name) {
                    query.push(QueryMatch {
                        name: q.name.clone(),
                        value: ValueMatch::parse(q.type_.as_deref(), &q.value)?,
                    });
                }
            }
            let method = m.method.as_deref().map(parse_method).transpose()?;
            Ok(HttpMatch {
                path,
                method,
                headers,
                query,
            })
        }),
    )
}

pub(crate) fn compile_grpc_matches(
    matches: &[GrpcRouteMatch],
) -> Result<Vec<GrpcMatch>, InvalidRule> {
    if matches.is_empty() {
        return Ok(vec![GrpcMatch {
            service: None,
            method: None,
            headers: vec![],
        }]);
    }
    exactly(
        matches.len(),
        matches.iter().map(|m| {
            let (service, method) = match &m.method {
                None => (None, None),
                Some(mm) => {
                    let t = mm.type_.as_deref();
                    let parse = |v: &Option<String>| {
                        v.as_deref().map(|v| ValueMatch::parse(t, v)).transpose()
                    };
                    (parse(&mm.service)?, parse(&mm.method)?)
                }
            };
            let headers = exactly(
                m.headers.len(),
                (m.headers.iter())
                    .map(|h| HeaderMatch::parse(h.type_.as_deref(), &h.name, &h.value)),
            )?;
            Ok(GrpcMatch {
                service,
                method,
                headers,
            })
        }),
    )
}

/// The `n` items' values, or the first error, in a list of exactly their number: compiled
/// matches are kept as long as their route, and a list collected from `Result`s has room for
/// four.
fn exactly<T, E>(n: usize, items: impl Iterator<Item = Result<T, E>>) -> Result<Vec<T>, E> {
    let mut out = Vec::with_capacity(n);
    for item in items {
        out.push(item?);
    }
    Ok(out)
}
