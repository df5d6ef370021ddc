//! Responses reach the client as the backend sends them, and a response cut short is not
//! passed off as a complete one.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::backends::trickling_backend;
use crate::clients::{free_port, get, wait_for};
use crate::harness::{Owned, publish_owned, web};

const PAUSE: Duration = Duration::from_millis(1500);

fn trickling(name: &str, finish: bool) -> (u16, Owned) {
    let backend = trickling_backend(PAUSE, finish);
    let port = free_port();
    let (owned, _) = publish_owned(name, &web(name, port, backend, backend, ""));
    wait_for(|| get(port, "other.example.com", "/", "").is_ok_and(|r| r.status == 404));
    (port, owned)
}

/// Sends a GET and reads until the response holds `want` bytes after its head, or the
/// connection ends; returns what was read and when the first body byte came.
fn read_response(port: u16) -> (String, Option<Duration>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\nHost: web.example.com\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = vec![];
    let mut first_body_byte = None;
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        if first_body_byte.is_none()
            && out
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .is_some_and(|p| out.len() > p + 4)
        {
            first_body_byte = Some(started.elapsed());
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), first_body_byte)
}

#[test]
fn a_content_length_body_streams_as_the_backend_sends_it() {
    let (port, _owned) = trickling("streaming-trickle", true);
    let _quiet = crate::harness::exclusive();
    let (response, first_byte) = read_response(port);
    let first_byte = first_byte.expect("a body");
    assert!(
        first_byte < PAUSE / 2,
        "the first body bytes came after {first_byte:?}"
    );
    assert!(
        response.ends_with(&format!("0123456789{}", "x".repeat(90))),
        "{response}"
    );
}

#[test]
fn a_body_cut_short_by_the_backend_reaches_the_client_as_far_as_it_went() {
    let (port, _owned) = trickling("streaming-cut-short", false);
    let (response, _) = read_response(port);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("0123456789"), "{response}");
}
