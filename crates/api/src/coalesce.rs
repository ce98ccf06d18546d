//! Burst control for webhook sync requests, per GitSync: a request still waiting for the
//! controller absorbs every later push (it will fetch the newest commit anyway), and requests
//! are at least `min_gap` apart (a later push inside the gap is sent once, when the gap ends).
//! So a burst of pushes causes at most two fetches per `min_gap`. Pure: time is passed in.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// What to do with a push for one GitSync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Request a sync now.
    Now,
    /// Request one after this delay (the caller schedules [`Coalescer::fire`]).
    Later(Duration),
    /// Nothing: a request already covers this push.
    Coalesced,
}

#[derive(Debug, Default)]
struct Entry {
    last_sent: Option<Instant>,
    last_value: Option<String>,
    deferred: bool,
}

/// Per-key request state.
#[derive(Debug)]
pub struct Coalescer<K> {
    min_gap: Duration,
    /// A request not picked up after this long no longer holds later pushes back (the
    /// controller may have been down, or the annotation overwritten).
    stale_after: Duration,
    entries: HashMap<K, Entry>,
}

impl<K: Hash + Eq + Clone> Coalescer<K> {
    pub fn new(min_gap: Duration, stale_after: Duration) -> Self {
        Coalescer {
            min_gap,
            stale_after,
            entries: HashMap::new(),
        }
    }

    fn pending(&self, e: &Entry, now: Instant, picked_up: &dyn Fn(&str) -> bool) -> bool {
        match (&e.last_value, e.last_sent) {
            (Some(v), Some(at)) => now.duration_since(at) < self.stale_after && !picked_up(v),
            _ => false,
        }
    }

    /// Decides for a push at `now`; `picked_up(value)` says whether the controller has started
    /// handling the request with that value.
    pub fn decide(&mut self, key: &K, now: Instant, picked_up: &dyn Fn(&str) -> bool) -> Decision {
        let e = self.entries.entry(key.clone()).or_default();
        if e.deferred {
            return Decision::Coalesced;
        }
        let e = &self.entries[key];
        if self.pending(e, now, picked_up) {
            return Decision::Coalesced;
        }
        let e = self.entries.get_mut(key).expect("inserted above");
        match e.last_sent {
            Some(at) if now.duration_since(at) < self.min_gap => {
                e.deferred = true;
                Decision::Later(self.min_gap - now.duration_since(at))
            }
            _ => {
                // Recorded now, so that pushes arriving while the request is being written wait
                // for the gap instead of making requests of their own.
                e.last_sent = Some(now);
                e.last_value = None;
                Decision::Now
            }
        }
    }

    /// A deferred request is due: whether to send it (not when an earlier one is still pending).
    pub fn fire(&mut self, key: &K, now: Instant, picked_up: &dyn Fn(&str) -> bool) -> bool {
        let Some(e) = self.entries.get(key) else {
            return false;
        };
        let pending = self.pending(e, now, picked_up);
        let e = self.entries.get_mut(key).expect("present");
        e.deferred = false;
        if !pending {
            e.last_sent = Some(now);
            e.last_value = None;
        }
        !pending
    }

    /// Records the value of the request made after [`Decision::Now`] or a `true` [`fire`](Self::fire).
    pub fn sent(&mut self, key: &K, value: String) {
        if let Some(e) = self.entries.get_mut(key) {
            e.last_value = Some(value);
        }
    }

    /// Forgets keys idle for longer than `stale_after` (bounded memory).
    pub fn sweep(&mut self, now: Instant) {
        let keep = self.stale_after.max(self.min_gap);
        self.entries.retain(|_, e| {
            e.deferred || e.last_sent.is_some_and(|at| now.duration_since(at) < keep)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GAP: Duration = Duration::from_secs(1);

    #[test]
    fn a_burst_of_100_pushes_within_a_second_makes_at_most_two_requests() {
        for picked_up_after in [
            None,
            Some(Duration::from_millis(1)),
            Some(Duration::from_millis(300)),
        ] {
            let mut c = Coalescer::new(GAP, Duration::from_secs(60));
            let t0 = Instant::now();
            let mut sent_at: Vec<Instant> = Vec::new();
            let mut due: Option<Instant> = None;
            for i in 0..100u64 {
                let now = t0 + Duration::from_millis(i * 10);
                // The controller picks a request up `picked_up_after` after it was sent.
                let first = sent_at.first().copied();
                let picked = move |_: &str| match (picked_up_after, first) {
                    (Some(d), Some(at)) => now >= at + d,
                    _ => false,
                };
                if let Some(at) = due
                    && now >= at
                {
                    due = None;
                    if c.fire(&"k", now, &picked) {
                        c.sent(&"k", format!("v{i}"));
                        sent_at.push(now);
                    }
                }
                match c.decide(&"k", now, &picked) {
                    Decision::Now => {
                        c.sent(&"k", format!("v{i}"));
                        sent_at.push(now);
                    }
                    Decision::Later(d) => due = Some(now + d),
                    Decision::Coalesced => {}
                }
            }
            // The deferred request (if any) fires at the end of the gap.
            if let Some(at) = due
                && c.fire(&"k", at, &|_| true)
            {
                sent_at.push(at);
            }
            assert!(
                sent_at.len() <= 2,
                "{picked_up_after:?}: {} requests",
                sent_at.len()
            );
            assert!(!sent_at.is_empty());
            if picked_up_after.is_some() {
                // The last push is covered by a request made after it was picked up.
                assert_eq!(sent_at.len(), 2, "{picked_up_after:?}");
            }
        }
    }

    #[test]
    fn pending_requests_expire_and_keys_are_swept() {
        let mut c = Coalescer::new(GAP, Duration::from_secs(5));
        let t0 = Instant::now();
        assert_eq!(c.decide(&1, t0, &|_| false), Decision::Now);
        c.sent(&1, "a".into());
        assert_eq!(
            c.decide(&1, t0 + Duration::from_secs(2), &|_| false),
            Decision::Coalesced
        );
        assert_eq!(
            c.decide(&1, t0 + Duration::from_secs(2), &|v| v == "a"),
            Decision::Now
        );
        assert_eq!(
            c.decide(&1, t0 + Duration::from_secs(6), &|_| false),
            Decision::Now
        );
        assert_eq!(c.decide(&2, t0, &|_| false), Decision::Now);
        c.sweep(t0 + Duration::from_secs(20));
        assert!(c.entries.is_empty());
    }
}
