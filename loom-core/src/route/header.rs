//! Header, query parameter and method matches.

use std::borrow::Cow;

use http::{HeaderMap, HeaderName, Method};
use regex::Regex;

use super::path::anchored_regex;

/// How a value is compared.
#[derive(Clone, Debug)]
pub enum ValueMatch {
    /// Byte-for-byte.
    Exact(String),
    /// Anchored regular expression.
    Regex(Regex),
}

impl ValueMatch {
    /// Parses a match `type` (default `Exact`).
    pub fn parse(type_: Option<&str>, value: &str) -> Result<ValueMatch, InvalidMatch> {
        match type_.unwrap_or("Exact") {
            "Exact" => Ok(ValueMatch::Exact(value.into())),
            "RegularExpression" => anchored_regex(value)
                .map(ValueMatch::Regex)
                .map_err(|e| InvalidMatch(e.to_string())),
            other => Err(InvalidMatch(format!("unsupported match type {other:?}"))),
        }
    }

    /// Whether the value matches.
    pub fn matches(&self, value: &[u8]) -> bool {
        match self {
            ValueMatch::Exact(v) => v.as_bytes() == value,
            ValueMatch::Regex(r) => std::str::from_utf8(value).is_ok_and(|s| r.is_match(s)),
        }
    }
}

/// A match value that failed to parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidMatch(pub String);

/// A header match: the name is parsed (case-insensitive) at compile time.
#[derive(Clone, Debug)]
pub struct HeaderMatch {
    /// The header.
    pub name: HeaderName,
    /// The value.
    pub value: ValueMatch,
}

impl HeaderMatch {
    /// Parses a header match.
    pub fn parse(
        type_: Option<&str>,
        name: &str,
        value: &str,
    ) -> Result<HeaderMatch, InvalidMatch> {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| InvalidMatch(format!("invalid header name {name:?}")))?;
        Ok(HeaderMatch {
            name,
            value: ValueMatch::parse(type_, value)?,
        })
    }

    /// Whether any value of the header matches (or, with several header lines, their
    /// comma-joined value).
    pub fn matches(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(&self.name).iter();
        let Some(first) = values.next() else {
            return false;
        };
        if self.value.matches(first.as_bytes()) {
            return true;
        }
        let rest: Vec<_> = values.collect();
        if rest.is_empty() {
            return false;
        }
        if rest.iter().any(|v| self.value.matches(v.as_bytes())) {
            return true;
        }
        let mut joined = first.as_bytes().to_vec();
        for v in rest {
            joined.push(b',');
            joined.extend_from_slice(v.as_bytes());
        }
        self.value.matches(&joined)
    }
}

/// A query parameter match. Names are case-sensitive; the first occurrence of a repeated
/// parameter is used, as the spec recommends.
#[derive(Clone, Debug)]
pub struct QueryMatch {
    /// The parameter name.
    pub name: String,
    /// The value.
    pub value: ValueMatch,
}

impl QueryMatch {
    /// Whether the query string matches.
    pub fn matches(&self, query: Option<&str>) -> bool {
        let Some(query) = query else { return false };
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if percent_decode(k) == self.name {
                return self.value.matches(percent_decode(v).as_bytes());
            }
        }
        false
    }
}

/// Decodes `%XX` and `+` in a query component; borrows when there is nothing to decode.
pub fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let h = (b[i + 1] as char).to_digit(16);
                let l = (b[i + 2] as char).to_digit(16);
                match (h, l) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// Parses an HTTP method name.
pub fn parse_method(m: &str) -> Result<Method, InvalidMatch> {
    Method::from_bytes(m.as_bytes()).map_err(|_| InvalidMatch(format!("invalid method {m:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_match_case_insensitive_names() {
        let m = HeaderMatch::parse(None, "Version", "one").unwrap();
        let mut h = HeaderMap::new();
        assert!(!m.matches(&h));
        h.insert("version", "one".parse().unwrap());
        assert!(m.matches(&h));
        h.insert("version", "ONE".parse().unwrap());
        assert!(!m.matches(&h));
    }

    #[test]
    fn query_params_use_first_value_and_decode() {
        let m = QueryMatch {
            name: "animal".into(),
            value: ValueMatch::Exact("whale shark".into()),
        };
        assert!(m.matches(Some("animal=whale%20shark")));
        assert!(m.matches(Some("x=1&animal=whale+shark&animal=dolphin")));
        assert!(!m.matches(Some("animal=dolphin&animal=whale+shark")));
        assert!(!m.matches(Some("Animal=whale+shark")));
        assert!(!m.matches(None));
    }

    #[test]
    fn percent_decode_handles_truncated_escapes() {
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("a%"), "a%");
        assert_eq!(percent_decode("a%41"), "aA");
    }
}
