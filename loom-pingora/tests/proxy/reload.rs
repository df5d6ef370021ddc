//! Publishes while traffic runs: no request fails, and listeners whose port did not change are
//! left alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::clients::get;
use crate::harness::{exclusive, publish, start_web, web};

/// A route to `{name}-b` at `/extra`, for alternating between two configurations.
fn extra_rule(name: &str) -> String {
    format!(
        "  - matches: [{{path: {{type: Exact, value: /extra}}}}]\n    backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: {name}-b}}]"
    )
}

#[test]
fn a_thousand_reloads_under_load_fail_no_request() {
    let name = "reload-under-load";
    let w = start_web(name);
    let _quiet = exclusive();
    let port = w.port;
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, sent, failures) = (stop.clone(), sent.clone(), failures.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let ok =
                        get(port, "web.example.com", "/hello", "").is_ok_and(|r| r.status == 200);
                    sent.fetch_add(1, Ordering::Relaxed);
                    if !ok {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for i in 0..1000 {
        // Alternate between two configurations that both route /hello to `a`.
        let extra = if i % 2 == 0 {
            extra_rule(name)
        } else {
            String::new()
        };
        publish(name, &web(name, port, w.a, w.b, &extra));
        std::thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let (sent, failures) = (
        sent.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed),
    );
    assert!(
        sent > 100,
        "only {sent} requests were sent during the reloads"
    );
    assert_eq!(
        failures, 0,
        "{failures} of {sent} requests failed during 1,000 reloads"
    );
    eprintln!("{sent} requests during 1,000 reloads, none failed");
}

/// The inode of the socket listening on 127.0.0.1:`port`, from /proc/net/tcp.
pub(crate) fn listening_socket(port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // local_address, state 0A = LISTEN, inode
        (fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A"))
            .then(|| fields.get(9)?.parse().ok())
            .flatten()
    })
}

#[test]
fn unchanged_ports_keep_their_listening_socket_across_publishes() {
    let name = "reload-untouched";
    let w = start_web(name);
    let before = listening_socket(w.port).expect("a listening socket on the fixture's port");
    for i in 0..20 {
        // Other tests' configurations change, and so do this Gateway's routes.
        let extra = if i % 2 == 0 {
            extra_rule(name)
        } else {
            String::new()
        };
        publish(name, &web(name, w.port, w.a, w.b, &extra));
        let other = crate::clients::free_port();
        publish(
            "reload-untouched-other",
            &web("reload-untouched-other", other, w.a, w.b, ""),
        );
    }
    crate::harness::unpublish("reload-untouched-other");
    assert_eq!(
        get(w.port, "web.example.com", "/extra", "").unwrap().status,
        200
    );
    assert_eq!(listening_socket(w.port), Some(before));
}
