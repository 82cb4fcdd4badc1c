//! The cost of recording (per login and per session end) and of rendering
//! `/metrics` from two workers' recorders.
#![allow(missing_docs)] // criterion_main! defines an undocumented `main`

use criterion::{criterion_group, criterion_main, Criterion};
use mailgate::config::Protocol;
use mailgate::directory::CacheStats;
use mailgate::metrics::{
    prometheus, Listener, LoginOutcome, Recorder, RelayMethod, SharedRecorder,
};
use std::time::Duration;

fn metrics(c: &mut Criterion) {
    let shared = SharedRecorder::default();
    let backend = "10.8.0.2:10143".parse().unwrap();
    let listener = Listener {
        protocol: Protocol::Imap,
        address: "0.0.0.0:143".parse().unwrap(),
    };
    let mut group = c.benchmark_group("metrics");
    group.bench_function("record_login_and_session_end", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            mailgate::metrics::with(&shared, |r| {
                r.login(
                    listener,
                    LoginOutcome::Ok,
                    Duration::from_micros(500 + i % 5000),
                );
                r.session_end(listener, Duration::from_millis(10 + i % 100_000));
                r.relayed(backend, 100, 4096, RelayMethod::Splice);
            })
        })
    });
    let mut workers = vec![Recorder::default(), Recorder::default()];
    for (w, r) in workers.iter_mut().enumerate() {
        for i in 0..10_000u64 {
            r.login(
                listener,
                LoginOutcome::Ok,
                Duration::from_micros(100 + i * (w as u64 + 1)),
            );
            r.relayed(
                format!("10.8.0.{}:143", i % 16).parse().unwrap(),
                10,
                1000,
                if i % 2 == 0 {
                    RelayMethod::Splice
                } else {
                    RelayMethod::Copy
                },
            );
        }
    }
    group.bench_function("merge_and_render_two_workers", |b| {
        b.iter(|| {
            let mut merged = Recorder::default();
            for r in &workers {
                merged.merge(r);
            }
            prometheus::render(&merged, &CacheStats::default())
        })
    });
    group.finish();
}

criterion_group!(benches, metrics);
criterion_main!(benches);
