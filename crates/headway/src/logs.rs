//! The controller's logs: JSON (or text) lines on stderr filtered by `RUST_LOG`, with the kube
//! client's own per-request ERROR events limited, so that an API-server outage costs a handful of
//! lines rather than one per request in flight.
//!
//! kube-client logs `failed with error ...` / `failed with status ...` at ERROR for every failed
//! HTTP request (tower-http's trace layer), and watchers and the Lease manager log each failed
//! watch. Headway reports each failure itself, once, with the sync, stage and object it
//! concerns, so these lines add nothing after the first: at most one per call site per
//! [`WINDOW`] is written, and a WARN line says how many were left out.

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::Metadata;
use tracing::callsite::Identifier;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::controller_cmd::LogFormat;

/// At most one kube-client ERROR line per call site per window.
pub const WINDOW: Duration = Duration::from_secs(10);

/// The crates whose ERROR events are limited: the kube client, its runtime (watchers) and the
/// Lease manager; each failure they log reaches Headway as an error it reports itself.
const LIMITED_TARGETS: [&str; 3] = ["kube_client", "kube_runtime", "kube_lease_manager"];

/// Which events are limited: the ERROR events of [`LIMITED_TARGETS`].
fn limited(meta: &Metadata<'_>) -> bool {
    meta.is_event()
        && *meta.level() == tracing::Level::ERROR
        && LIMITED_TARGETS.iter().any(|t| meta.target().starts_with(t))
}

/// Lets one event per call site through per window; counts the others.
#[derive(Debug)]
pub struct Limiter {
    window: Duration,
    last: Mutex<HashMap<Identifier, Instant>>,
    suppressed: AtomicU64,
}

impl Limiter {
    /// A limiter letting one event per call site through per `window`.
    pub fn new(window: Duration) -> Limiter {
        Limiter {
            window,
            last: Mutex::new(HashMap::new()),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether an event of `meta` is written now.
    fn allow(&self, meta: &Metadata<'_>) -> bool {
        !limited(meta) || self.allow_at(meta.callsite(), Instant::now())
    }

    /// Whether an event of `callsite` at `now` is written.
    fn allow_at(&self, callsite: Identifier, now: Instant) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match last.get(&callsite) {
            Some(at) if now.saturating_duration_since(*at) < self.window => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                false
            }
            _ => {
                last.insert(callsite, now);
                true
            }
        }
    }

    /// The number of events left out since the last call.
    pub fn take_suppressed(&self) -> u64 {
        self.suppressed.swap(0, Ordering::Relaxed)
    }

    /// Every window, a WARN line with the number of events left out in it (none when none were).
    pub async fn report(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.window);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let n = self.take_suppressed();
            if n > 0 {
                tracing::warn!(
                    suppressed = n,
                    window_seconds = self.window.as_secs(),
                    "kube client request errors not logged (one per kind per window is)"
                );
            }
        }
    }
}

/// Installs the global subscriber; returns the limiter whose [`Limiter::report`] the caller runs.
pub fn init(format: LogFormat) -> Arc<Limiter> {
    let limiter = Arc::new(Limiter::new(WINDOW));
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let gate = {
        let limiter = limiter.clone();
        // Dynamic: asked for every event (a plain `filter_fn` caches its answer per call site).
        tracing_subscriber::filter::dynamic_filter_fn(move |meta, _| limiter.allow(meta))
    };
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr)
                    .with_filter(gate),
            )
            .init(),
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    // Colours only for a terminal, not in a log file.
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_filter(gate),
            )
            .init(),
    }
    limiter
}

#[cfg(test)]
mod tests {
    use super::*;

    struct A;
    struct B;
    static CS_A: A = A;
    static CS_B: B = B;
    impl tracing::Callsite for A {
        fn set_interest(&self, _: tracing::subscriber::Interest) {}
        fn metadata(&self) -> &Metadata<'_> {
            unreachable!()
        }
    }
    impl tracing::Callsite for B {
        fn set_interest(&self, _: tracing::subscriber::Interest) {}
        fn metadata(&self) -> &Metadata<'_> {
            unreachable!()
        }
    }

    #[test]
    fn one_event_per_call_site_per_window_and_the_rest_counted() {
        let limiter = Limiter::new(Duration::from_secs(10));
        let a = Identifier(&CS_A);
        let b = Identifier(&CS_B);
        let t0 = Instant::now();
        assert!(limiter.allow_at(a.clone(), t0));
        for i in 1..100 {
            assert!(!limiter.allow_at(a.clone(), t0 + Duration::from_millis(i)));
        }
        // Another call site has its own window.
        assert!(limiter.allow_at(b.clone(), t0 + Duration::from_millis(5)));
        assert_eq!(limiter.take_suppressed(), 99);
        assert_eq!(limiter.take_suppressed(), 0);
        // After the window, one more.
        assert!(limiter.allow_at(a.clone(), t0 + Duration::from_secs(10)));
        assert!(!limiter.allow_at(a, t0 + Duration::from_secs(11)));
        assert_eq!(limiter.take_suppressed(), 1);
    }

    #[test]
    fn only_kube_error_events_are_limited() {
        use tracing::Level;
        use tracing::field::FieldSet;
        use tracing::metadata::Kind;
        let meta = |target: &'static str, level: Level, kind: Kind| {
            Metadata::new(
                "e",
                target,
                level,
                None,
                None,
                None,
                FieldSet::new(&[], Identifier(&CS_A)),
                kind,
            )
        };
        assert!(limited(&meta(
            "kube_client::client::builder",
            Level::ERROR,
            Kind::EVENT
        )));
        assert!(limited(&meta(
            "kube_runtime::watcher",
            Level::ERROR,
            Kind::EVENT
        )));
        assert!(!limited(&meta(
            "kube_client::client::builder",
            Level::WARN,
            Kind::EVENT
        )));
        assert!(!limited(&meta(
            "headway_controller::runner",
            Level::ERROR,
            Kind::EVENT
        )));
        assert!(!limited(&meta(
            "kube_client::client::builder",
            Level::ERROR,
            Kind::SPAN
        )));
    }
}
