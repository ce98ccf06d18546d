//! Kubernetes Events (`events.k8s.io/v1`) about GitSyncs: what [`crate::status`] decides to emit
//! ([`Emit`]) and the writes that emit it. Failures to publish are logged, never fatal.

use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Resource;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tracing::warn;

use crate::conditions;
use crate::context::{Ctx, key_of};
use crate::crd::GitSync;

/// The name under which Events are reported (`reportingController`).
pub const REPORTER: &str = "headway-controller";
/// Reason of the Event series recording the no-op syncs of one revision.
pub const REASON_NO_CHANGE: &str = "NoChange";
/// Largest Event note (the API server's limit is 1 kB).
const MAX_NOTE_BYTES: usize = 1000;

/// Event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// An Event to emit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Emit {
    /// A new Event.
    Event {
        type_: EventType,
        reason: String,
        note: String,
    },
    /// A sync of `revision` that changed nothing: the first one of a revision creates an Event
    /// `NoChange`, the next ones add to its series (count, last observed time), as Kubernetes
    /// does for repeated Events.
    NoChange { revision: String, note: String },
}

impl Emit {
    pub fn event(type_: EventType, reason: impl Into<String>, note: impl Into<String>) -> Self {
        Emit::Event {
            type_,
            reason: reason.into(),
            note: note.into(),
        }
    }
}

/// Emits the Events, in order.
pub async fn emit(ctx: &Ctx, obj: &GitSync, emits: &[Emit]) {
    for e in emits {
        match e {
            Emit::Event {
                type_,
                reason,
                note,
            } => publish(ctx, obj, *type_, reason, note).await,
            Emit::NoChange { revision, note } => publish_no_change(ctx, obj, revision, note).await,
        }
    }
}

/// Publishes an Event about the GitSync. Every call creates a new Event (kube's `Recorder`
/// would fold Events of the same reason into one series keeping the first note, losing each
/// sync's revision and counts).
pub async fn publish(ctx: &Ctx, obj: &GitSync, type_: EventType, reason: &str, note: &str) {
    let _ = create_event(ctx, obj, type_, reason, note).await;
}

/// The series is remembered per process (a new leader starts a new one).
async fn publish_no_change(ctx: &Ctx, obj: &GitSync, revision: &str, note: &str) {
    let key = key_of(obj);
    let known = ctx
        .no_change_events
        .lock()
        .expect("events lock")
        .get(&key)
        .cloned();
    if let Some((event_name, rev, count)) = known
        && rev == revision
    {
        let api: Api<Event> = Api::namespaced(ctx.client.clone(), &key.0);
        let series = EventSeries {
            count: count + 1,
            last_observed_time: MicroTime(k8s_openapi::jiff::Timestamp::now()),
        };
        let patch = json!({"series": series});
        match api
            .patch(&event_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                ctx.no_change_events
                    .lock()
                    .expect("events lock")
                    .insert(key, (event_name, rev, count + 1));
                return;
            }
            // Expired (Events live an hour) or deleted: start a new series.
            Err(e) => tracing::debug!(error = %headway_apply::error_message(&e), "event series"),
        }
    }
    if let Some(event_name) =
        create_event(ctx, obj, EventType::Normal, REASON_NO_CHANGE, note).await
    {
        ctx.no_change_events
            .lock()
            .expect("events lock")
            .insert(key, (event_name, revision.to_string(), 1));
    }
}

/// Creates an Event; returns its name.
async fn create_event(
    ctx: &Ctx,
    obj: &GitSync,
    type_: EventType,
    reason: &str,
    note: &str,
) -> Option<String> {
    let (ns, name) = key_of(obj);
    let now = k8s_openapi::jiff::Timestamp::now();
    let event = Event {
        action: Some("Reconcile".into()),
        reason: Some(reason.to_string()),
        note: Some(conditions::truncate(note, MAX_NOTE_BYTES)),
        type_: Some(type_.as_str().into()),
        event_time: Some(MicroTime(now)),
        regarding: Some(obj.object_ref(&())),
        reporting_controller: Some(REPORTER.into()),
        reporting_instance: Some(ctx.identity.clone()),
        metadata: ObjectMeta {
            name: Some(format!("{name}.{:x}", now.as_nanosecond())),
            namespace: Some(ns.clone()),
            ..ObjectMeta::default()
        },
        ..Event::default()
    };
    let api: Api<Event> = Api::namespaced(ctx.client.clone(), &ns);
    match api.create(&PostParams::default(), &event).await {
        Ok(e) => e.metadata.name,
        Err(e) => {
            warn!(error = %headway_apply::error_message(&e), reason, "publishing an event");
            None
        }
    }
}
