//! The cache against a scripted directory that counts its lookups, with
//! tokio's paused clock standing in for time.

use super::*;
use std::rc::Rc;
use std::sync::Arc;

/// Answers from a table; counts lookups; can be made to fail; answers slowly.
#[derive(Default)]
struct Scripted {
    routes: RefCell<HashMap<String, Route>>,
    failing: Cell<bool>,
    lookups: Cell<usize>,
}

impl Directory for Scripted {
    fn lookup_for<'a>(&'a self, request: LookupRequest<'a>) -> LookupFuture<'a> {
        let user = request.user;
        Box::pin(async move {
            self.lookups.set(self.lookups.get() + 1);
            tokio::time::sleep(Duration::from_millis(50)).await;
            if self.failing.get() {
                return Err(DirectoryError::BackingOff {
                    kind: "test",
                    wait: Duration::from_secs(1),
                });
            }
            Ok(Lookup::direct(self.routes.borrow().get(user).cloned()))
        })
    }
}

fn route(host: &str) -> Route {
    Route::to(host, None)
}

fn setup() -> (
    Rc<Scripted>,
    CachedDirectory<Rc<Scripted>>,
    Arc<Invalidations>,
) {
    let inner = Rc::new(Scripted::default());
    inner
        .routes
        .borrow_mut()
        .insert("alice".into(), route("box1"));
    let invalidations = Arc::new(Invalidations::default());
    let cache = CachedDirectory::new(
        inner.clone(),
        CacheSettings {
            capacity: 3,
            max_bytes: usize::MAX,
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(10),
            max_stale: Duration::from_secs(3600),
        },
        invalidations.clone(),
    );
    (inner, cache, invalidations)
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn fresh_entries_spare_the_directory_until_the_ttl() {
    run(async {
        let (inner, cache, _) = setup();
        for _ in 0..5 {
            assert_eq!(
                cache.lookup("alice").await.unwrap().route,
                Some(route("box1"))
            );
        }
        assert_eq!(inner.lookups.get(), 1);
        tokio::time::advance(Duration::from_secs(59)).await;
        cache.lookup("alice").await.unwrap();
        assert_eq!(inner.lookups.get(), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        inner
            .routes
            .borrow_mut()
            .insert("alice".into(), route("box2"));
        assert_eq!(
            cache.lookup("alice").await.unwrap().route,
            Some(route("box2"))
        );
        assert_eq!(inner.lookups.get(), 2);
        assert_eq!(cache.stats().hits, 5);
    });
}

#[test]
fn unknown_users_are_remembered_for_the_negative_ttl() {
    run(async {
        let (inner, cache, _) = setup();
        assert_eq!(cache.lookup("mallory").await.unwrap().route, None);
        assert_eq!(cache.lookup("mallory").await.unwrap().route, None);
        assert_eq!(inner.lookups.get(), 1);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(cache.lookup("mallory").await.unwrap().route, None);
        assert_eq!(inner.lookups.get(), 2);
        assert_eq!(cache.stats().negative_hits, 1);
    });
}

#[test]
fn concurrent_lookups_of_one_user_make_one_query() {
    run(async {
        let (inner, cache, _) = setup();
        let lookups: Vec<_> = (0..20).map(|_| cache.lookup("alice")).collect();
        let results = futures_join_all(lookups).await;
        assert!(results
            .iter()
            .all(|r| r.as_ref().unwrap().route == Some(route("box1"))));
        assert_eq!(inner.lookups.get(), 1);
        assert_eq!(cache.stats().coalesced, 19);
    });
}

#[test]
fn an_abandoned_leader_does_not_strand_the_followers() {
    run(async {
        let (inner, cache, _) = setup();
        let leader = cache.lookup("alice");
        let follower = cache.lookup("alice");
        // Poll the leader once, then drop it mid-lookup.
        let mut leader = Box::pin(leader);
        assert!(futures_poll_once(&mut leader).await.is_none());
        drop(leader);
        assert_eq!(follower.await.unwrap().route, Some(route("box1")));
        assert_eq!(inner.lookups.get(), 2);
    });
}

#[test]
fn failures_serve_stale_entries_up_to_max_stale() {
    run(async {
        let (inner, cache, _) = setup();
        cache.lookup("alice").await.unwrap();
        inner.failing.set(true);
        tokio::time::advance(Duration::from_secs(120)).await;
        assert_eq!(
            cache.lookup("alice").await.unwrap().route,
            Some(route("box1"))
        );
        assert_eq!(cache.stats().stale, 1);
        // Never seen: a temporary failure.
        assert!(cache.lookup("bob").await.is_err());
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(cache.lookup("alice").await.is_err(), "older than max_stale");
        inner.failing.set(false);
        assert_eq!(
            cache.lookup("alice").await.unwrap().route,
            Some(route("box1"))
        );
    });
}

#[test]
fn invalidation_forces_a_new_query_on_every_cache() {
    run(async {
        let (inner, cache, invalidations) = setup();
        let other_worker = CachedDirectory::new(
            inner.clone(),
            CacheSettings::default(),
            invalidations.clone(),
        );
        cache.lookup("alice").await.unwrap();
        other_worker.lookup("alice").await.unwrap();
        assert_eq!(inner.lookups.get(), 2);
        inner
            .routes
            .borrow_mut()
            .insert("alice".into(), route("box9"));
        invalidations.invalidate("ALICE");
        assert_eq!(
            cache.lookup("alice").await.unwrap().route,
            Some(route("box9"))
        );
        assert_eq!(
            other_worker.lookup("alice").await.unwrap().route,
            Some(route("box9"))
        );
        assert_eq!(inner.lookups.get(), 4);
    });
}

#[test]
fn a_worker_far_behind_the_invalidation_log_clears_everything() {
    run(async {
        let (inner, cache, invalidations) = setup();
        cache.lookup("alice").await.unwrap();
        for i in 0..(INVALIDATIONS_KEPT + 10) {
            invalidations.invalidate(&format!("user{i}"));
        }
        cache.lookup("alice").await.unwrap();
        assert_eq!(inner.lookups.get(), 2);
    });
}

#[test]
fn capacity_bounds_the_entries() {
    run(async {
        let (inner, cache, _) = setup();
        for u in ["a", "b", "c", "d"] {
            cache.lookup(u).await.unwrap();
        }
        assert_eq!(cache.entries.borrow().len(), 3);
        cache.lookup("a").await.unwrap(); // evicted: asked again
        assert_eq!(inner.lookups.get(), 5);
    });
}

async fn futures_join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (i, f) in pinned.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.into_iter().map(|o| o.expect("completed")).collect()
}

async fn futures_poll_once<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| match std::pin::Pin::new(&mut *f).poll(cx) {
        std::task::Poll::Ready(v) => std::task::Poll::Ready(Some(v)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
}

#[test]
fn each_answer_says_whether_the_cache_gave_it() {
    run(async {
        let (_, cache, _) = setup();
        let first = cache.lookup("alice").await.unwrap();
        assert_eq!(first.served_by, ServedBy::CacheMiss);
        let second = cache.lookup("alice").await.unwrap();
        assert_eq!(second.served_by, ServedBy::CacheHit);
    });
}

#[test]
fn an_invalidation_by_any_name_of_a_user_reaches_every_other_name() {
    let form = crate::directory::name_form::KeyFormat {
        strip_domain: true,
        lower_case: true,
        ..Default::default()
    };
    let invalidations = Invalidations::with_form(form);
    let seen = invalidations.generation();
    // What a watch reports for `(uid=%s)`: the lookup key.
    invalidations.invalidate("carol7");
    assert!(invalidations.invalidated_since(seen, "Carol7@Example.org"));
    assert!(!invalidations.invalidated_since(seen, "bob@example.org"));
    // What an admin types: the typed name reaches the key too.
    let seen = invalidations.generation();
    invalidations.invalidate("Dave@Example.org");
    assert!(invalidations.invalidated_since(seen, "dave"));
    assert_eq!(invalidations.canonical("Dave@Example.org"), "dave");
}

#[test]
fn canonical_names_follow_default_domain_and_the_query_key_template() {
    use crate::directory::name_form::KeyFormat;
    let with_domain = Invalidations::with_form(KeyFormat {
        default_domain: Some("example.org".into()),
        ..Default::default()
    });
    let seen = with_domain.generation();
    // The watch reports the mail attribute; the client typed the bare name.
    with_domain.invalidate("erin@example.org");
    assert!(with_domain.invalidated_since(seen, "Erin"));
    let template = Invalidations::with_form(KeyFormat {
        template: Some("\\u.\\d".into()),
        lower_case: true,
        ..Default::default()
    });
    let seen = template.generation();
    template.invalidate("frank.example.org");
    assert!(template.invalidated_since(seen, "Frank@Example.org"));
    assert!(!template.invalidated_since(seen, "frank@example.net"));
}

/// Two workers' caches over one directory each (sharing its script) and
/// one process-wide layer.
fn two_workers() -> (
    Rc<Scripted>,
    [CachedDirectory<Rc<Scripted>>; 2],
    Arc<Invalidations>,
) {
    let (inner, first, invalidations) = setup();
    let settings = first.settings;
    let shared = Arc::new(super::super::shared::SharedRoutes::new(
        settings,
        invalidations.clone(),
    ));
    let second = CachedDirectory::new(inner.clone(), settings, invalidations.clone());
    (
        inner,
        [
            first.with_shared(shared.clone()),
            second.with_shared(shared),
        ],
        invalidations,
    )
}

#[test]
fn the_process_holds_one_copy_of_a_route_whatever_the_workers() {
    run(async {
        let (_inner, [a, b], _) = two_workers();
        a.lookup("alice").await.unwrap();
        b.lookup("alice").await.unwrap();
        let route_of = |cache: &CachedDirectory<Rc<Scripted>>| {
            let entries = cache.entries.borrow();
            entries.peek("alice").unwrap().route.clone().unwrap()
        };
        let (in_a, in_b) = (route_of(&a), route_of(&b));
        assert!(Arc::ptr_eq(&in_a, &in_b), "one allocation");
        // The two workers and the process-wide layer point at it.
        assert_eq!(Arc::strong_count(&in_a), 3 + 2);
        // A worker counts its key, not the route the layer counts.
        let key_only = super::super::entries::ENTRY_OVERHEAD + "alice".len();
        assert_eq!(a.entries.borrow().bytes(), key_only);
    })
}

#[test]
fn what_one_worker_looked_up_another_finds_in_the_shared_layer() {
    run(async {
        let (inner, [a, b], _) = two_workers();
        assert_eq!(a.lookup("alice").await.unwrap().route, Some(route("box1")));
        let found = b.lookup("alice").await.unwrap();
        assert_eq!(found.route, Some(route("box1")));
        assert_eq!(found.served_by, ServedBy::SharedHit);
        assert_eq!(inner.lookups.get(), 1, "one lookup for the process");
        assert_eq!((b.stats().shared_hits, b.stats().misses), (1, 0));
        // Unknown users too (negative entries).
        assert_eq!(a.lookup("nobody").await.unwrap().route, None);
        assert_eq!(b.lookup("nobody").await.unwrap().route, None);
        assert_eq!(inner.lookups.get(), 2);
    })
}

#[test]
fn concurrent_misses_on_two_workers_make_one_lookup() {
    run(async {
        let (inner, [a, b], _) = two_workers();
        let (x, y) = tokio::join!(a.lookup("alice"), b.lookup("alice"));
        assert_eq!(x.unwrap().route, Some(route("box1")));
        assert_eq!(y.unwrap().route, Some(route("box1")));
        assert_eq!(inner.lookups.get(), 1, "single flight across workers");
    })
}

#[test]
fn a_worker_that_never_saw_a_user_serves_the_route_another_saw_when_the_directory_fails() {
    run(async {
        let (inner, [a, b], _) = two_workers();
        a.lookup("alice").await.unwrap();
        tokio::time::advance(Duration::from_secs(61)).await;
        inner.failing.set(true);
        let stale = b.lookup("alice").await.unwrap();
        assert_eq!(
            stale.route,
            Some(route("box1")),
            "stale-if-error, process-wide"
        );
        assert_eq!(b.stats().stale, 1);
        assert!(
            b.lookup("nobody").await.is_err(),
            "nothing to serve for a stranger"
        );
    })
}

#[test]
fn an_invalidation_clears_the_shared_layer_too() {
    run(async {
        let (inner, [a, b], invalidations) = two_workers();
        a.lookup("alice").await.unwrap();
        inner
            .routes
            .borrow_mut()
            .insert("alice".into(), route("box2"));
        invalidations.invalidate("alice");
        assert_eq!(b.lookup("alice").await.unwrap().route, Some(route("box2")));
        assert_eq!(inner.lookups.get(), 2);
    })
}

/// Checks the password, as an auth_http server does: "good" routes with a
/// password of the directory's own, anything else is refused.
#[derive(Default)]
struct Checking {
    lookups: Cell<usize>,
}

impl Directory for Checking {
    fn lookup_for<'a>(&'a self, request: LookupRequest<'a>) -> LookupFuture<'a> {
        Box::pin(async move {
            self.lookups.set(self.lookups.get() + 1);
            tokio::time::sleep(Duration::from_millis(50)).await;
            if request.password.map(|p| p.expose()) == Some(b"good") {
                let mut route = route("box1");
                route.login_password = Some(crate::auth::Secret::new(b"master".to_vec()));
                Ok(Lookup::direct(Some(route)))
            } else {
                Err(DirectoryError::Refused {
                    kind: "test",
                    reason: "Invalid login or password".into(),
                    wait: None,
                })
            }
        })
    }
}

#[test]
fn answers_about_one_login_are_neither_cached_nor_handed_on() {
    run(async {
        let inner = Rc::new(Checking::default());
        let invalidations = Arc::new(Invalidations::default());
        let settings = CacheSettings {
            max_bytes: usize::MAX,
            ..CacheSettings::default()
        };
        let shared = Arc::new(SharedRoutes::new(settings, invalidations.clone()));
        let cache = CachedDirectory::new(inner.clone(), settings, invalidations.clone())
            .with_shared(shared.clone());
        let other_worker =
            CachedDirectory::new(inner.clone(), settings, invalidations).with_shared(shared);
        let good = crate::auth::Secret::new(b"good".to_vec());
        let bad = crate::auth::Secret::new(b"bad".to_vec());
        let ask = |password| LookupRequest {
            password: Some(password),
            ..LookupRequest::user("alice")
        };
        // A wrong password's refusal, asked first, is not the answer of
        // the right one asked while it is pending (here or on another
        // worker), nor the other way round.
        let (refused, routed, other) = tokio::join!(
            cache.lookup_for(ask(&bad)),
            cache.lookup_for(ask(&good)),
            other_worker.lookup_for(ask(&bad)),
        );
        assert!(matches!(refused, Err(DirectoryError::Refused { .. })));
        assert!(matches!(other, Err(DirectoryError::Refused { .. })));
        let route = routed.unwrap().route.unwrap();
        assert_eq!(route.login_password.unwrap().expose(), b"master");
        assert_eq!(inner.lookups.get(), 3, "each login asked for itself");
        // Nothing was kept: the next logins ask again.
        assert!(cache.lookup_for(ask(&bad)).await.is_err());
        assert!(cache.lookup_for(ask(&good)).await.is_ok());
        assert_eq!(inner.lookups.get(), 5);
    });
}
