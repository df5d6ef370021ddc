//! Listeners follow the published configuration.

use std::net::TcpStream;

use crate::backends::echo_backend;
use crate::clients::{free_port, get, wait_for};
use crate::harness::{publish, publish_owned, server, start_web, web};

#[test]
fn a_moved_listener_answers_on_the_new_port_and_stops_accepting_on_the_old() {
    let name = "listeners-move";
    let w = start_web(name);
    let moved = free_port();
    publish(name, &web(name, moved, w.a, w.b, ""));
    wait_for(|| get(moved, "web.example.com", "/", "").is_ok_and(|r| r.status == 200));
    wait_for(|| TcpStream::connect(("127.0.0.1", w.port)).is_err());
}

#[test]
fn a_port_in_use_is_reported_and_bound_once_it_is_free() {
    let name = "listeners-port-in-use";
    let occupied = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = occupied.local_addr().unwrap().port();
    let (a, b) = (echo_backend("a"), echo_backend("b"));
    let (_owned, published) = publish_owned(name, &web(name, port, a, b, ""));
    let failure = || {
        let listening = server().listening().borrow().clone();
        (listening.generation >= published.generation).then(|| {
            listening
                .failed
                .iter()
                .find(|f| f.gateway.name == name)
                .map(|f| (f.port, f.address.to_string(), f.error.clone()))
        })
    };
    wait_for(|| failure().is_some());
    let (failed_port, address, error) = failure().flatten().expect("the bind failure reported");
    assert_eq!(failed_port, port);
    assert_eq!(address, format!("127.0.0.1:{port}"));
    assert!(error.to_lowercase().contains("in use"), "{error}");
    assert!(!server().is_serving());

    // Freed: the retry binds it, and the Gateway serves.
    drop(occupied);
    wait_for(|| failure() == Some(None));
    wait_for(|| get(port, "web.example.com", "/", "").is_ok_and(|r| r.status == 200));
}
