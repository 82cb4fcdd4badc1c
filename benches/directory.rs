//! The directory cache's hot paths: a hit, a negative hit, and a miss through
//! to an in-memory directory (so the cost of the cache itself is measured).
#![allow(missing_docs)] // criterion_main! defines an undocumented `main`

use criterion::{criterion_group, criterion_main, Criterion};
use mailgate::directory::{CacheSettings, CachedDirectory, Directory, Invalidations, StaticMap};
use std::path::Path;
use std::sync::Arc;

fn cache(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut map = String::new();
    for i in 0..10_000 {
        map.push_str(&format!(
            "user{i}@example.org 10.8.{}.{}\n",
            i / 250,
            i % 250
        ));
    }
    let static_map = StaticMap::parse(&map, Path::new("bench.map"), false).unwrap();
    let cached = CachedDirectory::new(
        static_map.clone(),
        CacheSettings::default(),
        Arc::new(Invalidations::default()),
    );
    rt.block_on(async {
        cached.lookup("user42@example.org").await.unwrap();
        cached.lookup("nobody@example.org").await.unwrap();
    });
    let mut group = c.benchmark_group("directory");
    group.bench_function("static_map_lookup", |b| {
        b.iter(|| {
            rt.block_on(static_map.lookup("user42@example.org"))
                .unwrap()
        })
    });
    group.bench_function("cache_hit", |b| {
        b.iter(|| rt.block_on(cached.lookup("user42@example.org")).unwrap())
    });
    group.bench_function("cache_negative_hit", |b| {
        b.iter(|| rt.block_on(cached.lookup("nobody@example.org")).unwrap())
    });
    group.bench_function("cache_miss_then_fill", |b| {
        let settings = CacheSettings {
            capacity: 1,
            ..CacheSettings::default()
        };
        let small = CachedDirectory::new(
            static_map.clone(),
            settings,
            Arc::new(Invalidations::default()),
        );
        let mut i = 0u32;
        b.iter(|| {
            i = i.wrapping_add(1);
            let user = if i % 2 == 0 {
                "user1@example.org"
            } else {
                "user2@example.org"
            };
            rt.block_on(small.lookup(user)).unwrap()
        })
    });
    let invalidations = Arc::new(Invalidations::default());
    let with_invalidations = CachedDirectory::new(
        static_map.clone(),
        CacheSettings::default(),
        invalidations.clone(),
    );
    group.bench_function("cache_hit_after_an_invalidation_elsewhere", |b| {
        let mut i = 0u32;
        b.iter(|| {
            i = i.wrapping_add(1);
            invalidations.invalidate(&format!("other{}", i % 8));
            rt.block_on(with_invalidations.lookup("user42@example.org"))
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, cache);
criterion_main!(benches);
