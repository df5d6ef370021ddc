//! HTTPRoute filters and local answers.

use crate::clients::get;
use crate::harness::start_web;

#[test]
fn request_and_response_header_filters_and_prefix_rewrite_apply() {
    let web = start_web("filters-headers");
    let r = get(
        web.port,
        "web.example.com",
        "/b/x",
        "X-Test: from-client\r\n",
    )
    .unwrap();
    assert_eq!(r.body, "b /rewritten/x web.example.com set-by-loom");
    assert_eq!(r.header("x-resp"), Some("added"));
    assert_eq!(r.header("x-backend"), None);
}

#[test]
fn redirect_without_scheme_or_port_keeps_the_listener_port() {
    let web = start_web("filters-redirect");
    let r = get(web.port, "web.example.com", "/moved", "").unwrap();
    // Spec: without a scheme or port in the filter, the Location keeps the listener's port.
    let location = format!("http://new.example.com:{}/moved", web.port);
    assert_eq!(
        (r.status, r.header("location")),
        (308, Some(location.as_str()))
    );
}

#[test]
fn invalid_backend_ref_answers_500() {
    let web = start_web("filters-missing-backend");
    assert_eq!(
        get(web.port, "web.example.com", "/missing", "")
            .unwrap()
            .status,
        500
    );
}
