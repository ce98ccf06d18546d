//! Following sync and rebuild requests to their end (`sync --wait`, `resume --wait`,
//! `rebuild --wait`) through a watch of the GitSyncs: where each one stands is
//! [`headway_controller::request_state`], the controller's own rule, and what it is doing is
//! the `Reconciling` condition's message.

use std::time::{Duration, Instant};

use headway_controller::conditions::{self, RECONCILING};
use headway_controller::{GitSync, RequestKind, RequestState, SyncKey, SyncSummary};
use headway_controller::{request_state, summarize};
use serde::Serialize;

use crate::live::Live;
use crate::output::{rounded, seconds};
use crate::watch::{Scope, Update, Watched};

/// A request made through [`headway_controller::Handle`].
#[derive(Debug, Clone)]
pub struct Request {
    pub key: SyncKey,
    /// The annotation value `Handle` returned.
    pub value: String,
}

/// How a request ended (or stood when the wait ended). Part of the JSON output.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestResult {
    pub namespace: String,
    pub name: String,
    /// The annotation value of the request.
    pub request: String,
    /// `"state": "pending" | "running" | "done"`, and `"ok"` when done.
    #[serde(flatten)]
    pub state: RequestState,
    /// The wait ended (timeout) before the request was done.
    pub timed_out: bool,
    /// Seconds from the first request of this command until this one was done.
    pub seconds: Option<f64>,
    /// The GitSync when the request was done (or when the wait ended); `null` if it was deleted.
    pub summary: Option<SyncSummary>,
}

impl RequestResult {
    /// `request` in `state`, not timed out, no time or summary yet.
    pub fn new(request: &Request, state: RequestState) -> Self {
        RequestResult {
            namespace: request.key.namespace.clone(),
            name: request.key.name.clone(),
            request: request.value.clone(),
            state,
            timed_out: false,
            seconds: None,
            summary: None,
        }
    }

    /// Done and Ready.
    pub fn ok(&self) -> bool {
        self.state == RequestState::Done { ok: true }
    }
}

/// What `key` is doing, for the live line.
pub fn activity(sync: &GitSync, state: RequestState) -> String {
    match state {
        RequestState::Pending => "waiting for the controller".to_string(),
        RequestState::Running => sync
            .status
            .as_ref()
            .and_then(|s| conditions::get(&s.conditions, RECONCILING))
            .map(|c| c.message.clone())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "running".to_string()),
        RequestState::Done { ok } => if ok { "done" } else { "failed" }.to_string(),
    }
}

/// The final line of a request.
pub fn final_line(kind: RequestKind, result: &RequestResult, timeout: Duration) -> String {
    let key = format!("{}/{}", result.namespace, result.name);
    let verb = match kind {
        RequestKind::Sync => "synced",
        RequestKind::Rebuild => "rebuilt",
    };
    if result.timed_out {
        let state = match result.state {
            RequestState::Pending => "the controller has not picked it up",
            _ => "still running",
        };
        return format!(
            "TIMED OUT: {key} not {verb} after {}s ({state})",
            timeout.as_secs()
        );
    }
    let Some(summary) = &result.summary else {
        return format!("FAILED: {key}: the GitSync was deleted");
    };
    if !result.ok() {
        return format!(
            "FAILED: {key}: {}: {}",
            summary.reason.as_deref().unwrap_or("NotReady"),
            summary.message.as_deref().unwrap_or_default()
        );
    }
    let after = seconds(result.seconds.unwrap_or_default());
    match kind {
        RequestKind::Sync => format!(
            "{verb}: {key} Ready at {} after {after}",
            summary.revision.as_deref().unwrap_or("-")
        ),
        RequestKind::Rebuild => {
            let controller = summary
                .last_rebuild
                .as_ref()
                .map(|r| {
                    let stages: Vec<String> = r
                        .stages
                        .iter()
                        .map(|s| format!("{} {}", s.name, seconds(s.duration_seconds)))
                        .collect();
                    if stages.is_empty() {
                        format!(" (controller: {})", seconds(r.duration_seconds))
                    } else {
                        format!(
                            " (controller: {}; {})",
                            seconds(r.duration_seconds),
                            stages.join(", ")
                        )
                    }
                })
                .unwrap_or_default();
            format!("{verb}: {key} Ready after {after}{controller}")
        }
    }
}

/// Follows `requests` of `kind` until each is done or `timeout` has passed since `started`,
/// showing their progress on `live`. The results are in the order of `requests`.
pub async fn wait(
    client: kube::Client,
    kind: RequestKind,
    requests: &[Request],
    started: Instant,
    timeout: Duration,
    live: &mut Live,
) -> anyhow::Result<Vec<RequestResult>> {
    let deadline = tokio::time::Instant::from_std(started + timeout);
    let mut results: Vec<Option<RequestResult>> = vec![None; requests.len()];
    let mut last: Vec<RequestState> = vec![RequestState::Pending; requests.len()];
    let mut watched = Watched::start(client, Scope::of(requests.iter().map(|r| r.key.clone())));
    live.track(requests.iter().map(|r| &r.key));
    while results.iter().any(Option::is_none) {
        let update = match tokio::time::timeout_at(deadline, watched.changed()).await {
            Ok(update) => update?,
            Err(_elapsed) => break,
        };
        let syncs = match update {
            Update::Syncs(syncs) => syncs,
            Update::Retrying(why) => {
                live.println(&format!("warning: {why} (retrying)"));
                continue;
            }
        };
        for (i, request) in requests.iter().enumerate() {
            if results[i].is_some() {
                continue;
            }
            let Some(sync) = syncs.get(&request.key) else {
                let mut result = RequestResult::new(request, RequestState::Done { ok: false });
                result.seconds = Some(rounded(started.elapsed().as_secs_f64()));
                live.finish(&request.key, &final_line(kind, &result, timeout));
                results[i] = Some(result);
                continue;
            };
            let state = request_state(sync, kind, &request.value);
            last[i] = state;
            if let RequestState::Done { .. } = state {
                let mut result = RequestResult::new(request, state);
                result.seconds = Some(rounded(started.elapsed().as_secs_f64()));
                result.summary = Some(summarize(sync));
                live.finish(&request.key, &final_line(kind, &result, timeout));
                results[i] = Some(result);
            } else {
                live.update(&request.key, &activity(sync, state));
            }
        }
    }
    // Whatever is left timed out: its last state and summary.
    let mut out = Vec::with_capacity(requests.len());
    for (i, request) in requests.iter().enumerate() {
        match results[i].take() {
            Some(result) => out.push(result),
            None => {
                let mut result = RequestResult::new(request, last[i]);
                result.timed_out = true;
                live.finish(&request.key, &final_line(kind, &result, timeout));
                out.push(result);
            }
        }
    }
    live.clear();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{cond, sync};
    use serde_json::json;

    fn request() -> Request {
        Request {
            key: SyncKey::new("apps", "shop"),
            value: "2026-11-26T12:00:00.000Z".into(),
        }
    }

    #[test]
    fn the_live_line_is_the_reconciling_message() {
        let s = sync(
            json!({"conditions": [cond("Reconciling", "True", "Progressing", "applying 3/10")]}),
        );
        assert_eq!(activity(&s, RequestState::Running), "applying 3/10");
        assert_eq!(
            activity(&s, RequestState::Pending),
            "waiting for the controller"
        );
        assert_eq!(activity(&sync(json!({})), RequestState::Running), "running");
    }

    #[test]
    fn final_lines_and_the_json_shape() {
        let s = sync(json!({
            "lastAppliedRevision": "main@sha1:abc",
            "lastHandledRebuildRequest": "2026-11-26T12:00:00.000Z",
            "conditions": [cond("Ready", "True", "ReconciliationSucceeded", "ok")],
            "lastRebuild": {"start": "a", "end": "b", "durationMs": 1500, "duration": "1.5s",
                            "result": "Succeeded", "stages": [{"name": "fetch", "durationMs": 250}]},
        }));
        let mut result = RequestResult::new(&request(), RequestState::Done { ok: true });
        result.seconds = Some(2.0);
        result.summary = Some(summarize(&s));
        let timeout = Duration::from_secs(60);
        assert_eq!(
            final_line(RequestKind::Rebuild, &result, timeout),
            "rebuilt: apps/shop Ready after 2.0s (controller: 1.5s; fetch 250ms)"
        );
        assert_eq!(
            final_line(RequestKind::Sync, &result, timeout),
            "synced: apps/shop Ready at main@sha1:abc after 2.0s"
        );
        let v = serde_json::to_value(&result).unwrap();
        assert_eq!(v["state"], "done");
        assert_eq!(v["ok"], true);
        assert_eq!(v["timedOut"], false);
        assert_eq!(v["summary"]["lastRebuild"]["durationSeconds"], 1.5);

        let mut pending = RequestResult::new(&request(), RequestState::Pending);
        pending.timed_out = true;
        assert_eq!(
            final_line(RequestKind::Sync, &pending, timeout),
            "TIMED OUT: apps/shop not synced after 60s (the controller has not picked it up)"
        );
        let v = serde_json::to_value(&pending).unwrap();
        assert_eq!(v["state"], "pending");
        assert!(v.get("ok").is_none());

        let failed = sync(json!({"conditions": [cond("Ready", "False", "ApplyFailed", "no")]}));
        let mut result = RequestResult::new(&request(), RequestState::Done { ok: false });
        result.summary = Some(summarize(&failed));
        assert_eq!(
            final_line(RequestKind::Sync, &result, timeout),
            "FAILED: apps/shop: ApplyFailed: no"
        );
    }
}
