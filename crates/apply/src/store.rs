//! The inventory of a sync, stored in ConfigMaps in the sync's namespace so it survives
//! controller restarts.
//!
//! - `headway-inventory-<sync>` (the head) holds the first shard under the key `inventory` and,
//!   in annotations, the number of shards and the id of the write that produced them.
//! - When the encoded inventory exceeds one shard ([`DEFAULT_SHARD_BYTES`], below the API
//!   server's 1 MiB ConfigMap limit; about 12,000 entries each), the other shards are
//!   `headway-inventory-<sync>-<id>-<i>` for `i` in `1..shards`.
//!
//! A write creates the extra shards first, then the head, then deletes the shards of earlier
//! writes; a reader follows the head, so it never mixes shards of two writes. Every ConfigMap
//! carries the label `headway.dev/inventory-of: <sync>`.

use std::collections::BTreeMap;

use headway_model::Digest;
use headway_model::SyncOwner;
use headway_model::inventory::Inventory;
use headway_model::owner::{LABEL_MANAGED_BY, MANAGED_BY_VALUE};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde_json::{Value, json};

use crate::calls::{Calls, FIELD_MANAGER};
use crate::error::{ApplyError, error_message};

/// Largest shard written, in bytes of inventory text.
pub(crate) const DEFAULT_SHARD_BYTES: usize = 900_000;
/// Label on every inventory ConfigMap: the sync's name.
pub(crate) const LABEL_INVENTORY_OF: &str = "headway.dev/inventory-of";
/// Annotation on the head: the number of shards.
pub(crate) const ANNOTATION_SHARDS: &str = "headway.dev/inventory-shards";
/// Annotation on the head: the id of the write (the first 12 hex digits of the text's digest).
pub(crate) const ANNOTATION_WRITE_ID: &str = "headway.dev/inventory-id";
/// Data key holding a shard's text.
pub(crate) const DATA_KEY: &str = "inventory";

/// The name of the head ConfigMap of a sync's inventory.
pub(crate) fn head_name(owner: &SyncOwner) -> String {
    format!("headway-inventory-{}", owner.name())
}

fn shard_name(owner: &SyncOwner, id: &str, i: usize) -> String {
    format!("headway-inventory-{}-{id}-{i}", owner.name())
}

fn configmaps(calls: &Calls, owner: &SyncOwner) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("", "v1", "ConfigMap"),
        "configmaps",
    );
    Api::namespaced_with(calls.own.clone(), owner.namespace(), &ar)
}

fn store_error(owner: &SyncOwner, what: &str, name: &str, e: kube::Error) -> ApplyError {
    ApplyError::Inventory {
        owner: owner.to_string(),
        message: format!(
            "{what} ConfigMap {}/{name}: {}",
            owner.namespace(),
            error_message(&e)
        ),
    }
}

/// Before a first sync: refuses when the namespace that will hold the inventory does not exist,
/// so that no object is applied whose record could not be written (it would never be pruned).
/// Other errors (no right to read namespaces) are left to the inventory write to report.
pub(crate) async fn require_home(calls: &Calls, owner: &SyncOwner) -> Result<(), ApplyError> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("", "v1", "Namespace"),
        "namespaces",
    );
    let namespaces: Api<DynamicObject> = Api::all_with(calls.own.clone(), &ar);
    calls.count();
    match namespaces.get_opt(owner.namespace()).await {
        Ok(None) => Err(ApplyError::Inventory {
            owner: owner.to_string(),
            message: format!(
                "namespace {} does not exist: the inventory of this sync is kept there, so \
                 nothing was applied (create the namespace, or add it to the manifests)",
                owner.namespace()
            ),
        }),
        Ok(Some(_)) | Err(_) => Ok(()),
    }
}

/// Reads the inventory of `owner`; an empty one when none was written yet.
pub(crate) async fn read(calls: &Calls, owner: &SyncOwner) -> Result<Inventory, ApplyError> {
    let api = configmaps(calls, owner);
    let head = head_name(owner);
    calls.count();
    let Some(cm) = api
        .get_opt(&head)
        .await
        .map_err(|e| store_error(owner, "reading", &head, e))?
    else {
        return Ok(Inventory::new());
    };
    let annotations = cm.metadata.annotations.clone().unwrap_or_default();
    let shards: usize = match annotations.get(ANNOTATION_SHARDS) {
        None => 1,
        Some(n) => n.parse().map_err(|_| {
            corrupt(
                owner,
                &head,
                format!("{ANNOTATION_SHARDS}: {n:?} is not a number"),
            )
        })?,
    };
    let id = annotations
        .get(ANNOTATION_WRITE_ID)
        .cloned()
        .unwrap_or_default();
    let mut texts = vec![(head.clone(), shard_text(&cm.data, owner, &head)?)];
    for i in 1..shards {
        let name = shard_name(owner, &id, i);
        calls.count();
        let cm = api
            .get_opt(&name)
            .await
            .map_err(|e| store_error(owner, "reading", &name, e))?
            .ok_or_else(|| corrupt(owner, &head, format!("shard {name} is missing")))?;
        texts.push((name.clone(), shard_text(&cm.data, owner, &name)?));
    }
    let mut inventory = Inventory::new();
    for (name, text) in texts {
        let part = Inventory::parse(&text).map_err(|e| corrupt(owner, &name, e.to_string()))?;
        inventory.entries.extend(part.entries);
    }
    Ok(inventory)
}

fn corrupt(owner: &SyncOwner, name: &str, message: String) -> ApplyError {
    ApplyError::Inventory {
        owner: owner.to_string(),
        message: format!(
            "ConfigMap {}/{name} is not a valid inventory: {message}",
            owner.namespace()
        ),
    }
}

/// The shard text of a ConfigMap (a `DynamicObject`'s `data` holds its fields besides metadata).
fn shard_text(fields: &Value, owner: &SyncOwner, name: &str) -> Result<String, ApplyError> {
    fields
        .pointer(&format!("/data/{DATA_KEY}"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| corrupt(owner, name, format!("no data key {DATA_KEY:?}")))
}

/// Writes the inventory of `owner` (see the module documentation for the order of the writes).
pub(crate) async fn write(
    calls: &Calls,
    owner: &SyncOwner,
    inventory: &Inventory,
    shard_bytes: usize,
) -> Result<(), ApplyError> {
    let api = configmaps(calls, owner);
    let shards = inventory.to_shards(shard_bytes);
    let id = Digest::of_bytes(shards.concat().as_bytes()).to_hex()[..12].to_string();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for (i, text) in shards.iter().enumerate().skip(1) {
        let name = shard_name(owner, &id, i);
        let body = configmap(owner, &name, text, BTreeMap::new());
        calls.count();
        api.patch(&name, &params, &Patch::Apply(&body))
            .await
            .map_err(|e| store_error(owner, "writing", &name, e))?;
    }
    let head = head_name(owner);
    let annotations = BTreeMap::from([
        (ANNOTATION_SHARDS, shards.len().to_string()),
        (ANNOTATION_WRITE_ID, id.clone()),
    ]);
    let body = configmap(owner, &head, &shards[0], annotations);
    calls.count();
    api.patch(&head, &params, &Patch::Apply(&body))
        .await
        .map_err(|e| store_error(owner, "writing", &head, e))?;
    // Shards of earlier writes.
    let keep: Vec<String> = (1..shards.len())
        .map(|i| shard_name(owner, &id, i))
        .collect();
    remove_shards(calls, owner, |name| {
        name != head && !keep.iter().any(|k| k == name)
    })
    .await
}

/// Deletes every ConfigMap of the inventory of `owner`.
pub(crate) async fn remove(calls: &Calls, owner: &SyncOwner) -> Result<(), ApplyError> {
    remove_shards(calls, owner, |_| true).await
}

async fn remove_shards(
    calls: &Calls,
    owner: &SyncOwner,
    doomed: impl Fn(&str) -> bool,
) -> Result<(), ApplyError> {
    let api = configmaps(calls, owner);
    let lp = ListParams::default().labels(&format!("{LABEL_INVENTORY_OF}={}", owner.name()));
    calls.count();
    let list = api
        .list_metadata(&lp)
        .await
        .map_err(|e| store_error(owner, "listing", &head_name(owner), e))?;
    for item in list.items {
        let name = item.metadata.name.unwrap_or_default();
        if !doomed(&name) {
            continue;
        }
        calls.count();
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(store_error(owner, "deleting", &name, e)),
        }
    }
    Ok(())
}

fn configmap(
    owner: &SyncOwner,
    name: &str,
    text: &str,
    annotations: BTreeMap<&str, String>,
) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": owner.namespace(),
            "labels": {LABEL_INVENTORY_OF: owner.name(), LABEL_MANAGED_BY: MANAGED_BY_VALUE},
            "annotations": annotations,
        },
        "data": {DATA_KEY: text},
    })
}
