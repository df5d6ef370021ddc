//! Path matching and the one path-normalisation policy applied before matching.

use std::borrow::Cow;

use regex::Regex;

/// How a rule matches the request path. Values are validated when parsed.
#[derive(Clone, Debug)]
pub enum PathMatch {
    /// Exact, case-sensitive.
    Exact(String),
    /// Element-wise prefix; stored without a trailing `/` (`/` itself stays `/`).
    Prefix(String),
    /// A regular expression over the whole path (anchored).
    Regex(Regex),
}

/// Why a path match value was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidPath {
    /// Not starting with `/`.
    #[error("path must start with '/'")]
    NotAbsolute,
    /// Characters or sequences the spec forbids (`//`, `/./`, `/../`, `%2f`, `#`, ...).
    #[error("path {0:?} contains characters or segments the spec does not allow")]
    Forbidden(String),
    /// A regex that does not compile or is too large.
    #[error("invalid regular expression: {0}")]
    Regex(String),
    /// An unknown match type.
    #[error("unsupported path match type {0:?}")]
    Type(String),
}

impl PathMatch {
    /// Parses an `HTTPPathMatch` (type default `PathPrefix`, value default `/`).
    pub fn parse(type_: Option<&str>, value: Option<&str>) -> Result<PathMatch, InvalidPath> {
        let value = value.unwrap_or("/");
        match type_.unwrap_or("PathPrefix") {
            "Exact" => Ok(PathMatch::Exact(validate(value)?.to_owned())),
            "PathPrefix" => {
                let v = validate(value)?;
                let trimmed = v.trim_end_matches('/');
                Ok(PathMatch::Prefix(if trimmed.is_empty() {
                    "/".into()
                } else {
                    trimmed.into()
                }))
            }
            "RegularExpression" => Ok(PathMatch::Regex(anchored_regex(value)?)),
            other => Err(InvalidPath::Type(other.into())),
        }
    }

    /// Whether a (normalised) path matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => p == path,
            PathMatch::Prefix(p) => prefix_matches(p, path),
            PathMatch::Regex(r) => r.is_match(path),
        }
    }

    /// Characters in the match value, for precedence.
    pub fn len(&self) -> usize {
        match self {
            PathMatch::Exact(p) | PathMatch::Prefix(p) => p.len(),
            PathMatch::Regex(r) => r.as_str().len(),
        }
    }

    /// Whether the value is empty (never, for a parsed match).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Compiles a regex anchored to the whole input, with a size limit.
pub fn anchored_regex(pattern: &str) -> Result<Regex, InvalidPath> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
        .map_err(|e| InvalidPath::Regex(regex_error(&e)))
}

/// The regex crate's message without its multi-line pattern excerpt (`unclosed group`).
fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text.lines().last().unwrap_or_default();
    last.strip_prefix("error: ").unwrap_or(last).to_owned()
}

fn validate(value: &str) -> Result<&str, InvalidPath> {
    if !value.starts_with('/') {
        return Err(InvalidPath::NotAbsolute);
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-/._~!$&'()*+,;=:@%".contains(&b);
    let bad = !value.bytes().all(allowed)
        || value.contains("//")
        || value.contains("/./")
        || value.contains("/../")
        || value.ends_with("/..")
        || value.ends_with("/.")
        || value.to_ascii_lowercase().contains("%2f");
    if bad {
        Err(InvalidPath::Forbidden(value.into()))
    } else {
        Ok(value)
    }
}

/// Element-wise prefix match: `/abc` matches `/abc`, `/abc/` and `/abc/def`, not `/abcd`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return path.starts_with('/');
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Why a request path was rejected (the request gets 400).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadRequestPath {
    /// Not origin-form (`/...`).
    #[error("request path must start with '/'")]
    NotOriginForm,
    /// A malformed `%XX` escape.
    #[error("malformed percent-encoding in path")]
    BadEscape,
    /// Dot segments climbing above the root.
    #[error("path climbs above the root")]
    AboveRoot,
}

/// Loom's path-normalisation policy, applied before matching; the backend receives the
/// normalised path:
///
/// 1. the path must start with `/` (origin form);
/// 2. `%XX` escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded, and the hex
///    digits of the others are upper-cased (`%2f` → `%2F`); `%2F` is never decoded;
/// 3. `.` and `..` segments are resolved (RFC 3986 §5.2.4); `..` above the root is an error;
/// 4. repeated slashes are kept (as Envoy and nginx do by default).
///
/// Returns the input unchanged (borrowed) when it is already normal.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, BadRequestPath> {
    if !path.starts_with('/') {
        return Err(BadRequestPath::NotOriginForm);
    }
    let needs_work = path.contains('%') || path.contains("/.");
    if !needs_work {
        return Ok(Cow::Borrowed(path));
    }
    let b = path.as_bytes();
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|&c| hex(c)),
                b.get(i + 2).and_then(|&c| hex(c)),
            ) else {
                return Err(BadRequestPath::BadEscape);
            };
            let c = (h * 16 + l) as u8;
            if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
                decoded.push(c as char);
            } else {
                decoded.push('%');
                decoded.push(b[i + 1].to_ascii_uppercase() as char);
                decoded.push(b[i + 2].to_ascii_uppercase() as char);
            }
            i += 3;
        } else {
            let start = i;
            while i < b.len() && b[i] != b'%' {
                i += 1;
            }
            decoded.push_str(&path[start..i]);
        }
    }
    if !decoded.contains("/.") {
        return Ok(Cow::Owned(decoded));
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = decoded[1..].split('/').collect();
    let last = segments.len() - 1;
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => trailing_slash = i == last,
            ".." => {
                if out.pop().is_none() {
                    return Err(BadRequestPath::AboveRoot);
                }
                trailing_slash = i == last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut result = String::with_capacity(decoded.len());
    for s in &out {
        result.push('/');
        result.push_str(s);
    }
    if trailing_slash || result.is_empty() {
        result.push('/');
    }
    Ok(Cow::Owned(result))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_element_wise() {
        assert!(prefix_matches("/abc", "/abc"));
        assert!(prefix_matches("/abc", "/abc/"));
        assert!(prefix_matches("/abc", "/abc/def"));
        assert!(!prefix_matches("/abc", "/abcd"));
        assert!(prefix_matches("/", "/anything"));
        let p = PathMatch::parse(Some("PathPrefix"), Some("/abc/")).unwrap();
        assert!(p.matches("/abc") && p.matches("/abc/x") && !p.matches("/abcx"));
    }

    #[test]
    fn exact_is_exact() {
        let p = PathMatch::parse(Some("Exact"), Some("/abc")).unwrap();
        assert!(p.matches("/abc"));
        assert!(!p.matches("/abc/"));
        assert!(!p.matches("/ABC"));
    }

    #[test]
    fn regex_is_anchored() {
        let p = PathMatch::parse(Some("RegularExpression"), Some("/v[0-9]+")).unwrap();
        assert!(p.matches("/v12"));
        assert!(!p.matches("/v12/x"));
        assert!(PathMatch::parse(Some("RegularExpression"), Some("(")).is_err());
    }

    #[test]
    fn rejects_forbidden_values() {
        for bad in ["abc", "/a//b", "/a/../b", "/a%2fb", "/a#b", "/a/."] {
            assert!(PathMatch::parse(Some("Exact"), Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn normalisation_policy() {
        assert!(matches!(normalize("/a/b"), Ok(Cow::Borrowed("/a/b"))));
        assert_eq!(normalize("/a/%62").unwrap(), "/a/b");
        assert_eq!(normalize("/a%2fb").unwrap(), "/a%2Fb");
        assert_eq!(normalize("/a/./b/../c").unwrap(), "/a/c");
        assert_eq!(normalize("/a/b/..").unwrap(), "/a/");
        assert_eq!(normalize("/a//b").unwrap(), "/a//b");
        assert_eq!(normalize("/%2e%2e/x"), Err(BadRequestPath::AboveRoot));
        assert_eq!(normalize("/a%zz"), Err(BadRequestPath::BadEscape));
        assert_eq!(normalize("a"), Err(BadRequestPath::NotOriginForm));
        assert_eq!(normalize("/.").unwrap(), "/");
    }
}
