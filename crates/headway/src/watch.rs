//! GitSyncs as they change, through one kube watch: `status --watch` redraws from it and
//! `sync --wait` / `rebuild --wait` follow their requests with it (no polling).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context as _;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use headway_controller::{GitSync, SyncKey};
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt as _, watcher as watch_stream};

/// Which GitSyncs a watch sees.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// `None`: every namespace.
    pub namespace: Option<String>,
    /// A label selector (`-l`).
    pub selector: Option<String>,
    /// Only these (`None`: every GitSync the namespace and selector give).
    pub keys: Option<BTreeSet<SyncKey>>,
}

impl Scope {
    /// Exactly `keys`, watched in their namespace (or in every namespace when they are in
    /// several).
    pub fn of(keys: impl IntoIterator<Item = SyncKey>) -> Scope {
        let keys: BTreeSet<SyncKey> = keys.into_iter().collect();
        let namespaces: BTreeSet<&str> = keys.iter().map(|k| k.namespace.as_str()).collect();
        let namespace = match namespaces.iter().collect::<Vec<_>>().as_slice() {
            [one] => Some(one.to_string()),
            _ => None,
        };
        Scope {
            namespace,
            selector: None,
            keys: Some(keys),
        }
    }

    fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("watching GitSyncs in {ns}"),
            None => "watching GitSyncs in every namespace".to_string(),
        }
    }
}

/// What [`Watched::changed`] saw.
pub enum Update<'a> {
    /// The GitSyncs in scope after a change (the first one: after the initial list).
    Syncs(&'a BTreeMap<SyncKey, GitSync>),
    /// The watch failed after its initial list and is being retried (with backoff).
    Retrying(String),
}

/// A running watch of the GitSyncs of a [`Scope`], keeping the current set.
pub struct Watched {
    stream: BoxStream<'static, Result<Event<GitSync>, watcher::Error>>,
    scope: Scope,
    current: BTreeMap<SyncKey, GitSync>,
    /// Objects of a (re)list in progress, swapped in when it is complete.
    listing: Option<BTreeMap<SyncKey, GitSync>>,
    listed: bool,
}

impl Watched {
    /// Starts watching (nothing is read before the first [`Watched::changed`]).
    pub fn start(client: kube::Client, scope: Scope) -> Watched {
        let api: Api<GitSync> = match &scope.namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        };
        let mut config = watcher::Config::default();
        if let Some(selector) = &scope.selector {
            config = config.labels(selector);
        }
        if let Some(keys) = &scope.keys
            && keys.len() == 1
            && let Some(key) = keys.first()
        {
            config = config.fields(&format!("metadata.name={}", key.name));
        }
        let stream = watch_stream(api, config).default_backoff().boxed();
        Watched {
            stream,
            scope,
            current: BTreeMap::new(),
            listing: None,
            listed: false,
        }
    }

    fn wanted(&self, key: &SyncKey) -> bool {
        self.scope
            .keys
            .as_ref()
            .is_none_or(|keys| keys.contains(key))
    }

    /// Waits for the next change. An error before the initial list is returned (the cluster
    /// cannot be read); later ones are reported as [`Update::Retrying`].
    pub async fn changed(&mut self) -> anyhow::Result<Update<'_>> {
        loop {
            let event = match self.stream.next().await {
                Some(Ok(event)) => event,
                Some(Err(e)) if !self.listed => {
                    return Err(e).with_context(|| self.scope.describe());
                }
                Some(Err(e)) => {
                    return Ok(Update::Retrying(format!("{}: {e}", self.scope.describe())));
                }
                None => anyhow::bail!("{}: the watch ended", self.scope.describe()),
            };
            match event {
                Event::Init => self.listing = Some(BTreeMap::new()),
                Event::InitApply(sync) => {
                    let key = SyncKey::of(&sync);
                    if self.wanted(&key)
                        && let Some(listing) = &mut self.listing
                    {
                        listing.insert(key, sync);
                    }
                }
                Event::InitDone => {
                    self.current = self.listing.take().unwrap_or_default();
                    self.listed = true;
                    return Ok(Update::Syncs(&self.current));
                }
                Event::Apply(sync) => {
                    let key = SyncKey::of(&sync);
                    if self.wanted(&key) {
                        self.current.insert(key, sync);
                        return Ok(Update::Syncs(&self.current));
                    }
                }
                Event::Delete(sync) => {
                    if self.current.remove(&SyncKey::of(&sync)).is_some() {
                        return Ok(Update::Syncs(&self.current));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_of_one_namespace_watches_only_it() {
        let one = Scope::of([SyncKey::new("a", "x"), SyncKey::new("a", "y")]);
        assert_eq!(one.namespace.as_deref(), Some("a"));
        let several = Scope::of([SyncKey::new("a", "x"), SyncKey::new("b", "x")]);
        assert_eq!(several.namespace, None);
        assert_eq!(several.keys.unwrap().len(), 2);
    }
}
