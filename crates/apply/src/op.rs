//! One operation of the engine (a sync, a drift check, a delete): what the steps below the facade
//! share. The [`Engine`](crate::Engine) makes one per call; the steps (apply, prune, drift,
//! health) take it instead of the engine, so none of them depends on the facade.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use crate::breaker::Breaker;
use crate::calls::Calls;
use crate::discovery::{ApiCatalog, Discovered};
use crate::error::ApplyError;
use crate::memory::Memory;

pub(crate) struct Op<'a> {
    /// The counted client of this operation.
    pub calls: Calls,
    pub discovery: &'a Discovered,
    /// What the engine applied (shared by every operation of the engine).
    pub memory: &'a Memory,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Longest wait for a stage to become Current, and for a deleted object to go.
    pub stage_timeout: Duration,
    /// Longest interval between two reads while waiting.
    pub poll_interval: Duration,
    /// Tripped by the first transport failure: nothing more is sent in this operation.
    pub breaker: Breaker,
    /// Objects the API server refused as they are (400, 413, 422: invalid, too large, an
    /// immutable field changed without force): the same apply fails the same way until the
    /// source changes.
    pub refused: AtomicUsize,
}

impl Op<'_> {
    /// The current discovery.
    pub fn catalog(&self) -> Arc<ApiCatalog> {
        self.discovery.current()
    }

    /// Runs discovery again and uses it from now on (for every operation of the engine).
    pub async fn rediscover(&self) -> Result<Arc<ApiCatalog>, ApplyError> {
        let catalog = self.calls.discover().await.map_err(|e| {
            self.breaker.observe(&e);
            ApplyError::Discovery(e)
        })?;
        Ok(self.discovery.replace(catalog))
    }
}
