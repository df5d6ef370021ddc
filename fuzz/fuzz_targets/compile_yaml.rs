//! Arbitrary bytes as a YAML stream: load, build the Input, compile, and decide one request on
//! every compiled port. Nothing may panic: bad documents become load errors, bad objects become
//! conditions.

#![no_main]

use http::{HeaderMap, Method, Uri};
use libfuzzer_sys::fuzz_target;
use loom_core::snapshot::HttpRequest;
use loom_core::{Input, compile, load};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let loaded = load::load_str("fuzz.yaml", text);
    for e in &loaded.errors {
        // Error messages are built from the input: formatting them must not panic either.
        let _ = e.to_string();
    }
    let mut input = Input::default();
    for (_, object) in loaded.objects {
        input.upsert(object);
    }
    let compiled = compile(&input);
    let _ = loom_core::snapshot::describe(&compiled.snapshot);

    let uri = Uri::from_static("http://example.com/a/b?q=1");
    let headers = HeaderMap::new();
    let req = HttpRequest {
        scheme: "http",
        sni: None,
        method: &Method::GET,
        uri: &uri,
        headers: &headers,
    };
    for (name, gateway) in &compiled.snapshot.gateways {
        for port in gateway.ports.keys() {
            let _ = compiled.snapshot.decide(name, *port, &req, 0);
        }
    }
});
