//! RateLimitPolicy enforcement: count a request in the bucket loom-core chose for it (here,
//! or in Redis for global limits) and describe the outcome in the headers of the IETF
//! httpapi draft (`RateLimit-Policy`, `RateLimit`; draft-ietf-httpapi-ratelimit-headers):
//! on a 429 with `Retry-After`, and on allowed responses too where the policy says
//! `headers: Always`.

use std::borrow::Cow;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use loom_core::policy::gcra::{Quota, Verdict};
use loom_core::snapshot::{ClientKey, Limit, RateLimitHeaders};

use super::Shared;
use crate::handle::Published;
use crate::policy::global::GlobalVerdict;

/// `RateLimit-Policy`.
pub(crate) const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub(crate) const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// What counting a request came to.
pub(crate) enum Counted {
    /// Go on; these headers go on the response.
    Allowed(Option<[(HeaderName, HeaderValue); 2]>),
    /// Answer 429 with these headers.
    Limited(Vec<(HeaderName, HeaderValue)>),
    /// The shared store is unreachable and the policy fails closed: answer 503.
    Unavailable,
}

/// Counts one request in the bucket of `limit`. `client` gives the client's address as Loom
/// determines it (asked only for policies keyed by it).
pub(crate) async fn count(
    shared: &Shared,
    published: &Published,
    limit: &Limit<'_>,
    headers: &http::HeaderMap,
    client: impl FnOnce() -> Option<String>,
) -> Counted {
    let rl = limit.rate_limit;
    let address;
    let key: &[u8] = match &rl.key {
        None => b"",
        Some(ClientKey::ClientAddress { .. }) => {
            address = client().unwrap_or_default();
            address.as_bytes()
        }
        Some(ClientKey::Header { name, .. }) => headers.get(name).map_or(b"", |v| v.as_bytes()),
    };
    let (verdict, local) = match rl.global {
        None => {
            let Some(bucket) = shared
                .rate_limits
                .buckets(published, rl)
                .and_then(|b| b.bucket(limit.slot).cloned())
            else {
                return Counted::Allowed(None);
            };
            (bucket.check(key, shared.health.now()), Some(bucket))
        }
        Some(global) => {
            let checked = match &shared.global {
                Some(store) => {
                    // The limit is part of the key: a changed limit starts a fresh bucket, as
                    // local buckets do.
                    // The client's key as a hash every replica computes alike (SipHash
                    // with fixed keys): Redis keys stay short whatever the client sends.
                    let client = {
                        use std::hash::{Hash, Hasher};
                        let mut h = std::hash::DefaultHasher::new();
                        key.hash(&mut h);
                        h.finish()
                    };
                    let name = format!(
                        "{}|{}/{}|{client:016x}",
                        rl.bucket_name(limit.slot),
                        limit.quota.requests_per_second(),
                        limit.quota.burst(),
                    );
                    store
                        .check(
                            &name,
                            limit.quota.requests_per_second(),
                            limit.quota.burst(),
                        )
                        .await
                        .map_err(|e| e.to_string())
                }
                None => Err("no Redis configured (--redis-url)".to_owned()),
            };
            let verdict = match checked {
                Ok(GlobalVerdict::Allowed { remaining, reset }) => {
                    Verdict::Allowed { remaining, reset }
                }
                Ok(GlobalVerdict::Limited { retry_after, reset }) => {
                    Verdict::Limited { retry_after, reset }
                }
                Err(e) => {
                    shared
                        .metrics
                        .rate_limit_store_error(&rl.policy, global.fail_open);
                    tracing::debug!("rate limit {}: {e}", rl.policy);
                    return if global.fail_open {
                        Counted::Allowed(None)
                    } else {
                        Counted::Unavailable
                    };
                }
            };
            (verdict, None)
        }
    };
    // The bucket's name in the headers and its `RateLimit-Policy`, asked only for a response
    // that describes the limit: made once per local bucket, when needed for a global one.
    let described = || match &local {
        Some(bucket) => (Cow::Borrowed(&*bucket.name), bucket.policy_header.clone()),
        None => {
            let name = format!("{}/{}", rl.policy.name, limit.slot);
            let policy = policy_header(&name, &limit.quota);
            (Cow::Owned(name), policy)
        }
    };
    match verdict {
        Verdict::Allowed { .. } if rl.headers == RateLimitHeaders::OnLimit => {
            Counted::Allowed(None)
        }
        Verdict::Allowed { remaining, reset } => {
            let (name, policy) = described();
            Counted::Allowed(Some([
                (RATELIMIT_POLICY, policy),
                (RATELIMIT, ratelimit_value(&name, remaining, seconds(reset))),
            ]))
        }
        Verdict::Limited { retry_after, .. } => {
            let (name, policy) = described();
            let wait = seconds(retry_after);
            Counted::Limited(vec![
                (http::header::RETRY_AFTER, HeaderValue::from(wait)),
                (RATELIMIT_POLICY, policy),
                (RATELIMIT, ratelimit_value(&name, 0, wait)),
            ])
        }
    }
}

/// `RateLimit-Policy` of a bucket: `"<name>";q=<burst>;w=<seconds to refill>`.
pub(crate) fn policy_header(name: &str, quota: &Quota) -> HeaderValue {
    header(&format!(
        "\"{name}\";q={};w={}",
        quota.burst(),
        seconds(quota.window())
    ))
}

/// Whole seconds, rounded up (a client that waits this long is not limited again).
fn seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// `RateLimit`: `"<name>";r=<remaining>;t=<seconds until the bucket is full>`, written into one
/// buffer that becomes the header value without a copy (this runs for every allowed request).
fn ratelimit_value(name: &str, remaining: u32, reset: u64) -> HeaderValue {
    use std::fmt::Write;
    let mut s = String::with_capacity(name.len() + 32);
    let _ = write!(s, "\"{name}\";r={remaining};t={reset}");
    HeaderValue::from_maybe_shared(bytes::Bytes::from(s))
        .unwrap_or_else(|_| HeaderValue::from_static("\"invalid\""))
}

/// A header value from text Loom wrote (policy names are DNS labels).
fn header(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("\"invalid\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratelimit_header_names_the_bucket_and_what_is_left() {
        assert_eq!(
            ratelimit_value("default/api/0", 7, 2),
            "\"default/api/0\";r=7;t=2"
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(seconds(Duration::from_millis(1)), 1);
        assert_eq!(seconds(Duration::from_secs(2)), 2);
        assert_eq!(seconds(Duration::from_millis(2001)), 3);
        assert_eq!(seconds(Duration::ZERO), 0);
    }
}
