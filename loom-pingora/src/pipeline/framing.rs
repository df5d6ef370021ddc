//! Request framing Loom refuses before anything else looks at a request.

use http::StatusCode;
use pingora::http::RequestHeader;

/// Header lines a request may carry.
pub(crate) const MAX_HEADERS: usize = 100;
/// Bytes of request target and headers a request may carry.
pub(crate) const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The status to refuse a request's framing with, if any: any transfer coding other than a lone
/// `chunked` (RFC 9112 §6.1: a server SHOULD answer 501 to a transfer coding it does not
/// understand; forwarding it would leave the backend to agree with Loom on framing), and both
/// Content-Length and Transfer-Encoding (400: "a server MAY reject a request that contains both
/// … as such a message might indicate an attempt to perform request smuggling", RFC 9112 §6.1).
/// Pingora itself refuses conflicting Content-Lengths and a non-chunked final coding (400).
///
/// Requests with more than [`MAX_HEADERS`] header lines or more than [`MAX_HEADER_BYTES`] of
/// request line and headers get 431 (Pingora's own limits are far larger: about 1 MB).
///
/// `had_content_length` tells whether the request as received carried a Content-Length; it is
/// asked only for requests with Transfer-Encoding (Pingora drops Content-Length from such
/// HTTP/1 requests before Loom sees the headers, so the answer may need the raw header block).
pub(crate) fn framing_error(
    req: &RequestHeader,
    had_content_length: impl FnOnce() -> bool,
) -> Option<StatusCode> {
    if req.headers.len() > MAX_HEADERS {
        return Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
    let size: usize = req.raw_path().len()
        + req
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum::<usize>();
    if size > MAX_HEADER_BYTES {
        return Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
    // Every Content-Length value a number, and all the same (RFC 9110 §8.6). Pingora checks
    // this for HTTP/1 and HTTP/2 itself; HTTP/3 requests reach Loom unchecked.
    let mut lengths = req
        .headers
        .get_all(http::header::CONTENT_LENGTH)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|v| {
            std::str::from_utf8(v.trim_ascii())
                .ok()?
                .parse::<u64>()
                .ok()
        });
    if let Some(first) = lengths.next()
        && (first.is_none() || lengths.any(|v| v != first))
    {
        return Some(StatusCode::BAD_REQUEST);
    }
    let te = req.headers.get_all(http::header::TRANSFER_ENCODING);
    let codings: Vec<&[u8]> = te
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .collect();
    match codings.as_slice() {
        [] => None,
        [only] if only.eq_ignore_ascii_case(b"chunked") => {
            had_content_length().then_some(StatusCode::BAD_REQUEST)
        }
        _ => Some(StatusCode::NOT_IMPLEMENTED),
    }
}

/// The status to refuse a request's Host with, if any (RFC 9112 §3.2: "A server MUST respond
/// with a 400 (Bad Request) status code to any HTTP/1.1 request message that lacks a Host
/// header field and to any request message that contains more than one Host header field line
/// or a Host header field with an invalid field value"). Valid is RFC 3986's `host [ ":" port ]`
/// with a DNS-style reg-name (letters, digits, `-`, `.`, `_`, `~`, and sub-delims) or an IP
/// literal in brackets; percent-escapes are refused (no DNS name needs them). Pingora itself
/// refuses a Host that differs from an absolute-form request target.
pub(crate) fn host_error(req: &RequestHeader) -> Option<StatusCode> {
    let mut hosts = req.headers.get_all(http::header::HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (Some(h), None) => h.as_bytes(),
        (Some(_), Some(_)) => return Some(StatusCode::BAD_REQUEST),
        (None, _) => {
            let has_authority = req.uri.authority().is_some();
            let http11 = req.version == http::Version::HTTP_11;
            return (http11 && !has_authority).then_some(StatusCode::BAD_REQUEST);
        }
    };
    (!valid_host(host)).then_some(StatusCode::BAD_REQUEST)
}

/// `host [ ":" port ]` as described at [`host_error`].
fn valid_host(value: &[u8]) -> bool {
    let (host, port) = if value.first() == Some(&b'[') {
        let Some(end) = value.iter().position(|b| *b == b']') else {
            return false;
        };
        let literal = &value[1..end];
        let ok = !literal.is_empty()
            && literal
                .iter()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'));
        if !ok {
            return false;
        }
        (&value[..=end], &value[end + 1..])
    } else {
        match value.iter().position(|b| *b == b':') {
            Some(i) => (&value[..i], &value[i..]),
            None => (value, &b""[..]),
        }
    };
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => {
            digits.len() <= 5
                && digits.iter().all(u8::is_ascii_digit)
                && std::str::from_utf8(digits)
                    .ok()
                    .and_then(|d| d.parse::<u16>().ok())
                    .is_some_and(|_| !digits.is_empty())
        }
        _ => false,
    };
    let host_ok = !host.is_empty()
        && (host.first() == Some(&b'[')
            || host.iter().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(
                        b,
                        b'-' | b'.'
                            | b'_'
                            | b'~'
                            | b'!'
                            | b'$'
                            | b'&'
                            | b'\''
                            | b'('
                            | b')'
                            | b'*'
                            | b'+'
                            | b','
                            | b';'
                            | b'='
                    )
            }));
    host_ok && port_ok
}

/// A Content-Length the backend can read as sent: Pingora accepts `5, 5` and repeated equal
/// field lines (RFC 9110 §8.6 lets a recipient take them as one value) but forwards them as
/// they came; a request with them gets one `Content-Length: 5` instead. `None`: nothing to
/// change. Unequal values never get here (`framing_error` answers 400).
pub(crate) fn normalized_content_length(req: &RequestHeader) -> Option<http::HeaderValue> {
    let mut values = req.headers.get_all(http::header::CONTENT_LENGTH).iter();
    let first = values.next()?;
    let repeated = values.next().is_some();
    if !repeated && !first.as_bytes().contains(&b',') {
        return None;
    }
    let n = first
        .as_bytes()
        .split(|b| *b == b',')
        .next()
        .map(<[u8]>::trim_ascii)?;
    http::HeaderValue::from_bytes(n).ok()
}

/// Whether a raw HTTP/1 header block (request line first) has a Content-Length field.
pub(crate) fn raw_has_content_length(raw: &[u8]) -> bool {
    raw.split(|b| *b == b'\n')
        .skip(1) // the request line
        .filter_map(|line| line.split(|b| *b == b':').next())
        .any(|name| name.trim_ascii().eq_ignore_ascii_case(b"content-length"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("POST", b"/upload", None).unwrap();
        for (n, v) in headers {
            req.append_header(n.to_string(), *v).unwrap();
        }
        req
    }

    fn never() -> bool {
        panic!("Content-Length was asked about without Transfer-Encoding")
    }

    #[test]
    fn plain_request_passes() {
        assert_eq!(framing_error(&request(&[("host", "a")]), never), None);
    }

    #[test]
    fn lone_chunked_passes_in_any_case() {
        let req = request(&[("transfer-encoding", "Chunked")]);
        assert_eq!(framing_error(&req, || false), None);
    }

    #[test]
    fn content_lengths_must_be_numbers_and_agree() {
        let check = |values: &[&str]| {
            let headers: Vec<(&str, &str)> =
                values.iter().map(|v| ("content-length", *v)).collect();
            framing_error(&request(&headers), never)
        };
        assert_eq!(check(&["5"]), None);
        assert_eq!(check(&["5", "5"]), None);
        assert_eq!(check(&["5, 5"]), None);
        assert_eq!(check(&["5", "100"]), Some(StatusCode::BAD_REQUEST));
        assert_eq!(check(&["abc"]), Some(StatusCode::BAD_REQUEST));
        assert_eq!(check(&["-1"]), Some(StatusCode::BAD_REQUEST));
    }

    #[test]
    fn chunked_with_content_length_is_400() {
        let req = request(&[("transfer-encoding", "chunked")]);
        assert_eq!(framing_error(&req, || true), Some(StatusCode::BAD_REQUEST));
    }

    #[test]
    fn other_codings_are_501() {
        for te in ["gzip, chunked", "gzip", "chunked, chunked", "identity"] {
            let req = request(&[("transfer-encoding", te)]);
            assert_eq!(
                framing_error(&req, || false),
                Some(StatusCode::NOT_IMPLEMENTED),
                "{te}"
            );
        }
    }

    #[test]
    fn codings_split_over_two_fields_are_501() {
        let req = request(&[
            ("transfer-encoding", "gzip"),
            ("transfer-encoding", "chunked"),
        ]);
        assert_eq!(
            framing_error(&req, || false),
            Some(StatusCode::NOT_IMPLEMENTED)
        );
    }

    #[test]
    fn too_many_header_lines_is_431() {
        let names: Vec<String> = (0..=MAX_HEADERS).map(|i| format!("x-h{i}")).collect();
        let headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        assert_eq!(
            framing_error(&request(&headers), never),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        let headers = &headers[..MAX_HEADERS];
        assert_eq!(framing_error(&request(headers), never), None);
    }

    #[test]
    fn too_many_header_bytes_is_431() {
        let big = "a".repeat(MAX_HEADER_BYTES);
        assert_eq!(
            framing_error(&request(&[("x-big", &big)]), never),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
    }

    fn with_host(version: http::Version, host: Option<&[u8]>) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.set_version(version);
        if let Some(h) = host {
            req.insert_header(
                http::header::HOST,
                http::HeaderValue::from_bytes(h).unwrap(),
            )
            .unwrap();
        }
        req
    }

    #[test]
    fn http11_without_host_is_400() {
        let req = with_host(http::Version::HTTP_11, None);
        assert_eq!(host_error(&req), Some(StatusCode::BAD_REQUEST));
    }

    #[test]
    fn http10_without_host_is_fine() {
        assert_eq!(host_error(&with_host(http::Version::HTTP_10, None)), None);
    }

    #[test]
    fn valid_hosts_pass() {
        for h in [
            &b"example.com"[..],
            b"example.com:8080",
            b"EXAMPLE.com.",
            b"127.0.0.1",
            b"127.0.0.1:80",
            b"[::1]",
            b"[::1]:443",
            b"a_b-c~d",
        ] {
            let req = with_host(http::Version::HTTP_11, Some(h));
            assert_eq!(host_error(&req), None, "{}", String::from_utf8_lossy(h));
        }
    }

    #[test]
    fn invalid_hosts_are_400() {
        for h in [
            &b"x/evil"[..],
            b"x:abc",
            b"x%00",
            b"x\tab",
            b"x y",
            b"",
            b":80",
            b"x:",
            b"x:99999",
            b"x:80:80",
            b"user@x",
            b"[::1",
            b"[zz]",
            b"x\\y",
        ] {
            let req = with_host(http::Version::HTTP_11, Some(h));
            assert_eq!(
                host_error(&req),
                Some(StatusCode::BAD_REQUEST),
                "{}",
                String::from_utf8_lossy(h)
            );
        }
    }

    #[test]
    fn two_host_fields_are_400() {
        let mut req = with_host(http::Version::HTTP_11, Some(b"a"));
        req.append_header(http::header::HOST, "a").unwrap();
        assert_eq!(host_error(&req), Some(StatusCode::BAD_REQUEST));
    }

    #[test]
    fn repeated_content_length_becomes_one_value() {
        let req = request(&[("content-length", "5, 5")]);
        assert_eq!(normalized_content_length(&req).unwrap(), "5");
        let req = request(&[("content-length", "5"), ("content-length", "5")]);
        assert_eq!(normalized_content_length(&req).unwrap(), "5");
        assert_eq!(
            normalized_content_length(&request(&[("content-length", "5")])),
            None
        );
        assert_eq!(normalized_content_length(&request(&[])), None);
    }

    #[test]
    fn raw_content_length_is_found_in_any_case_but_not_in_the_request_line() {
        assert!(raw_has_content_length(
            b"POST / HTTP/1.1\r\nHost: a\r\ncontent-LENGTH : 4\r\n\r\n"
        ));
        assert!(!raw_has_content_length(
            b"POST /content-length: HTTP/1.1\r\nHost: a\r\n\r\n"
        ));
    }
}
