//! The engine's memory of the objects it applied: per sync and object, the digest applied and
//! what the server returned (uid, `generation`, `resourceVersion`). Change detection (the `apply`
//! module) skips an object only when this memory, or the stamp the inventory
//! recorded from it, proves the live object is what was applied. The memory is per process; a
//! restarted engine starts empty and fills it from the inventory's stamps.

use std::collections::HashMap;
use std::sync::Mutex;

use headway_model::inventory::LiveStamp;
use headway_model::{Digest, Manifest, ObjectRef, SyncOwner};
use kube::api::ObjectMeta;

/// What the engine remembers of an object it applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppliedState {
    pub digest: Digest,
    pub uid: String,
    pub generation: Option<i64>,
    pub resource_version: String,
}

impl AppliedState {
    /// The state of an object with `digest` as the server returned it (`None` without a uid or
    /// resourceVersion).
    pub fn of(digest: &Digest, meta: &ObjectMeta) -> Option<Self> {
        Some(AppliedState {
            digest: *digest,
            uid: meta.uid.clone()?,
            generation: meta.generation.filter(|g| *g > 0),
            resource_version: meta.resource_version.clone()?,
        })
    }
}

/// What was applied, per sync and object; shared by concurrent syncs.
#[derive(Debug, Default)]
pub(crate) struct Memory {
    applied: Mutex<HashMap<(SyncOwner, ObjectRef), AppliedState>>,
}

impl Memory {
    /// What was applied of `id` for `owner`, if remembered.
    pub fn get(&self, owner: &SyncOwner, id: &ObjectRef) -> Option<AppliedState> {
        self.lock().get(&(owner.clone(), id.clone())).cloned()
    }

    /// Remembers `m` applied as the server returned it in `meta` (forgets it when `meta` has no
    /// uid or resourceVersion).
    pub fn remember(&self, owner: &SyncOwner, m: &Manifest, meta: &ObjectMeta) {
        match AppliedState::of(&m.digest, meta) {
            Some(state) => self.insert(owner, &m.id, state),
            None => self.forget(owner, &m.id),
        }
    }

    pub fn insert(&self, owner: &SyncOwner, id: &ObjectRef, state: AppliedState) {
        self.lock().insert((owner.clone(), id.clone()), state);
    }

    pub fn forget(&self, owner: &SyncOwner, id: &ObjectRef) {
        self.lock().remove(&(owner.clone(), id.clone()));
    }

    /// Forgets every object of `owner`.
    pub fn forget_owner(&self, owner: &SyncOwner) {
        self.lock().retain(|(o, _), _| o != owner);
    }

    /// Forgets everything, as a restart does.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The stamp to record in the inventory for `m` applied (or proven unchanged) with its
    /// digest; `None` when not remembered with that digest.
    pub fn stamp(&self, owner: &SyncOwner, m: &Manifest) -> Option<LiveStamp> {
        let state = self.get(owner, &m.id)?;
        if state.digest != m.digest {
            return None;
        }
        LiveStamp::new(&state.uid, state.generation, &state.resource_version)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(SyncOwner, ObjectRef), AppliedState>> {
        self.applied.lock().expect("applied memory lock")
    }
}
