//! h3load: closed-loop HTTP/3 load for bench/http3.sh, the HTTP/3 counterpart of
//! `h2load -c C -m M -D SECS`: C QUIC connections (each its own UDP socket), M concurrent
//! request streams on each, every stream sending `GET URL` again as soon as its response has
//! been read to the end, for SECS seconds. Prints one JSON line: requests/s, latency
//! percentiles (µs, of successful requests), errors.
//!
//! The clock starts once every connection has finished its handshake (the handshake time is
//! reported apart); it stops when the last in-flight request after the deadline finishes
//! (requests time out after --timeout seconds, and the whole run after SECS + 30 s).
//!
//! usage: h3load --ca FILE [-c CONNS] [-m STREAMS] [-D SECS] [-t THREADS]
//!               [--connect-to ADDR:PORT] [--sni NAME] [--timeout SECS] https://HOST:PORT/PATH

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use http::{Request, Uri};

const USAGE: &str = "usage: h3load --ca FILE [-c CONNS] [-m STREAMS] [-D SECS] [-t THREADS] \
[--connect-to ADDR:PORT] [--sni NAME] [--timeout SECS] https://HOST:PORT/PATH";

struct Args {
    uri: Uri,
    addr: SocketAddr,
    sni: String,
    ca: String,
    connections: usize,
    streams: usize,
    duration: Duration,
    threads: usize,
    timeout: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut url, mut connect_to, mut sni, mut ca) = (None, None, None, None);
    let (mut connections, mut streams, mut secs, mut threads, mut timeout) = (1, 1, 10.0, 1, 5.0);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value"));
        let number = |v: String| v.parse::<f64>().map_err(|e| format!("{a}: {e}"));
        match a.as_str() {
            "-c" | "--connections" => connections = number(value()?)? as usize,
            "-m" | "--streams" => streams = number(value()?)? as usize,
            "-D" | "--duration" => secs = number(value()?)?,
            "-t" | "--threads" => threads = number(value()?)? as usize,
            "--timeout" => timeout = number(value()?)?,
            "--connect-to" => connect_to = Some(value()?),
            "--sni" => sni = Some(value()?),
            "--ca" => ca = Some(value()?),
            "-h" | "--help" => return Err(USAGE.into()),
            _ if a.starts_with('-') => return Err(format!("unknown option {a}\n{USAGE}")),
            _ => url = Some(a),
        }
    }
    let uri: Uri = url.ok_or(USAGE)?.parse().map_err(|e| format!("URL: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err("the URL must be https://".into());
    }
    let host = uri.host().ok_or("the URL has no host")?.to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let target = connect_to.unwrap_or(format!("{host}:{port}"));
    let addr = target
        .to_socket_addrs()
        .map_err(|e| format!("{target}: {e}"))?
        .next()
        .ok_or(format!("{target}: no address"))?;
    if connections == 0 || streams == 0 || threads == 0 || secs <= 0.0 {
        return Err("connections, streams, threads and duration must be positive".into());
    }
    Ok(Args {
        sni: sni.unwrap_or(host),
        uri,
        addr,
        ca: ca.ok_or(format!("--ca is required\n{USAGE}"))?,
        connections,
        streams,
        duration: Duration::from_secs_f64(secs),
        threads,
        timeout: Duration::from_secs_f64(timeout),
    })
}

/// QUIC client configuration: TLS 1.3 with ALPN h3, trusting only the CA in `ca`.
fn client_config(ca: &str) -> Result<quinn::ClientConfig, String> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{ca}: {e}"))? {
        roots
            .add(cert.map_err(|e| format!("{ca}: {e}"))?)
            .map_err(|e| format!("{ca}: {e}"))?;
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| e.to_string())?;
    Ok(quinn::ClientConfig::new(Arc::new(quic)))
}

type Sender = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

/// One QUIC connection (on its own endpoint, so its own UDP socket) with HTTP/3 on it; the
/// HTTP/3 connection's driver runs in its own task.
async fn connect(
    args: &Args,
    config: quinn::ClientConfig,
) -> Result<(quinn::Endpoint, quinn::Connection, Sender), String> {
    let bind: SocketAddr = if args.addr.is_ipv6() {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    }
    .parse()
    .unwrap();
    let mut endpoint = quinn::Endpoint::client(bind).map_err(|e| format!("bind: {e}"))?;
    endpoint.set_default_client_config(config);
    let conn = endpoint
        .connect(args.addr, &args.sni)
        .map_err(|e| format!("connect: {e}"))?
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (mut driver, sender) = h3::client::builder()
        .send_grease(false)
        .build::<_, _, Bytes>(h3_quinn::Connection::new(conn.clone()))
        .await
        .map_err(|e| format!("HTTP/3: {e}"))?;
    tokio::spawn(async move {
        let _ = futures::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    Ok((endpoint, conn, sender))
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    errors: u64,
    timeouts: u64,
    non_2xx: u64,
    bytes: u64,
    last_error: Option<String>,
}

/// One request: send the head, finish the stream, read the response to its end.
async fn request(sender: &mut Sender, uri: &Uri) -> Result<(u16, u64), String> {
    let req = Request::get(uri.clone()).body(()).unwrap();
    let mut stream = sender
        .send_request(req)
        .await
        .map_err(|e| format!("send: {e}"))?;
    stream.finish().await.map_err(|e| format!("finish: {e}"))?;
    let resp = stream
        .recv_response()
        .await
        .map_err(|e| format!("response: {e}"))?;
    let mut bytes = 0;
    while let Some(chunk) = stream.recv_data().await.map_err(|e| format!("body: {e}"))? {
        bytes += chunk.remaining() as u64;
    }
    Ok((resp.status().as_u16(), bytes))
}

/// One stream's closed loop until `deadline`.
async fn worker(
    conn: quinn::Connection,
    mut sender: Sender,
    uri: Uri,
    deadline: Instant,
    timeout: Duration,
) -> Tally {
    let mut t = Tally::default();
    while Instant::now() < deadline {
        let start = Instant::now();
        match tokio::time::timeout(timeout, request(&mut sender, &uri)).await {
            Ok(Ok((status, bytes))) => {
                t.latencies_us
                    .push(start.elapsed().as_micros().min(u32::MAX as u128) as u32);
                t.bytes += bytes;
                if !(200..300).contains(&status) {
                    t.non_2xx += 1;
                }
            }
            Ok(Err(e)) => {
                t.errors += 1;
                t.last_error = Some(e);
            }
            Err(_) => {
                t.timeouts += 1;
                t.last_error = Some("timeout".into());
            }
        }
        if let Some(reason) = conn.close_reason() {
            t.last_error = Some(format!("connection closed: {reason}"));
            break;
        }
    }
    t
}

fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

async fn run(args: Args) -> Result<String, String> {
    let config = client_config(&args.ca)?;
    let handshake_start = Instant::now();
    let mut pending = Vec::new();
    let args = Arc::new(args);
    for _ in 0..args.connections {
        let (args, config) = (args.clone(), config.clone());
        pending.push(tokio::spawn(async move { connect(&args, config).await }));
    }
    let mut conns = Vec::new();
    for p in pending {
        let c = tokio::time::timeout(Duration::from_secs(10), p)
            .await
            .map_err(|_| "connection set-up timed out".to_string())?
            .map_err(|e| e.to_string())??;
        conns.push(c);
    }
    let handshake_ms = handshake_start.elapsed().as_secs_f64() * 1e3;

    let start = Instant::now();
    let deadline = start + args.duration;
    let mut workers = Vec::new();
    for (_, conn, sender) in &conns {
        for _ in 0..args.streams {
            let (conn, sender, uri) = (conn.clone(), sender.clone(), args.uri.clone());
            workers.push(tokio::spawn(worker(
                conn,
                sender,
                uri,
                deadline,
                args.timeout,
            )));
        }
    }
    let mut all = Tally::default();
    for w in workers {
        let t = w.await.map_err(|e| e.to_string())?;
        all.latencies_us.extend_from_slice(&t.latencies_us);
        all.errors += t.errors;
        all.timeouts += t.timeouts;
        all.non_2xx += t.non_2xx;
        all.bytes += t.bytes;
        if t.last_error.is_some() {
            all.last_error = t.last_error;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    // Close cleanly (the server need not wait for an idle timeout), at most a second.
    for (_, conn, _) in &conns {
        conn.close(0u32.into(), b"done");
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        for (endpoint, _, _) in &conns {
            endpoint.wait_idle().await;
        }
    })
    .await;
    let mut lat = all.latencies_us;
    lat.sort_unstable();
    let n = lat.len() as u64;
    let mean = if n > 0 {
        lat.iter().map(|&x| x as u64).sum::<u64>() as f64 / n as f64
    } else {
        0.0
    };
    let last_error = match &all.last_error {
        Some(e) => format!("\"{}\"", e.replace('\\', "\\\\").replace('"', "\\\"")),
        None => "null".into(),
    };
    Ok(format!(
        "{{\"tool\":\"h3load\",\"url\":\"{}\",\"connections\":{},\"streams\":{},\"duration_s\":{:.3},\
\"handshake_ms\":{:.1},\"requests\":{},\"rps\":{:.1},\"errors\":{},\"timeouts\":{},\"non_2xx\":{},\
\"bytes\":{},\"mean_us\":{:.0},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"max_us\":{},\"last_error\":{}}}",
        args.uri,
        args.connections,
        args.streams,
        elapsed,
        handshake_ms,
        n,
        n as f64 / elapsed,
        all.errors,
        all.timeouts,
        all.non_2xx,
        all.bytes,
        mean,
        percentile(&lat, 0.50),
        percentile(&lat, 0.90),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(0),
        last_error,
    ))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut rt = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(args.threads);
        b
    };
    let rt = rt.enable_all().build().expect("tokio runtime");
    let bound = args.duration + Duration::from_secs(30);
    let result = rt.block_on(async move {
        tokio::time::timeout(bound, run(args))
            .await
            .unwrap_or(Err("the run did not finish in time".into()))
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("h3load: {e}");
            ExitCode::FAILURE
        }
    }
}
