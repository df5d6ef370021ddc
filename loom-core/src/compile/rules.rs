//! Route rules: matches, filters, timeouts, retries, and their backends.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use super::error::{DroppedRule, InvalidRule};
use super::lookup::InputLookup;
use super::model::*;
use crate::input::*;
use crate::snapshot::*;
use http::{HeaderName, HeaderValue};

use super::backends::resolve_backend;
use super::matches::{compile_grpc_matches, compile_http_matches};
use super::traffic::TrafficPolicies;
use crate::filter::{self, Cors, HeaderEdits, PathModifier, Redirect, Rewrite};

/// What compiling one route found.
#[derive(Default)]
pub(crate) struct Findings {
    /// Unresolvable references, in order: `ResolvedRefs=False` with the first reason.
    pub(crate) refs: Vec<UnresolvedRef>,
    /// Rules dropped for invalid values.
    pub(crate) dropped: Vec<DroppedRule>,
    /// Rules kept.
    pub(crate) kept: usize,
    /// Services the route's backends were resolved to (BackendTLSPolicy ancestors), their
    /// EndpointSlices read.
    pub(crate) services: BTreeSet<(String, String)>,
}

/// Compiles one route's rules and resolves its references, collecting [`Findings`].
pub(crate) struct RouteCx<'c, 'w> {
    pub(crate) lookup: &'c InputLookup<'w>,
    pub(crate) policies: &'c TlsPolicies,
    pub(crate) traffic: &'c TrafficPolicies,
    pub(crate) view: &'c RouteView<'c>,
    pub(crate) found: Findings,
    /// Every distinct backend resolved so far: routes that name the same Service port share
    /// one `BackendTarget` (and one endpoint list) in the snapshot.
    pub(crate) interned: &'c mut HashSet<Arc<BackendTarget>>,
}

impl RouteCx<'_, '_> {
    pub(crate) fn http_route(&mut self, r: &HttpRoute) -> Arc<CompiledRoute> {
        // The API server defaults `rules` to one rule matching `PathPrefix /`.
        let default_rule = [HttpRouteRule::default()];
        let rules: &[HttpRouteRule] = if r.spec.rules.is_empty() {
            &default_rule
        } else {
            &r.spec.rules
        };
        let mut http = Vec::with_capacity(rules.len());
        for (index, rule) in rules.iter().enumerate() {
            let compiled = compile_http_matches(&rule.matches).and_then(|matches| {
                let mut compiled = self.rule(
                    index,
                    rule.name.clone(),
                    &rule.filters,
                    &rule.backend_refs,
                    None,
                )?;
                if let Some(t) = &rule.timeouts {
                    // GEP-1742: a zero duration disables the timeout (kept as `Some(0)`).
                    let ms = |s: &Option<String>| s.as_deref().and_then(filter::parse_duration_ms);
                    compiled.timeouts = Timeouts {
                        request_ms: ms(&t.request),
                        backend_request_ms: ms(&t.backend_request),
                    };
                }
                if let Some(retry) = &rule.retry {
                    compiled.retry = Some(Box::new(Retry {
                        codes: retry
                            .codes
                            .iter()
                            .filter_map(|c| u16::try_from(*c).ok())
                            .collect(),
                        attempts: u32::try_from(retry.attempts.unwrap_or(1)).unwrap_or(0),
                        backoff_ms: retry.backoff.as_deref().and_then(filter::parse_duration_ms),
                    }));
                }
                Ok(CompiledRule {
                    index,
                    matches,
                    rule: Arc::new(compiled),
                })
            });
            match compiled {
                Ok(c) => http.push(c),
                Err(why) => self.found.dropped.push(DroppedRule { index, why }),
            }
        }
        self.found.kept = http.len();
        Arc::new(CompiledRoute {
            order: route_order(self.view.meta),
            http,
            grpc: vec![],
        })
    }

    pub(crate) fn grpc_route(&mut self, r: &GrpcRoute) -> Arc<CompiledRoute> {
        let default_rule = [GrpcRouteRule::default()];
        let rules: &[GrpcRouteRule] = if r.spec.rules.is_empty() {
            &default_rule
        } else {
            &r.spec.rules
        };
        let mut grpc = Vec::with_capacity(rules.len());
        for (index, rule) in rules.iter().enumerate() {
            let compiled = compile_grpc_matches(&rule.matches).and_then(|matches| {
                // gRPC is HTTP/2 end to end (its status travels in trailers, which HTTP/1.1
                // responses rarely carry): h2c to the backend, or h2 by ALPN with
                // BackendTLSPolicy, whatever the Service port's appProtocol says.
                let compiled = self.rule(
                    index,
                    rule.name.clone(),
                    &rule.filters,
                    &rule.backend_refs,
                    Some(AppProtocol::H2c),
                )?;
                Ok(CompiledRule {
                    index,
                    matches,
                    rule: Arc::new(compiled),
                })
            });
            match compiled {
                Ok(c) => grpc.push(c),
                Err(why) => self.found.dropped.push(DroppedRule { index, why }),
            }
        }
        self.found.kept = grpc.len();
        Arc::new(CompiledRoute {
            order: route_order(self.view.meta),
            http: vec![],
            grpc,
        })
    }

    fn rule(
        &mut self,
        index: usize,
        name: Option<String>,
        filters: &[HttpRouteFilter],
        backend_refs: &[HttpBackendRef],
        protocol: Option<AppProtocol>,
    ) -> Result<HttpRule, InvalidRule> {
        let (rule_filters, invalid) = self.filters(filters)?;
        // Sized up front: a pushed-to empty `Vec` grows to four (at 5,000 one-backend routes,
        // 7.8 MB of unused slots).
        let mut backends = Vec::with_capacity(backend_refs.len());
        for b in backend_refs {
            let (f, backend_invalid) = self.filters(&b.filters)?;
            let mut w = self.weighted(&b.backend_ref, protocol, f);
            if let Some(why) = backend_invalid {
                w.target = Err(Box::new(why.into()));
            }
            backends.push(w);
        }
        Ok(HttpRule {
            route: self.view.key.clone(),
            rule_index: index,
            rule_name: name,
            filters: rule_filters,
            backends,
            invalid,
            timeouts: Timeouts::default(),
            retry: None,
            rate_limit: None,
            plugins: None,
        })
    }

    /// Resolves one backendRef; a failure is recorded and gives 500 for its share of traffic.
    pub(crate) fn weighted(
        &mut self,
        b: &BackendRef,
        forced: Option<AppProtocol>,
        filters: Filters,
    ) -> WeightedBackend {
        let target = self.backend(b, forced);
        WeightedBackend {
            weight: u32::try_from(b.weight.unwrap_or(1)).unwrap_or(0),
            target,
            filters,
        }
    }

    fn backend(
        &mut self,
        b: &BackendRef,
        forced: Option<AppProtocol>,
    ) -> Result<Arc<BackendTarget>, Box<UnresolvedRef>> {
        match resolve_backend(
            self.lookup,
            self.policies,
            self.traffic,
            self.view,
            b,
            forced,
            &mut self.found.services,
        ) {
            Ok(target) => Ok(match self.interned.get(&target) {
                Some(shared) => shared.clone(),
                None => {
                    self.interned.insert(target.clone());
                    target
                }
            }),
            Err(e) => {
                let e = UnresolvedRef::from(e);
                self.found.refs.push(e.clone());
                Err(Box::new(e))
            }
        }
    }

    /// Compiles filters. `Err` drops the rule (an invalid value); `Ok((_, Some(why)))` keeps the
    /// rule but answers 500 (an ExtensionRef Loom cannot resolve: "the filter MUST NOT be
    /// skipped").
    fn filters(
        &mut self,
        filters: &[HttpRouteFilter],
    ) -> Result<(Filters, Option<UnsupportedExtensionRef>), InvalidRule> {
        let mut out = Filters::default();
        let mut invalid = None;
        for f in filters {
            let missing = || InvalidRule::MissingFilterField {
                filter: f.type_.clone(),
                field: lower_first(&f.type_),
            };
            match f.type_.as_str() {
                "RequestHeaderModifier" => {
                    out.request_headers = Some(Box::new(header_edits(
                        f.request_header_modifier.as_ref().ok_or_else(missing)?,
                    )?));
                }
                "ResponseHeaderModifier" => {
                    out.response_headers = Some(Box::new(header_edits(
                        f.response_header_modifier.as_ref().ok_or_else(missing)?,
                    )?));
                }
                "RequestRedirect" => {
                    let r = f.request_redirect.as_ref().ok_or_else(missing)?;
                    let status = r.status_code.map_or(Ok(302), |s| match s {
                        301 | 302 | 303 | 307 | 308 => Ok(s as u16),
                        other => Err(InvalidRule::RedirectStatus(other)),
                    })?;
                    let scheme = match r.scheme.as_deref() {
                        None | Some("http" | "https") => r.scheme.clone(),
                        Some(other) => {
                            return Err(InvalidRule::RedirectScheme(other.into()));
                        }
                    };
                    out.redirect = Some(Box::new(Redirect {
                        scheme,
                        hostname: r.hostname.clone(),
                        path: r.path.as_ref().map(path_modifier).transpose()?,
                        port: r
                            .port
                            .map(|p| u16::try_from(p).map_err(|_| InvalidRule::RedirectPort(p)))
                            .transpose()?,
                        status,
                    }));
                }
                "URLRewrite" => {
                    let r = f.url_rewrite.as_ref().ok_or_else(missing)?;
                    let hostname = r
                        .hostname
                        .as_deref()
                        .map(|h| {
                            HeaderValue::from_str(h)
                                .map_err(|_| InvalidRule::RewriteHostname(h.into()))
                        })
                        .transpose()?;
                    out.rewrite = Some(Box::new(Rewrite {
                        hostname,
                        path: r.path.as_ref().map(path_modifier).transpose()?,
                    }));
                }
                "RequestMirror" => {
                    let m = f.request_mirror.as_ref().ok_or_else(missing)?;
                    let (numerator, denominator) = match (&m.percent, &m.fraction) {
                        (Some(p), _) => (u32::try_from(*p).unwrap_or(0), 100),
                        (None, Some(fr)) => (
                            u32::try_from(fr.numerator).unwrap_or(0),
                            u32::try_from(fr.denominator.unwrap_or(100)).unwrap_or(100),
                        ),
                        (None, None) => (1, 1),
                    };
                    // An unresolvable mirror is reported (ResolvedRefs) and not mirrored to.
                    if let Ok(backend) = self.backend(&m.backend_ref, None) {
                        out.mirrors.push(Mirror {
                            backend,
                            numerator,
                            denominator,
                        });
                    }
                }
                "CORS" => {
                    let c = f.cors.as_ref().ok_or_else(missing)?;
                    out.cors = Some(Box::new(Cors {
                        allow_origins: c.allow_origins.clone(),
                        allow_credentials: c.allow_credentials.unwrap_or(false),
                        allow_methods: c.allow_methods.clone(),
                        allow_headers: c.allow_headers.clone(),
                        expose_headers: c.expose_headers.clone(),
                        max_age: c.max_age.unwrap_or(5),
                    }));
                }
                "ExtensionRef" => {
                    let e = f.extension_ref.as_ref();
                    let unsupported = UnsupportedExtensionRef {
                        target: e.map_or_else(
                            || "(empty)".to_owned(),
                            |e| format!("{}/{} {}", e.group, e.kind, e.name),
                        ),
                    };
                    self.found.refs.push(unsupported.clone().into());
                    invalid.get_or_insert(unsupported);
                }
                other => return Err(InvalidRule::UnsupportedFilter(other.into())),
            }
        }
        Ok((out, invalid))
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_lowercase().chain(c).collect())
        .unwrap_or_default()
}

fn header_edits(m: &HeaderModifier) -> Result<HeaderEdits, InvalidRule> {
    let pair = |h: &HttpHeader| -> Result<(HeaderName, HeaderValue), InvalidRule> {
        Ok((
            HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| InvalidRule::HeaderName(h.name.clone()))?,
            HeaderValue::from_str(&h.value)
                .map_err(|_| InvalidRule::HeaderValue(h.value.clone()))?,
        ))
    };
    Ok(HeaderEdits {
        set: m.set.iter().map(pair).collect::<Result<_, _>>()?,
        add: m.add.iter().map(pair).collect::<Result<_, _>>()?,
        remove: m
            .remove
            .iter()
            .map(|n| {
                HeaderName::from_bytes(n.as_bytes()).map_err(|_| InvalidRule::HeaderName(n.clone()))
            })
            .collect::<Result<_, _>>()?,
    })
}

fn path_modifier(p: &HttpPathModifier) -> Result<PathModifier, InvalidRule> {
    match p.type_.as_str() {
        "ReplaceFullPath" => Ok(PathModifier::Full(
            p.replace_full_path.clone().unwrap_or_else(|| "/".into()),
        )),
        "ReplacePrefixMatch" => Ok(PathModifier::Prefix(
            p.replace_prefix_match.clone().unwrap_or_else(|| "/".into()),
        )),
        t => Err(InvalidRule::PathModifier(t.into())),
    }
}
