//! Requests go where loom-core decides.

use crate::clients::get;
use crate::harness::start_web;

#[test]
fn routes_by_host_to_the_catch_all_rule_with_path_and_query_intact() {
    let web = start_web("routing-catch-all");
    let r = get(web.port, "web.example.com", "/hello?q=1", "").unwrap();
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "a /hello?q=1 web.example.com ")
    );
}

#[test]
fn unknown_host_is_404() {
    let web = start_web("routing-unknown-host");
    assert_eq!(
        get(web.port, "other.example.com", "/", "").unwrap().status,
        404
    );
}

#[test]
fn malformed_percent_escape_is_400() {
    let web = start_web("routing-bad-escape");
    assert_eq!(
        get(web.port, "web.example.com", "/%zz", "").unwrap().status,
        400
    );
}

#[test]
fn the_backend_learns_the_client_address_scheme_and_host_and_not_what_the_client_claims() {
    let web = start_web("routing-forwarded");
    let r = get(
        web.port,
        "web.example.com",
        "/",
        "X-Forwarded-For: 203.0.113.1\r\nX-Forwarded-Host: evil.example.com\r\n",
    )
    .unwrap();
    assert_eq!(
        r.header("x-seen-forwarded"),
        Some("127.0.0.1|http|web.example.com")
    );
}
