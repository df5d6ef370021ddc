//! Load Gateway API YAML, compile it, print the status, and decide a request — everything an
//! embedding proxy does with loom-core.
//!
//! ```sh
//! cargo run -p loom-core --example decide -- examples/quickstart.yaml default/web 8080 \
//!     http://shop.example.com:8080/api/items
//! ```

use loom_core::snapshot::{Decision, GatewayName, HttpRequest};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [file, gateway, port, url] = args.as_slice() else {
        return Err("usage: decide FILE NAMESPACE/GATEWAY PORT URL".into());
    };
    let text = std::fs::read_to_string(file)?;
    let loaded = loom_core::load::load_str(file, &text);
    for e in &loaded.errors {
        eprintln!("{e}");
    }
    let mut input = loom_core::Input::default();
    for (_, object) in loaded.objects {
        input.upsert(object);
    }
    let compiled = loom_core::compile(&input);
    for (key, status) in &compiled.status.objects {
        println!("{key}: {}", serde_json::to_string(status)?);
    }

    let (ns, name) = gateway
        .split_once('/')
        .ok_or("gateway must be namespace/name")?;
    let request = http::Request::get(url.as_str()).body(())?;
    let parts = HttpRequest {
        scheme: request.uri().scheme_str().unwrap_or("http"),
        sni: None,
        method: request.method(),
        uri: request.uri(),
        headers: request.headers(),
    };
    // The only randomness (weighted backends, mirror percentages) comes in as an argument.
    let random = 0x5eed;
    match compiled
        .snapshot
        .decide(&GatewayName::new(ns, name), port.parse()?, &parts, random)
    {
        Decision::Forward(f) => println!(
            "forward to {} {:?}: {} {}",
            f.backend.object, f.backend.endpoints, parts.method, f.path_and_query
        ),
        Decision::Redirect {
            status, location, ..
        } => println!("redirect {status} to {location}"),
        Decision::Respond(r) => println!("respond {} ({})", r.status, r.reason),
    }
    Ok(())
}
