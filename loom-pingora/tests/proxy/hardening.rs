//! Framing that invites request smuggling, oversized headers, short requests.

use std::time::{Duration, Instant};

use crate::clients::{raw, raw_response};
use crate::harness::start_web;

#[test]
fn content_length_with_transfer_encoding_is_400_and_closes() {
    let web = start_web("hardening-cl-te");
    // Both Content-Length and Transfer-Encoding (in any case): 400, and the connection closes.
    let both = raw_response(
        web.port,
        b"POST / HTTP/1.1\r\nHost: web.example.com\r\ncontent-LENGTH: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    assert!(both.starts_with("HTTP/1.1 400"), "{both}");
    assert!(
        both.to_ascii_lowercase().contains("connection: close"),
        "{both}"
    );
}

#[test]
fn lone_chunked_body_goes_through() {
    let web = start_web("hardening-chunked");
    let chunked = raw_response(
        web.port,
        b"POST / HTTP/1.1\r\nHost: web.example.com\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n",
    );
    assert!(chunked.starts_with("HTTP/1.1 200"), "{chunked}");
}

#[test]
fn transfer_coding_other_than_chunked_is_501() {
    let web = start_web("hardening-gzip-te");
    assert_eq!(
        raw(
            web.port,
            b"POST /b HTTP/1.1\r\nHost: web.example.com\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
        ),
        501
    );
}

#[test]
fn conflicting_content_lengths_are_400() {
    let web = start_web("hardening-two-cl");
    assert_eq!(
        raw(
            web.port,
            b"POST /b HTTP/1.1\r\nHost: web.example.com\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd"
        ),
        400
    );
}

#[test]
fn oversized_header_is_431() {
    let web = start_web("hardening-big-header");
    let mut big = b"GET / HTTP/1.1\r\nHost: web.example.com\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 200_000));
    big.extend_from_slice(b"\r\n\r\n");
    assert_eq!(raw(web.port, &big), 431);
}

#[test]
fn too_many_header_lines_is_431() {
    let web = start_web("hardening-many-headers");
    let mut many = b"GET / HTTP/1.1\r\nHost: web.example.com\r\n".to_vec();
    for i in 0..150 {
        many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(raw(web.port, &many), 431);
}

#[test]
fn request_shorter_than_the_h2_preface_is_answered_at_once() {
    let web = start_web("hardening-short-request");
    let _quiet = crate::harness::exclusive();
    let started = Instant::now();
    assert_eq!(raw(web.port, b"GET / HTTP/1.0\r\n\r\n"), 404);
    assert!(started.elapsed() < Duration::from_secs(2));
}
