//! What every reconcile shares: the clients, the apply engine, the git cache, the watch cache,
//! and what this process remembers per GitSync (schedule memory, Event series).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use headway_apply::{Engine, Identity};
use headway_render::ToolOptions;
use headway_source::SharedCache;
use kube::ResourceExt;
use kube::runtime::reflector::Store;

use crate::crd::GitSync;
use crate::input::Renderer;
use crate::progress::Bus;
use crate::schedule::Memory;
use crate::tenancy::{Identities, IdentityError, Lockdown};

/// A GitSync's (namespace, name).
pub type Key = (String, String);

/// What every reconcile shares.
pub struct Ctx {
    pub client: kube::Client,
    pub engine: Arc<Engine>,
    /// The git cache, its fetches shared between GitSyncs of one source (single flight, a
    /// short reuse window; a sync request always gets a fresh fetch).
    pub cache: Arc<SharedCache>,
    pub cache_dir: PathBuf,
    /// The remote chart cache (`charts` in `cache_dir`).
    pub chart_cache: PathBuf,
    /// This replica's identity, the `reportingInstance` of its Events.
    pub identity: String,
    pub store: Store<GitSync>,
    pub tools: ToolOptions,
    /// Where progress is published, if anywhere.
    pub progress: Option<Bus>,
    pub memory: Mutex<HashMap<Key, Memory>>,
    /// Lockdown settings (default service account, cross-namespace references).
    pub lockdown: Lockdown,
    /// Impersonating clients, one per service account.
    pub identities: Identities,
    /// Per GitSync: the Event series of its no-op syncs.
    pub no_change_events: Mutex<HashMap<Key, NoChangeSeries>>,
}

/// The Event series recording the no-op syncs of one revision: (Event name, revision, count).
pub type NoChangeSeries = (String, String, i32);

impl Ctx {
    pub fn memory_of(&self, key: &Key) -> Memory {
        self.memory
            .lock()
            .expect("memory lock")
            .get(key)
            .cloned()
            .unwrap_or_default()
    }

    pub fn update_memory(&self, key: &Key, f: impl FnOnce(&mut Memory)) {
        let mut map = self.memory.lock().expect("memory lock");
        f(map.entry(key.clone()).or_default());
    }

    /// The client a GitSync's objects are applied, pruned and read with: an impersonating one
    /// when it has (or the lockdown gives it) a service account, `None` for the controller's own.
    pub fn acting_as(&self, obj: &GitSync) -> Result<Option<Identity>, IdentityError> {
        let (ns, _) = key_of(obj);
        match self.lockdown.service_account(&obj.spec) {
            Some(sa) => self.identities.service_account(&ns, sa).map(Some),
            None => Ok(None),
        }
    }

    /// What renders a GitSync here: the controller's client, engine, tools and chart cache.
    pub fn renderer(&self) -> Renderer<'_> {
        Renderer {
            client: &self.client,
            engine: &self.engine,
            tools: &self.tools,
            chart_cache: &self.chart_cache,
        }
    }

    /// Forgets everything remembered about a GitSync (it was deleted).
    pub fn forget(&self, key: &Key) {
        self.memory.lock().expect("memory lock").remove(key);
        self.no_change_events
            .lock()
            .expect("events lock")
            .remove(key);
    }
}

/// The (namespace, name) of a GitSync.
pub fn key_of(obj: &GitSync) -> Key {
    (obj.namespace().unwrap_or_default(), obj.name_any())
}
