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
