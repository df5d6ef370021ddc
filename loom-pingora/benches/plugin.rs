//! What one WASMPlugin call costs (issue #12): the engine (extism on wasmtime) calling
//! `on_request` of a warm, pooled instance with the JSON Loom hands a plugin for a typical
//! request. Three plugins: a no-op written in WAT (the engine's own cost), the Go no-op of
//! `examples/wasm/testdata/noop` (plus the Go runtime's entry), and the auth plugin of
//! `examples/wasm/auth` verifying a good HS256 JWT (real work). The Go plugins come from
//! `bash examples/wasm/build.sh`; without them only the WAT no-op runs.

use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use loom_core::input::{Kind, ObjectKey};
use loom_core::snapshot::{FailStrategy, ModuleDigest, Plugin, PluginPhase};
use loom_pingora::plugin::engine::Engine;

const NOOP_WAT: &str =
    r#"(module (memory 1) (func (export "on_request") (result i32) (i32.const 0)))"#;

/// What Loom hands `on_request` for `GET /api/items` with a bearer token: the same shape
/// `RequestView::json` builds (`{"aud":"api.example.com","sub":"alice"}`, signed with
/// `bench-secret`).
const INPUT: &str = r#"{"method":"GET","path":"/api/items","query":"page=2","headers":{"host":"api.example.com","user-agent":"wrk","accept":"*/*","authorization":"Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImF1ZCI6ImFwaS5leGFtcGxlLmNvbSJ9.BENCH","x-request-id":"3f1c0d5e-9b7a-4a61-8f2e-1d2c3b4a5f60"},"client":"10.0.0.7","route":"default/api-routes","routeKind":"HTTPRoute","rule":"","ruleIndex":0,"phase":"AUTHN"}"#;

fn plugin(config: &str) -> Plugin {
    Plugin {
        plugin: ObjectKey {
            kind: Kind::WasmPlugin,
            namespace: "default".into(),
            name: "bench".into(),
        },
        phase: PluginPhase::Authn,
        priority: 0,
        fail: FailStrategy::FailClose,
        module: Ok(ModuleDigest("bench".into())),
        config: config.into(),
        timeout: Duration::from_millis(100),
        memory_pages: 1024,
    }
}

/// An HS256 JWT for the auth plugin's config, signed here.
fn token() -> String {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let signed = format!(
        "{}.{}",
        b64(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64(br#"{"sub":"alice","aud":"api.example.com"}"#)
    );
    let mut k = [0u8; 64];
    k[..12].copy_from_slice(b"bench-secret");
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(signed.as_bytes())
        .finalize();
    let mac = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    format!("{signed}.{}", b64(&mac))
}

fn calls(c: &mut Criterion) {
    let dir = std::env::temp_dir().join("loom-bench-plugins");
    let engine = Engine::new(&dir);
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/wasm");
    let input = INPUT.replace(
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImF1ZCI6ImFwaS5leGFtcGxlLmNvbSJ9.BENCH",
        &token(),
    );
    let mut plugins: Vec<(&str, Vec<u8>, &str, Option<&str>)> =
        vec![("noop (WAT)", NOOP_WAT.as_bytes().to_vec(), "{}", None)];
    for (name, path, config, want) in [
        ("noop (Go)", "testdata/noop/plugin.wasm", "{}", None),
        (
            "auth (Go, HS256 JWT verified)",
            "auth/plugin.wasm",
            r#"{"audience":"api.example.com","secret":"bench-secret"}"#,
            Some("x-auth-subject"),
        ),
    ] {
        match std::fs::read(examples.join(path)) {
            Ok(wasm) => plugins.push((name, wasm, config, want)),
            Err(_) => eprintln!("skipped {name}: run bash examples/wasm/build.sh first"),
        }
    }
    let mut group = c.benchmark_group("plugin on_request, warm instance");
    for (name, wasm, config, want) in &plugins {
        let exports = engine.check(wasm).expect("the module loads");
        let prepared = engine
            .prepare(&plugin(config), wasm, exports)
            .expect("prepared");
        let out = prepared.call("on_request", input.as_bytes()).unwrap();
        if let Some(want) = want {
            let out = String::from_utf8_lossy(&out);
            assert!(
                out.contains(want),
                "the plugin did not admit the request: {out}"
            );
        }
        group.bench_function(*name, |b| {
            b.iter(|| prepared.call("on_request", input.as_bytes()).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, calls);
criterion_main!(benches);
