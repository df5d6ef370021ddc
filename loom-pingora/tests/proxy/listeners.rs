//! Listeners follow the published configuration.

use std::net::TcpStream;

use crate::clients::{free_port, get, wait_for};
use crate::harness::{publish, start_web, web};

#[test]
fn a_moved_listener_answers_on_the_new_port_and_stops_accepting_on_the_old() {
    let name = "listeners-move";
    let w = start_web(name);
    let moved = free_port();
    publish(name, &web(name, moved, w.a, w.b, ""));
    wait_for(|| get(moved, "web.example.com", "/", "").is_ok_and(|r| r.status == 200));
    wait_for(|| TcpStream::connect(("127.0.0.1", w.port)).is_err());
}
