//! Backends on loopback that the tests route to: HTTP echo, a scripted failing backend, TCP and
//! UDP echo, a TLS server for passthrough. Each runs on its own threads for the life of the test
//! process.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// An HTTP/1.1 echo backend: answers every request with `name path host x-test-header`.
pub(crate) fn echo_backend(name: &'static str) -> u16 {
    counting_echo_backend(name).0
}

/// [`echo_backend`], and how many connections it has accepted.
pub(crate) fn counting_echo_backend(name: &'static str) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || serve_echo(stream, name));
        }
    });
    (port, accepted)
}

fn serve_echo(mut stream: TcpStream, name: &str) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Some(head) = read_head(&mut stream, &mut buf) else {
            return;
        };
        let mut lines = head.lines();
        let path = lines
            .next()
            .unwrap_or("")
            .split(' ')
            .nth(1)
            .unwrap_or("")
            .to_owned();
        let mut host = String::new();
        let mut test = String::new();
        let mut content_length = None;
        let mut chunked = false;
        let mut forwarded = [String::new(), String::new(), String::new()];
        let mut names = Vec::new();
        for l in lines {
            if let Some((n, v)) = l.split_once(':') {
                let name = n.to_ascii_lowercase();
                match name.as_str() {
                    "host" => host = v.trim().to_owned(),
                    "x-test" => test = v.trim().to_owned(),
                    "content-length" => content_length = v.trim().parse::<usize>().ok(),
                    "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
                    "x-forwarded-for" => forwarded[0] = v.trim().to_owned(),
                    "x-forwarded-proto" => forwarded[1] = v.trim().to_owned(),
                    "x-forwarded-host" => forwarded[2] = v.trim().to_owned(),
                    _ => {}
                }
                names.push(name);
            }
        }
        // Drain the body so the next request on this connection starts where it should.
        let mut need = |n: usize, buf: &mut Vec<u8>| {
            while buf.len() < n {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return false,
                    Ok(k) => buf.extend_from_slice(&chunk[..k]),
                }
            }
            true
        };
        if let Some(n) = content_length {
            if !need(n, &mut buf) {
                return;
            }
            buf.drain(..n);
        } else if chunked {
            loop {
                let Some(eol) = (|| loop {
                    if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                        return Some(p);
                    }
                    if !need(buf.len() + 1, &mut buf) {
                        return None;
                    }
                })() else {
                    return;
                };
                let size = usize::from_str_radix(String::from_utf8_lossy(&buf[..eol]).trim(), 16)
                    .unwrap_or(0);
                buf.drain(..eol + 2);
                if !need(size + 2, &mut buf) {
                    return;
                }
                buf.drain(..size + 2);
                if size == 0 {
                    break;
                }
            }
        }
        let seen_length = content_length.map_or_else(|| "-".to_owned(), |n| n.to_string());
        let body = format!("{name} {path} {host} {test}");
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nx-backend: {name}\r\nx-seen-content-length: {seen_length}\r\nx-seen-forwarded: {}\r\nx-seen-headers: {}\r\n\r\n{body}",
            body.len(),
            forwarded.join("|"),
            names.join(",")
        );
        if stream.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// A backend that answers one request per connection with a keep-alive `200 closing`, closes
/// its side `close_after` later (as a server does at its idle timeout), and waits up to 10 s
/// for the proxy to close the connection too. Sends how long that took for each connection,
/// in order: `None` when the proxy did not close it within 10 s or sent another request on it.
pub(crate) fn closing_backend(
    close_after: Duration,
) -> (u16, std::sync::mpsc::Receiver<Option<Duration>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                if read_head(&mut stream, &mut Vec::new()).is_none() {
                    return;
                }
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nclosing");
                std::thread::sleep(close_after);
                let _ = stream.shutdown(std::net::Shutdown::Write);
                let closed = std::time::Instant::now();
                // Anything but the end of the stream (a new request, a timeout) is a failure.
                let answer = match stream.read(&mut [0u8; 4096]) {
                    Ok(0) => Some(closed.elapsed()),
                    _ => None,
                };
                let _ = tx.send(answer);
            });
        }
    });
    (port, rx)
}

/// Reads from `stream` into `buf` until it holds a request head, and takes the head out of
/// it (what follows stays in `buf`). `None` when the stream ends or fails first.
fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..at + 4]).into_owned();
            buf.drain(..at + 4);
            return Some(head);
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A TCP line echo backend: replies `name: <line>` to every line.
pub(crate) fn tcp_echo(name: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                let mut line = String::new();
                while std::io::BufRead::read_line(&mut reader, &mut line).is_ok_and(|n| n > 0) {
                    let _ = write!(writer, "{name}: {line}");
                    line.clear();
                }
            });
        }
    });
    port
}

/// A TLS server on loopback with this certificate chain and key; `serve` gets every
/// connection once its handshake is done.
pub(crate) fn tls_server(
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
    serve: impl Fn(&mut rustls::StreamOwned<rustls::ServerConnection, TcpStream>)
    + Clone
    + Send
    + 'static,
) -> u16 {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let (config, serve) = (config.clone(), serve.clone());
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).unwrap();
                serve(&mut rustls::StreamOwned::new(conn, tcp));
            });
        }
    });
    port
}

/// A TLS server backend (for passthrough): answers `tls-backend` after the handshake.
pub(crate) fn tls_backend(cert_pem: &str, key_pem: &str) -> u16 {
    use rustls::pki_types::pem::PemObject;
    let chain: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .map(Result::unwrap)
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    tls_server(chain, key, |s| {
        let _ = s.write_all(b"tls-backend\n");
        let _ = s.flush();
        let mut sink = [0u8; 64];
        let _ = s.read(&mut sink);
    })
}

pub(crate) fn udp_echo() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let mut reply = b"udp: ".to_vec();
            reply.extend_from_slice(&buf[..n]);
            let _ = socket.send_to(&reply, from);
        }
    });
    port
}

/// A backend that fails on purpose. Every path is `[/PREFIX]/ACTION/KEY/N`; requests are
/// counted per KEY. `flaky`: 500 to the first N requests, then 200 `try T`; `slow`: waits N
/// milliseconds, then 200; `count`: answers how many requests KEY has seen.
pub(crate) fn scripted_backend() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let counts = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
        String,
        u32,
    >::new()));
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let counts = counts.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let n = stream.read(&mut buf).unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                let parts: Vec<&str> = path.rsplitn(4, '/').collect();
                let (status, body) = match parts.as_slice() {
                    [n, key, action, _] => {
                        let n: u64 = n.parse().unwrap_or(0);
                        let tries = {
                            let mut c = counts.lock().unwrap();
                            let t = c.entry((*key).to_owned()).or_default();
                            if *action != "count" {
                                *t += 1;
                            }
                            *t
                        };
                        match *action {
                            "flaky" => (
                                if u64::from(tries) <= n { 500 } else { 200 },
                                format!("try {tries}"),
                            ),
                            "slow" => {
                                std::thread::sleep(Duration::from_millis(n));
                                (200, "slow".to_owned())
                            }
                            "count" => (200, tries.to_string()),
                            _ => (404, String::new()),
                        }
                    }
                    _ => (404, String::new()),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

/// A backend that answers `Content-Length: 100` with 10 bytes at once, then, after
/// `pause`, the other 90 (`finish`) or nothing, closing the connection (`!finish`).
pub(crate) fn trickling_backend(pause: Duration, finish: bool) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\nconnection: close\r\n\r\n0123456789",
                );
                std::thread::sleep(pause);
                if finish {
                    let _ = stream.write_all(&[b'x'; 90]);
                }
            });
        }
    });
    port
}
