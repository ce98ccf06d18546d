//! Counting the HTTP requests a client sends, below kube (including its own retries): for
//! benchmarks and tests that check the engine's own count of the requests it makes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use kube::Client;

/// A tower layer counting the HTTP requests a client sends (see [`counting_client`]).
#[derive(Debug, Clone, Default)]
pub struct CountingLayer {
    count: Arc<AtomicU64>,
}

impl CountingLayer {
    /// A layer with its own counter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests sent so far through every client built with this layer.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

impl<S> tower::Layer<S> for CountingLayer {
    type Service = CountingService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CountingService {
            inner,
            count: self.count.clone(),
        }
    }
}

/// The service of a [`CountingLayer`].
#[derive(Debug, Clone)]
pub struct CountingService<S> {
    inner: S,
    count: Arc<AtomicU64>,
}

impl<S, R> tower::Service<R> for CountingService<S>
where
    S: tower::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.inner.call(request)
    }
}

/// A client for `config` that keeps at most `max_in_flight` requests in flight (kube has no
/// client-side rate limiter) and counts every HTTP request it sends in the returned layer.
pub fn counting_client(
    config: kube::Config,
    max_in_flight: usize,
) -> Result<(Client, CountingLayer), kube::Error> {
    let counter = CountingLayer::new();
    let client = kube::client::ClientBuilder::try_from(config)?
        .with_layer(&tower::limit::ConcurrencyLimitLayer::new(
            max_in_flight.max(1),
        ))
        .with_layer(&counter)
        .build();
    Ok((client, counter))
}
