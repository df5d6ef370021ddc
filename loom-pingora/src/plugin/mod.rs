//! WASMPlugins in the data plane: the modules (fetched off the request path, compiled once per
//! content), their state for the compiler's status, and the calls a request makes.
//!
//! ```text
//! sync(input)      the modules the input's plugins name: new ones are fetched in the
//!                  background (retried with backoff); returns every module's state for
//!                  compile (Options::plugin_modules); a change of state wakes `changes()`
//! prepare(snapshot) before a snapshot is served: each plugin's module with its config and
//!                  limits, ready to make instances (off the request path)
//! on_request       AUTHN, AUTHZ (before the route's filters), then unspecified (after them)
//! on_response      the response side, and STATS
//! ```
//!
//! The interface a plugin sees is in docs/wasm-plugins.md: `on_request` gets a JSON object
//! describing the request and returns actions (header edits, or an answer); `on_response`
//! gets the request, the response's status and headers and the latency, and returns response
//! header edits. Loom's engine is extism on wasmtime (the `wasm` feature); built without it,
//! every plugin reports that it does not run.

#[cfg(feature = "wasm")]
pub mod engine;
#[cfg(feature = "wasm")]
pub mod fetch;
#[cfg(feature = "wasm")]
mod store;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use loom_core::filter::HeaderEdits;
use loom_core::snapshot::{FailStrategy, HttpRule, Plugin};
use serde::Deserialize;

#[cfg(feature = "wasm")]
pub use store::Plugins;

/// Without the `wasm` feature: no engine; every plugin reports so and fails as its
/// `failStrategy` says.
#[cfg(not(feature = "wasm"))]
#[derive(Clone, Debug, Default)]
pub struct Plugins;

#[cfg(not(feature = "wasm"))]
impl Plugins {
    /// No engine (this build has none).
    pub fn new(_cache_dir: std::path::PathBuf) -> Plugins {
        Plugins
    }

    /// No engine.
    pub fn none() -> Plugins {
        Plugins
    }

    /// No engine: `None` (plugins report that this data plane runs none).
    pub fn sync(
        &self,
        _input: &loom_core::Input,
    ) -> Option<loom_core::compile::PluginModuleStates> {
        None
    }

    /// Nothing to wait for.
    pub fn wait_settled(&self, _at_most: Duration) -> bool {
        true
    }

    /// Never changes.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        tokio::sync::watch::channel(0).1
    }

    pub(crate) fn prepare(&self, _snapshot: &loom_core::Snapshot) {}

    fn call(&self, _p: &Plugin, _export: Export, _input: &[u8]) -> Outcome {
        Outcome::Unavailable("this data plane runs no WASMPlugins".into())
    }
}

/// The two functions a plugin may export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Export {
    OnRequest,
    OnResponse,
}

impl Export {
    #[cfg_attr(not(feature = "wasm"), allow(dead_code))]
    pub(crate) fn name(self) -> &'static str {
        match self {
            Export::OnRequest => "on_request",
            Export::OnResponse => "on_response",
        }
    }
}

/// What came of calling a plugin.
#[cfg_attr(not(feature = "wasm"), allow(dead_code))]
pub(crate) enum Outcome {
    /// Its output (possibly empty).
    Output(Vec<u8>),
    /// The module does not export this function: nothing to do.
    NotExported,
    /// The module is not loaded (pending, refused, invalid plugin, no engine).
    Unavailable(String),
    /// The call failed (trap, time budget, memory, the plugin's own error).
    Failed(String),
}

/// A plugin's output (Gateway API's HTTPHeaderFilter shape for header edits).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Actions {
    #[serde(default)]
    request_headers: Option<Edits>,
    #[serde(default)]
    response_headers: Option<Edits>,
    #[serde(default)]
    respond: Option<Answer>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Edits {
    #[serde(default)]
    set: Vec<NameValue>,
    #[serde(default)]
    add: Vec<NameValue>,
    #[serde(default)]
    remove: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NameValue {
    name: String,
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    status: u16,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    body: String,
}

impl Edits {
    fn compile(self) -> Result<HeaderEdits, String> {
        let pair = |nv: NameValue| -> Result<(HeaderName, HeaderValue), String> {
            Ok((
                HeaderName::try_from(nv.name.as_str())
                    .map_err(|_| format!("bad header name {:?}", nv.name))?,
                HeaderValue::try_from(nv.value.as_str())
                    .map_err(|_| format!("bad value for header {:?}", nv.name))?,
            ))
        };
        Ok(HeaderEdits {
            set: self.set.into_iter().map(pair).collect::<Result<_, _>>()?,
            add: self.add.into_iter().map(pair).collect::<Result<_, _>>()?,
            remove: self
                .remove
                .iter()
                .map(|n| {
                    HeaderName::try_from(n.as_str()).map_err(|_| format!("bad header name {n:?}"))
                })
                .collect::<Result<_, _>>()?,
        })
    }
}

/// An answer a plugin gave (or the failure a plugin became).
#[derive(Debug)]
pub(crate) struct PluginAnswer {
    pub(crate) status: StatusCode,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) body: Bytes,
}

/// Says which plugin answered a request that failed closed.
const PLUGIN_HEADER: HeaderName = HeaderName::from_static("x-loom-plugin");

/// A plugin call that gave no answer: counted, logged (a plugin that failed as a warning, one
/// not loaded, which its status already reports, at debug), and with FailClose the answer
/// the request gets (500 failed, 503 not loaded).
fn failure(
    p: &Plugin,
    metrics: &crate::metrics::Metrics,
    not_loaded: bool,
    why: &str,
) -> Option<PluginAnswer> {
    let fail_open = p.fail == FailStrategy::FailOpen;
    metrics.plugin_failed(&p.plugin, not_loaded, fail_open);
    let name = format!("{}/{}", p.plugin.namespace, p.plugin.name);
    let (status, what) = if not_loaded {
        (StatusCode::SERVICE_UNAVAILABLE, "not loaded")
    } else {
        (StatusCode::INTERNAL_SERVER_ERROR, "failed")
    };
    let then = if fail_open {
        "skipped (failStrategy FailOpen)".to_owned()
    } else {
        format!("answering {} (failStrategy FailClose)", status.as_u16())
    };
    if not_loaded {
        tracing::debug!(plugin = %name, "WASMPlugin {what}, {then}: {why}");
    } else {
        tracing::warn!(plugin = %name, "WASMPlugin {what}, {then}: {why}");
    }
    (!fail_open).then(|| PluginAnswer::failed(p, status, what))
}

impl PluginAnswer {
    fn failed(p: &Plugin, status: StatusCode, what: &str) -> Self {
        PluginAnswer {
            status,
            headers: vec![(
                PLUGIN_HEADER,
                HeaderValue::from_str(&format!("{}/{}; {what}", p.plugin.namespace, p.plugin.name))
                    .unwrap_or(HeaderValue::from_static("failed")),
            )],
            body: Bytes::new(),
        }
    }
}

/// What a plugin is told about the request.
pub(crate) struct RequestView<'a> {
    pub(crate) header: &'a pingora::http::RequestHeader,
    pub(crate) client: Option<&'a str>,
    pub(crate) rule: &'a HttpRule,
}

impl RequestView<'_> {
    fn json(&self, phase: &str) -> serde_json::Value {
        let h = self.header;
        serde_json::json!({
            "method": h.method.as_str(),
            "path": h.uri.path(),
            "query": h.uri.query().unwrap_or(""),
            "headers": headers_json(&h.headers),
            "client": self.client.unwrap_or(""),
            "route": format!("{}/{}", self.rule.route.namespace, self.rule.route.name),
            "routeKind": self.rule.route.kind.as_str(),
            "rule": self.rule.rule_name.as_deref().unwrap_or(""),
            "ruleIndex": self.rule.rule_index,
            "phase": phase,
        })
    }
}

/// Headers as a plugin sees them: names in lower case, a repeated header's values joined by
/// `, ` (RFC 9110 §5.3).
fn headers_json(headers: &http::HeaderMap) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (name, value) in headers {
        let v = String::from_utf8_lossy(value.as_bytes());
        match out.get_mut(name.as_str()) {
            Some(serde_json::Value::String(s)) => {
                s.push_str(", ");
                s.push_str(&v);
            }
            _ => {
                out.insert(name.as_str().to_owned(), v.into_owned().into());
            }
        }
    }
    out.into()
}

fn parse(p: &Plugin, output: &[u8]) -> Result<Actions, String> {
    if output.iter().all(u8::is_ascii_whitespace) {
        return Ok(Actions::default());
    }
    serde_json::from_slice(output).map_err(|e| {
        format!(
            "{}/{}: its output is not Loom's actions JSON: {e}",
            p.plugin.namespace, p.plugin.name
        )
    })
}

impl Plugins {
    /// Runs `on_request` of `plugins` in order, editing the request's headers as they say;
    /// an answer (a plugin's own, or the failure of a FailClose plugin) ends the request.
    pub(crate) fn on_request(
        &self,
        plugins: &[Arc<Plugin>],
        req: &mut pingora::http::RequestHeader,
        client: Option<&str>,
        rule: &HttpRule,
        metrics: &crate::metrics::Metrics,
    ) -> Option<PluginAnswer> {
        for p in plugins {
            let view = RequestView {
                header: req,
                client,
                rule,
            };
            let input = view.json(p.phase.as_str()).to_string();
            let output = match self.call(p, Export::OnRequest, input.as_bytes()) {
                Outcome::Output(o) => o,
                Outcome::NotExported => continue,
                Outcome::Unavailable(why) => match failure(p, metrics, true, &why) {
                    Some(answer) => return Some(answer),
                    None => continue,
                },
                Outcome::Failed(why) => match failure(p, metrics, false, &why) {
                    Some(answer) => return Some(answer),
                    None => continue,
                },
            };
            let applied = parse(p, &output).and_then(|a| {
                if let Some(edits) = a.request_headers {
                    edits
                        .compile()?
                        .apply(&mut crate::pipeline::headers::Request(req));
                }
                a.respond.map(answer_of).transpose()
            });
            match applied {
                Ok(Some(answer)) => return Some(answer),
                Ok(None) => {}
                Err(why) => {
                    if let Some(answer) = failure(p, metrics, false, &why) {
                        return Some(answer);
                    }
                }
            }
        }
        None
    }

    /// Runs `on_response` of `plugins` in order, editing the response's headers; `Err` when a
    /// FailClose plugin failed (the request then gets 500).
    pub(crate) fn on_response(
        &self,
        plugins: impl Iterator<Item = Arc<Plugin>>,
        req: RequestView<'_>,
        resp: &mut pingora::http::ResponseHeader,
        latency: Duration,
        metrics: &crate::metrics::Metrics,
    ) -> Result<(), String> {
        let mut request = None;
        for p in plugins {
            let request = request.get_or_insert_with(|| req.json(""));
            request["phase"] = p.phase.as_str().into();
            let input = serde_json::json!({
                "request": request,
                "status": resp.status.as_u16(),
                "headers": headers_json(&resp.headers),
                "latencyMs": latency.as_secs_f64() * 1000.0,
            })
            .to_string();
            let result = match self.call(&p, Export::OnResponse, input.as_bytes()) {
                Outcome::Output(o) => parse(&p, &o)
                    .and_then(|a| {
                        if let Some(edits) = a.response_headers {
                            edits
                                .compile()?
                                .apply(&mut crate::pipeline::headers::Response(resp));
                        }
                        Ok(())
                    })
                    .map_err(|why| (false, why)),
                Outcome::NotExported => Ok(()),
                Outcome::Unavailable(why) => Err((true, why)),
                Outcome::Failed(why) => Err((false, why)),
            };
            let failed = match result {
                Ok(()) => continue,
                Err((not_loaded, why)) => failure(&p, metrics, not_loaded, &why).map(|_| why),
            };
            if let Some(why) = failed {
                return Err(format!(
                    "WASMPlugin {}/{} failed: {why}",
                    p.plugin.namespace, p.plugin.name
                ));
            }
        }
        Ok(())
    }
}

/// Headers a plugin's answer cannot set: Loom frames the answer itself (Content-Length of
/// `body`) and keeps the connection's own headers; a plugin's framing headers could
/// desynchronise the client.
const ANSWER_FRAMING: [&str; 5] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
];

fn answer_of(a: Answer) -> Result<PluginAnswer, String> {
    let status = StatusCode::from_u16(a.status)
        .ok()
        .filter(|s| (200..600).contains(&s.as_u16()))
        .ok_or_else(|| format!("respond.status {} is not a final HTTP status", a.status))?;
    let mut headers = vec![];
    for (n, v) in a.headers {
        if ANSWER_FRAMING.iter().any(|f| n.eq_ignore_ascii_case(f)) {
            continue;
        }
        headers.push((
            HeaderName::try_from(n.as_str()).map_err(|_| format!("bad header name {n:?}"))?,
            HeaderValue::try_from(v.as_str()).map_err(|_| format!("bad value for header {n:?}"))?,
        ));
    }
    Ok(PluginAnswer {
        status,
        headers,
        body: Bytes::from(a.body),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_keeps_its_headers_but_not_framing_ones() {
        let a: Answer = serde_json::from_str(
            r#"{"status": 401, "headers": {"www-authenticate": "Bearer", "Transfer-Encoding": "chunked", "content-length": "9"}, "body": "no"}"#,
        )
        .unwrap();
        let answer = answer_of(a).unwrap();
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        let names: Vec<&str> = answer.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["www-authenticate"]);
        assert_eq!(answer.body, "no");
    }

    #[test]
    fn outputs_loom_cannot_use_are_refused() {
        let bad = |json: &str| serde_json::from_str::<Actions>(json).is_err();
        assert!(bad(r#"{"requestHeader": {}}"#), "unknown field");
        assert!(bad(r#"{"respond": {"status": 200, "extra": 1}}"#));
        let status = |n: u16| {
            answer_of(Answer {
                status: n,
                headers: Default::default(),
                body: String::new(),
            })
            .is_ok()
        };
        assert!(status(200) && status(599));
        assert!(!status(101) && !status(600) && !status(99));
        let edits = Edits {
            set: vec![NameValue {
                name: "bad name".into(),
                value: "v".into(),
            }],
            ..Edits::default()
        };
        assert!(edits.compile().unwrap_err().contains("bad header name"));
    }
}
