//! [`SharedCache`]: many syncs of one source share one fetch. Callers asking for the same
//! (cache entry, ref, depth, limits) at the same time join the fetch in flight (single flight),
//! and a successful result is served again to callers whose [`Freshness`] it satisfies, so that
//! 1,000 syncs of one repository at one revision cost one fetch and one checkout.
//!
//! Freshness is judged by when a fetch *started*: a result is fresh for a caller when its fetch
//! began at or after the caller's threshold. A caller that needs a result newer than the fetch
//! in flight waits for it to end and then starts (or joins) the next one, so a burst of such
//! callers costs at most two fetches, never one each. Failures are given to the callers that
//! joined the failing fetch and never served again.
//!
//! Memory is bounded: at most [`SharedCache::DEFAULT_SLOTS`] slots (one per source, ref and
//! options; a slot holds one [`Revision`], a few hundred bytes plus its commit message), the
//! least recently used evicted first. The trees themselves are on disk, shared read-only under
//! the [`Cache`]'s `trees/<sha>/`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::cache::Cache;
use crate::error::SourceError;
use crate::types::{FetchOptions, GitRef, Limits, Revision, Source};
use crate::url;

/// Which results a caller accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// A result of a fetch that started at most this long ago and within the cache's reuse
    /// window, whichever is shorter (periodic syncs, new and changed GitSyncs): the ref may
    /// have moved since, by at most that.
    Recent(Duration),
    /// Only a result of a fetch that started at or after this time: a sync request or a
    /// webhook made then, after the push it announces. A time in the future counts as now.
    StartedAfter(SystemTime),
}

/// Counters of a [`SharedCache`] since it was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SharedStats {
    /// Fetches run (each one a [`Cache::fetch`]: a network round trip unless a pinned commit is
    /// cached).
    pub fetches: u64,
    /// Calls served by joining a fetch that another caller started.
    pub joined: u64,
    /// Calls served from the result of an earlier fetch, without waiting.
    pub reused: u64,
}

/// A [`Cache`] whose fetches are shared between callers; see the module documentation.
/// Safe to share between threads (`Arc<SharedCache>`). **Blocking**, like [`Cache::fetch`].
#[derive(Debug)]
pub struct SharedCache {
    cache: Cache,
    window: Duration,
    capacity: usize,
    slots: Mutex<Slots>,
    done: Condvar,
}

#[derive(Debug, Default)]
struct Slots {
    map: HashMap<Key, Slot>,
    tick: u64,
    stats: SharedStats,
}

/// What makes two calls interchangeable: the cache entry (URL and credential identity), the ref
/// and the options that change the result (timeouts do not).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    entry: PathBuf,
    reference: GitRef,
    depth: Option<u32>,
    limits: Limits,
}

#[derive(Debug, Default)]
struct Slot {
    /// When the fetch in flight started, if one is.
    flying: Option<SystemTime>,
    /// Fetches completed in this slot.
    completed: u64,
    /// The last completed fetch: when it started, and its result.
    last: Option<(SystemTime, Result<Revision, SourceError>)>,
    /// Last use, for eviction.
    used: u64,
}

impl SharedCache {
    /// Slots kept by [`SharedCache::new`].
    pub const DEFAULT_SLOTS: usize = 256;

    /// Shares the fetches of `cache`; a result is reused for [`Freshness::Recent`] callers for
    /// at most `window` after its fetch started.
    pub fn new(cache: Cache, window: Duration) -> Self {
        Self::with_capacity(cache, window, Self::DEFAULT_SLOTS)
    }

    /// The same, keeping at most `capacity` slots (at least 1).
    pub fn with_capacity(cache: Cache, window: Duration, capacity: usize) -> Self {
        SharedCache {
            cache,
            window,
            capacity: capacity.max(1),
            slots: Mutex::new(Slots::default()),
            done: Condvar::new(),
        }
    }

    /// The cache underneath.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The longest a result is reused for [`Freshness::Recent`].
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The counters so far.
    pub fn stats(&self) -> SharedStats {
        self.lock().stats
    }

    /// Like [`Cache::fetch`], sharing the work with concurrent and recent callers as
    /// `freshness` allows. Bounded by `options.timeout`, waiting included; a joined fetch is
    /// bounded by the timeout of the caller that started it.
    pub fn fetch(
        &self,
        source: &Source,
        options: &FetchOptions,
        freshness: Freshness,
    ) -> Result<Revision, SourceError> {
        let deadline = Instant::now() + options.timeout;
        let now = SystemTime::now();
        let threshold = match freshness {
            Freshness::Recent(age) => now
                .checked_sub(age.min(self.window))
                .unwrap_or(SystemTime::UNIX_EPOCH),
            Freshness::StartedAfter(t) => t.min(now),
        };
        let key = Key {
            entry: self.cache.entry_dir(source),
            reference: source.reference.clone(),
            depth: options.depth,
            limits: options.limits,
        };
        let mut slots = self.lock();
        loop {
            slots.tick += 1;
            let tick = slots.tick;
            let slot = slots.map.entry(key.clone()).or_default();
            slot.used = tick;
            if let Some((started, Ok(revision))) = &slot.last
                && *started >= threshold
                // A tree pruned since (more than `keep_trees` newer ones of the entry): fetch.
                && revision.tree_dir.is_dir()
            {
                let revision = revision.clone();
                slots.stats.reused += 1;
                return Ok(revision);
            }
            let Some(flight_started) = slot.flying else {
                return self.run(slots, key, source, options);
            };
            // Wait for the fetch in flight; take its result if it is fresh enough for us,
            // otherwise look again (and start the next fetch, or join one started since).
            let fresh_enough = flight_started >= threshold;
            let seen = slot.completed;
            loop {
                let remaining = deadline.saturating_duration_since(Instant::now());
                if remaining.is_zero() {
                    return Err(SourceError::Timeout {
                        url: redacted(source),
                        after: options.timeout,
                    });
                }
                slots = self
                    .done
                    .wait_timeout(slots, remaining)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                if slots.map.get(&key).is_none_or(|s| s.completed > seen) {
                    break;
                }
            }
            if fresh_enough
                && let Some((_, result)) = slots.map.get(&key).and_then(|s| s.last.as_ref())
            {
                let result = result.clone();
                slots.stats.joined += 1;
                return result;
            }
        }
    }

    /// Runs the fetch of `key` for every caller that joins it.
    fn run(
        &self,
        mut slots: MutexGuard<'_, Slots>,
        key: Key,
        source: &Source,
        options: &FetchOptions,
    ) -> Result<Revision, SourceError> {
        let started = SystemTime::now();
        if let Some(slot) = slots.map.get_mut(&key) {
            slot.flying = Some(started);
        }
        drop(slots);
        // Should this thread unwind, the slot must not stay in flight forever.
        let mut landing = Landing {
            shared: self,
            key,
            started,
            result: None,
        };
        let result = self.cache.fetch(source, options);
        landing.result = Some(result.clone());
        result
    }

    fn lock(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Records the end of a fetch (its result, or a failure if the thread unwound) and wakes the
/// callers waiting for it.
struct Landing<'a> {
    shared: &'a SharedCache,
    key: Key,
    started: SystemTime,
    result: Option<Result<Revision, SourceError>>,
}

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        let result = self.result.take().unwrap_or_else(|| {
            Err(SourceError::Cache {
                path: self.key.entry.clone(),
                reason: "the fetch was interrupted".into(),
            })
        });
        let mut slots = self.shared.lock();
        slots.stats.fetches += 1;
        let slot = slots.map.entry(self.key.clone()).or_default();
        slot.flying = None;
        slot.completed += 1;
        slot.last = Some((self.started, result));
        if slots.map.len() > self.shared.capacity {
            evict(&mut slots.map, self.shared.capacity);
        }
        drop(slots);
        self.shared.done.notify_all();
    }
}

/// Removes the least recently used slots with no fetch in flight until at most `capacity`
/// remain.
fn evict(map: &mut HashMap<Key, Slot>, capacity: usize) {
    let mut idle: Vec<(u64, Key)> = map
        .iter()
        .filter(|(_, s)| s.flying.is_none())
        .map(|(k, s)| (s.used, k.clone()))
        .collect();
    idle.sort_by_key(|(used, _)| *used);
    let excess = map.len().saturating_sub(capacity);
    for (_, key) in idle.into_iter().take(excess) {
        map.remove(&key);
    }
}

fn redacted(source: &Source) -> String {
    url::parse(&source.url)
        .map(|u| u.redacted)
        .unwrap_or_else(|_| crate::secret::redact_url(&source.url))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECENT: Freshness = Freshness::Recent(Duration::from_secs(3600));

    fn key(n: u32) -> Key {
        Key {
            entry: PathBuf::from(format!("/c/{n}")),
            reference: GitRef::Branch("main".into()),
            depth: Some(1),
            limits: Limits::default(),
        }
    }

    #[test]
    fn eviction_drops_the_least_recently_used_idle_slots() {
        let mut map = HashMap::new();
        for n in 0..5u32 {
            map.insert(
                key(n),
                Slot {
                    used: u64::from(10 - n),
                    flying: (n == 4).then_some(SystemTime::UNIX_EPOCH),
                    ..Slot::default()
                },
            );
        }
        // Oldest uses: 4 (flying, kept), 3, 2; then 1 and 0.
        evict(&mut map, 3);
        let mut left: Vec<_> = map.keys().map(|k| k.entry.clone()).collect();
        left.sort();
        assert_eq!(
            left,
            vec![
                PathBuf::from("/c/0"),
                PathBuf::from("/c/1"),
                PathBuf::from("/c/4")
            ]
        );
    }

    #[test]
    fn a_failed_source_check_is_not_a_fetch_that_hangs() {
        let dir = std::env::temp_dir().join(format!("headway-shared-{}", std::process::id()));
        let shared = SharedCache::new(Cache::new(&dir).unwrap(), Duration::from_secs(10));
        let bad = Source::new("file:///nowhere", GitRef::Branch("main".into()));
        for _ in 0..2 {
            let e = shared
                .fetch(&bad, &FetchOptions::default(), RECENT)
                .unwrap_err();
            assert!(matches!(e, SourceError::Invalid(_)), "{e}");
        }
        // Failures are never served again: each call ran its own (failing) check.
        assert_eq!(shared.stats().fetches, 2);
        assert_eq!(shared.stats().reused, 0);
        let _ = std::fs::remove_dir_all(dir);
    }
}
