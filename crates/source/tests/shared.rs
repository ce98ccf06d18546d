//! The shared cache against a real `git daemon` (run with `HEADWAY_GIT_TESTS=1`): many callers
//! of one source at one revision cost one fetch, counted both by the cache and by the server's
//! own log; a new commit is picked up once the reuse window (or the caller's shorter age) has
//! passed; a caller that asks for a result newer than a time (a sync request, a webhook) always
//! gets a fresh fetch.

mod support;

use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime};

use headway_source::{Cache, FetchOptions, Freshness, GitRef, SharedCache, Source};
use support::*;

/// As long as the cache allows.
const RECENT: Freshness = Freshness::Recent(Duration::from_secs(3600));

fn opts() -> FetchOptions {
    FetchOptions {
        timeout: Duration::from_secs(60),
        ..FetchOptions::default()
    }
}

fn shared(window: Duration) -> (tempfile::TempDir, Arc<SharedCache>) {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().join("cache")).unwrap();
    (dir, Arc::new(SharedCache::new(cache, window)))
}

#[test]
fn many_callers_of_one_revision_fetch_once() {
    if !enabled("many_callers_of_one_revision_fetch_once") {
        return;
    }
    let up = Upstream::new();
    for i in 0..50 {
        up.write(&format!("p{i}/cm.yaml"), &format!("n: {i}\n"));
    }
    let sha = up.commit("one");
    let (daemon, url) = git_daemon(&up);
    let (_d, shared) = shared(Duration::from_secs(600));
    let source = Source::new(&url, GitRef::Branch("main".into()));

    // 100 callers at once (the controller runs a few at a time; this is the worst case), then
    // 100 more after them.
    let callers = 100;
    let barrier = Arc::new(Barrier::new(callers));
    let threads: Vec<_> = (0..callers)
        .map(|_| {
            let (shared, source, barrier) = (shared.clone(), source.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                shared.fetch(&source, &opts(), RECENT).unwrap()
            })
        })
        .collect();
    let revisions: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    for _ in 0..callers {
        let r = shared.fetch(&source, &opts(), RECENT).unwrap();
        assert_eq!(r.sha, sha);
    }
    assert!(revisions.iter().all(|r| r.sha == sha));
    assert!(
        revisions
            .iter()
            .all(|r| r.tree_dir == revisions[0].tree_dir),
        "one checkout shared by every caller"
    );
    let stats = shared.stats();
    assert_eq!(stats.fetches, 1, "{stats:?}");
    assert_eq!(
        stats.joined + stats.reused,
        2 * callers as u64 - 1,
        "{stats:?}"
    );
    assert_eq!(daemon.upload_packs(), 1, "{}", daemon.log_text());
}

#[test]
fn a_new_commit_is_picked_up_after_the_window_and_at_once_when_asked() {
    if !enabled("a_new_commit_is_picked_up_after_the_window_and_at_once_when_asked") {
        return;
    }
    let up = Upstream::new();
    up.write("app/cm.yaml", "n: 1\n");
    let first = up.commit("first");
    let (daemon, url) = git_daemon(&up);
    // Long enough that the steps between the third fetch and the reuse check (a commit, on a
    // loaded machine) always fit in it.
    let window = Duration::from_secs(8);
    let (_d, shared) = shared(window);
    let source = Source::new(&url, GitRef::Branch("main".into()));
    let fetch = |freshness| shared.fetch(&source, &opts(), freshness).unwrap().sha;

    assert_eq!(fetch(RECENT), first);
    let second = up.write("app/cm.yaml", "n: 2\n").commit("second");

    // A sync request made after the push: never served the older result.
    let requested = SystemTime::now();
    assert_eq!(fetch(Freshness::StartedAfter(requested)), second);
    assert_eq!(daemon.upload_packs(), 2);
    // Asked again for the same request: the fetch it caused is fresh enough.
    assert_eq!(fetch(Freshness::StartedAfter(requested)), second);
    assert_eq!(daemon.upload_packs(), 2);
    // A request time in the future counts as now: a fresh fetch.
    let third = up.write("app/cm.yaml", "n: 3\n").commit("third");
    let future = SystemTime::now() + Duration::from_secs(3600);
    assert_eq!(fetch(Freshness::StartedAfter(future)), third);
    assert_eq!(daemon.upload_packs(), 3);

    // A periodic sync within the window reuses the result: no fetch.
    let fourth = up.write("app/cm.yaml", "n: 4\n").commit("fourth");
    assert_eq!(fetch(RECENT), third);
    assert_eq!(daemon.upload_packs(), 3);
    // Once the window has passed, it fetches and sees the new commit.
    std::thread::sleep(window + Duration::from_millis(100));
    assert_eq!(fetch(RECENT), fourth);
    assert_eq!(daemon.upload_packs(), 4);
    // A caller accepting a shorter age than the window (a short interval) fetches sooner.
    assert_eq!(fetch(Freshness::Recent(Duration::ZERO)), fourth);
    assert_eq!(daemon.upload_packs(), 5);
}

#[test]
fn callers_asking_for_a_fresher_result_than_the_fetch_in_flight_share_the_next_one() {
    if !enabled("callers_asking_for_a_fresher_result_than_the_fetch_in_flight_share_the_next_one") {
        return;
    }
    let up = Upstream::new();
    for i in 0..2000 {
        up.write(&format!("p{i}/cm.yaml"), &format!("n: {i}\n"));
    }
    up.commit("big");
    let (daemon, url) = git_daemon(&up);
    let (_d, shared) = shared(Duration::from_secs(600));
    let source = Source::new(&url, GitRef::Branch("main".into()));
    // One periodic caller starts a fetch; 20 sync requests made after it started must not take
    // its result, and share one fetch between them.
    let first = {
        let (shared, source) = (shared.clone(), source.clone());
        std::thread::spawn(move || shared.fetch(&source, &opts(), RECENT))
    };
    while daemon.upload_packs() == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let requested = SystemTime::now();
    let barrier = Arc::new(Barrier::new(20));
    let requests: Vec<_> = (0..20)
        .map(|_| {
            let (shared, source, barrier) = (shared.clone(), source.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                shared.fetch(&source, &opts(), Freshness::StartedAfter(requested))
            })
        })
        .collect();
    first.join().unwrap().unwrap();
    for r in requests {
        r.join().unwrap().unwrap();
    }
    // The first fetch, then one more for all 20 requests (none of them took the first).
    assert_eq!(shared.stats().fetches, 2, "{:?}", shared.stats());
    assert_eq!(daemon.upload_packs(), 2, "{}", daemon.log_text());
}
