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
