//! Loom's local rate-limit buckets against `governor`, the crate issue #11 suggests: the same
//! GCRA, counted the way each is used.
//!
//! * `shared`: one bucket all requests count in (Loom: one `AtomicU64` and
//!   `loom_core::policy::gcra`; governor: `RateLimiter::direct`, its default clock).
//! * `per_client/N`: one bucket per client, N clients taking turns (Loom: a bounded LRU table
//!   of `maxKeys` entries behind a mutex, keys hashed; governor: `RateLimiter::keyed`, a
//!   `DashMap` that grows until `retain_recent` is called).
//!
//! The limit is never reached, as on the hot path `bench/policies.sh` measures. Loom reads its
//! clock (`Instant::elapsed`) per check, as the data plane does; governor reads its default
//! clock (quanta, the CPU's time-stamp counter). `shared/*_counter_clock` give both a clock
//! that is one atomic add, to compare the algorithms alone.
//!
//! Run with `cargo bench -p loom-pingora --bench rate_limit`.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use governor::clock::FakeRelativeClock;
use governor::{Quota as GovernorQuota, RateLimiter};
use loom_core::policy::gcra::Quota;
use loom_core::snapshot::ClientKey;
use loom_pingora::policy::local::Bucket;

// One request per nanosecond, a burst of a second's worth: never reached at these speeds.
const RATE: u32 = 1_000_000_000;

fn shared(c: &mut Criterion) {
    let mut g = c.benchmark_group("shared");
    let start = Instant::now();
    let quota = Quota::new(RATE, RATE).expect("non-zero");
    let loom = Bucket::new(quota, None, "bench/default".into());
    g.bench_function("loom", |b| {
        b.iter(|| black_box(loom.check(b"", start.elapsed()).is_allowed()))
    });
    let rate = NonZeroU32::new(RATE).expect("non-zero");
    let governor = RateLimiter::direct(GovernorQuota::per_second(rate).allow_burst(rate));
    g.bench_function("governor", |b| {
        b.iter(|| black_box(governor.check().is_ok()))
    });
    // The algorithms alone: a clock that is one atomic add (Loom's `now` is passed in).
    let loom = Bucket::new(quota, None, "bench/default".into());
    let ticks = AtomicU64::new(0);
    g.bench_function("loom_counter_clock", |b| {
        b.iter(|| {
            let now = Duration::from_nanos(ticks.fetch_add(1, Ordering::Relaxed));
            black_box(loom.check(b"", now).is_allowed())
        })
    });
    let clock = FakeRelativeClock::default();
    let governor = RateLimiter::direct_with_clock(
        GovernorQuota::per_second(rate).allow_burst(rate),
        clock.clone(),
    );
    g.bench_function("governor_counter_clock", |b| {
        b.iter(|| {
            clock.advance(Duration::from_nanos(1));
            black_box(governor.check().is_ok())
        })
    });
    g.finish();
}

fn per_client(c: &mut Criterion) {
    let mut g = c.benchmark_group("per_client");
    let start = Instant::now();
    let quota = Quota::new(RATE, RATE).expect("non-zero");
    let rate = NonZeroU32::new(RATE).expect("non-zero");
    for clients in [1_000u32, 100_000] {
        // Clients as the data plane keys them: the address as text.
        let keys: Vec<String> = (0..clients)
            .map(|i| Ipv4Addr::from(0x0a00_0000 + i).to_string())
            .collect();
        let key = ClientKey::ClientAddress { max_keys: 100_000 };
        let loom = Bucket::new(quota, Some(&key), "bench/default".into());
        let mut next = keys.iter().cycle();
        g.bench_function(BenchmarkId::new("loom", clients), |b| {
            b.iter(|| {
                let k = next.next().expect("cycle");
                black_box(loom.check(k.as_bytes(), start.elapsed()).is_allowed())
            })
        });
        let governor = RateLimiter::keyed(GovernorQuota::per_second(rate).allow_burst(rate));
        let mut next = keys.iter().cycle();
        g.bench_function(BenchmarkId::new("governor", clients), |b| {
            b.iter(|| {
                let k = next.next().expect("cycle");
                black_box(governor.check_key(k).is_ok())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, shared, per_client);
criterion_main!(benches);
