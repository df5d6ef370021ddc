//! Framing that invites request smuggling, oversized headers, short requests, slow and idle
//! clients.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::clients::{raw, raw_response};
use crate::harness::{HEAD_LIMITS, start_web};

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

/// Reads until the server closes the connection (or 10 s pass); returns how long that took
/// and what was read.
pub(crate) fn until_closed(s: &mut TcpStream) -> (Duration, Vec<u8>) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut out = vec![];
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return (started.elapsed(), out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[test]
fn a_request_head_trickled_a_byte_at_a_time_is_cut_off_at_the_head_deadline() {
    let web = start_web("hardening-slowloris");
    let _quiet = crate::harness::exclusive();
    let mut s = TcpStream::connect(("127.0.0.1", web.port)).unwrap();
    let started = Instant::now();
    let trickle = b"GET / HTTP/1.1\r\nHost: web.example.com\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut cut_after = None;
    for byte in trickle {
        if s.write_all(&[*byte]).is_err() {
            cut_after = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        // A closed connection shows as a read of 0 bytes.
        s.set_nonblocking(true).unwrap();
        let closed = matches!(s.read(&mut [0u8; 1]), Ok(0));
        s.set_nonblocking(false).unwrap();
        if closed {
            cut_after = Some(started.elapsed());
            break;
        }
    }
    let cut_after = cut_after.expect("the connection outlived a 4 s trickle");
    assert!(
        cut_after >= HEAD_LIMITS.head && cut_after < HEAD_LIMITS.head + Duration::from_secs(2),
        "cut after {cut_after:?}"
    );
}

#[test]
fn a_connection_that_sends_nothing_is_closed_at_the_head_deadline() {
    let web = start_web("hardening-silent-client");
    let _quiet = crate::harness::exclusive();
    let mut s = TcpStream::connect(("127.0.0.1", web.port)).unwrap();
    let (took, got) = until_closed(&mut s);
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    assert!(
        took >= HEAD_LIMITS.head - Duration::from_millis(100)
            && took < HEAD_LIMITS.head + Duration::from_secs(2),
        "closed after {took:?}"
    );
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let web = start_web("hardening-idle-keep-alive");
    let _quiet = crate::harness::exclusive();
    let mut s = TcpStream::connect(("127.0.0.1", web.port)).unwrap();
    s.write_all(b"GET /one HTTP/1.1\r\nHost: web.example.com\r\n\r\n")
        .unwrap();
    let (took, got) = until_closed(&mut s);
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.ends_with("a /one web.example.com "), "{got}");
    assert!(
        took >= HEAD_LIMITS.idle - Duration::from_millis(100)
            && took < HEAD_LIMITS.idle + Duration::from_secs(2),
        "closed after {took:?}"
    );
}

#[test]
fn a_slow_backend_is_not_cut_off_by_the_client_deadlines() {
    let name = "hardening-slow-backend";
    let scripted = crate::backends::scripted_backend();
    let port = crate::clients::free_port();
    let (_owned, _) = crate::harness::publish_owned(
        name,
        &crate::harness::web(name, port, scripted, scripted, ""),
    );
    crate::clients::wait_for(|| {
        crate::clients::get(port, "web.example.com", "/x/count/k/0", "")
            .is_ok_and(|r| r.status == 200)
    });
    // Longer than both the head and the idle deadline (and shorter than the backend read
    // timeout).
    let wait = HEAD_LIMITS.idle + Duration::from_millis(500);
    assert!(wait < crate::harness::BACKEND_TIMEOUTS.read);
    let r = crate::clients::get(
        port,
        "web.example.com",
        &format!("/x/slow/k/{}", wait.as_millis()),
        "",
    )
    .unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "slow"));
}

#[test]
fn invalid_or_missing_host_is_400_before_any_route_sees_it() {
    let web = start_web("hardening-host");
    for request in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: web.example.com/evil\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: web.example.com:abc\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: web.example.com%00\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: web.example\tcom\r\n\r\n",
    ] {
        let response = raw_response(web.port, request);
        assert!(
            response.starts_with("HTTP/1.1 400"),
            "{}: {response}",
            String::from_utf8_lossy(request)
        );
        assert!(
            response.to_ascii_lowercase().contains("connection: close"),
            "{response}"
        );
    }
}

#[test]
fn a_431_answer_says_connection_close() {
    let web = start_web("hardening-431-close");
    let mut many = b"GET / HTTP/1.1\r\nHost: web.example.com\r\n".to_vec();
    for i in 0..150 {
        many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let response = raw_response(web.port, &many);
    assert!(response.starts_with("HTTP/1.1 431"), "{response}");
    assert!(
        response.to_ascii_lowercase().contains("connection: close"),
        "{response}"
    );
}

#[test]
fn repeated_content_length_reaches_the_backend_as_one_value() {
    let web = start_web("hardening-cl-list");
    let response = raw_response(
        web.port,
        b"POST / HTTP/1.1\r\nHost: web.example.com\r\nContent-Length: 5, 5\r\nConnection: close\r\n\r\nhello",
    );
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("x-seen-content-length: 5\r\n"),
        "{response}"
    );
}

#[test]
fn pipelined_requests_are_all_answered_in_order() {
    let web = start_web("hardening-pipelining");
    let response = raw_response(
        web.port,
        b"GET /one HTTP/1.1\r\nHost: web.example.com\r\n\r\nGET /two HTTP/1.1\r\nHost: web.example.com\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(response.matches("HTTP/1.1 200").count(), 2, "{response}");
    let (one, two) = (
        response.find("a /one web.example.com").expect(&response),
        response.find("a /two web.example.com").expect(&response),
    );
    assert!(one < two, "{response}");
}

#[test]
fn chunk_size_lines_are_read_strictly() {
    let web = start_web("hardening-chunk-size");
    for (body, why) in [
        (
            &b"5 \r\nhello\r\n0\r\n\r\n"[..],
            "whitespace after the size",
        ),
        (
            b"5\r\nhello\r\n\r\n\r\n",
            "an empty size line as the last chunk",
        ),
        (b"5\nhello\r\n0\r\n\r\n", "a bare LF"),
    ] {
        let mut request = b"POST / HTTP/1.1\r\nHost: web.example.com\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
        request.extend_from_slice(body);
        let response = raw_response(web.port, &request);
        assert!(response.starts_with("HTTP/1.1 400"), "{why}: {response}");
    }
    // With a chunk extension, as RFC 9112 §7.1.1 allows.
    let response = raw_response(
        web.port,
        b"POST / HTTP/1.1\r\nHost: web.example.com\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5 ; ext=1\r\nhello\r\n0\r\n\r\n",
    );
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[test]
fn smuggling_vectors_never_reach_the_backend_as_a_second_request() {
    let web = start_web("hardening-smuggling");
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: web.example.com\r\n\r\n";
    let body = format!("0\r\n\r\n{smuggled}");
    for te in [
        "Transfer-Encoding: chunked\r\nContent-Length: 4",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity",
        "Transfer-Encoding: chunked, identity",
        "Transfer-Encoding: xchunked",
        "Transfer-Encoding : chunked",
        "Transfer-Encoding:\tchunked\r\nContent-Length: 4",
        "Transfer-Encoding: \"chunked\"",
        "Content-Length: 4\r\nContent-Length: 40",
        "Content-Length: 4, 40",
        "Content-Length: +4",
    ] {
        let request = format!("POST / HTTP/1.1\r\nHost: web.example.com\r\n{te}\r\n\r\n{body}");
        let response = raw_response(web.port, request.as_bytes());
        assert!(
            !response.contains("/smuggled"),
            "{te:?}: the backend saw a second request: {response}"
        );
        let status = response.get(9..12).unwrap_or("");
        assert!(
            matches!(status, "400" | "501"),
            "{te:?}: answered {status}: {response}"
        );
    }
}
