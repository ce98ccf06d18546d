//! Status conditions of a GitSync (`Ready`, `Reconciling`, `Stalled`, `Drifted`), their reasons,
//! and the pure rules that set them: a condition's `lastTransitionTime` moves only when its
//! status does.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Condition types.
pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";
pub const DRIFTED: &str = "Drifted";

/// Why a sync failed, by the step that failed; also the reason of `Ready=False`, of the
/// `Warning` event, and (for terminal failures) of `Stalled=True`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The spec is wrong in a way the schema could not catch (or a referenced Secret is).
    InvalidSpec,
    /// A dependency in `dependsOn` is missing or not Ready.
    DependencyNotReady,
    /// The repository could not be fetched.
    FetchFailed,
    /// The directory could not be rendered.
    RenderFailed,
    /// An object could not be applied.
    ApplyFailed,
    /// Pruning was refused or failed.
    PruneFailed,
    /// Objects did not become healthy within the timeout.
    HealthCheckFailed,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidSpec => "InvalidSpec",
            Reason::DependencyNotReady => "DependencyNotReady",
            Reason::FetchFailed => "FetchFailed",
            Reason::RenderFailed => "RenderFailed",
            Reason::ApplyFailed => "ApplyFailed",
            Reason::PruneFailed => "PruneFailed",
            Reason::HealthCheckFailed => "HealthCheckFailed",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reasons that are not failures.
pub const REASON_SUCCEEDED: &str = "ReconciliationSucceeded";
pub const REASON_PROGRESSING: &str = "Progressing";
pub const REASON_SUSPENDED: &str = "Suspended";
pub const REASON_NO_DRIFT: &str = "NoDrift";
pub const REASON_DRIFT_DETECTED: &str = "DriftDetected";
pub const REASON_RETRYING: &str = "Retrying";

/// Longest condition message kept; longer ones are cut with a note.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024;

/// A status condition, as in Kubernetes' `metav1.Condition`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Reconciling`, `Stalled` or `Drifted`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase word: the failing step, or `ReconciliationSucceeded`, `Progressing`, ...
    pub reason: String,
    /// Human-readable details.
    #[serde(default)]
    pub message: String,
    /// When the status last changed (RFC 3339).
    pub last_transition_time: String,
    /// The generation the condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The status of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    /// `True`, `False` or `Unknown`, as written in status.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }

    /// The status of a condition as written (anything unexpected is `Unknown`).
    pub fn parse(text: &str) -> Self {
        match text {
            "True" => ConditionStatus::True,
            "False" => ConditionStatus::False,
            _ => ConditionStatus::Unknown,
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(value: bool) -> Self {
        if value {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }
}

impl std::fmt::Display for ConditionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Condition {
    /// The status as an enum.
    pub fn status(&self) -> ConditionStatus {
        ConditionStatus::parse(&self.status)
    }
}

/// Finds a condition.
pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition is present with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    get(conditions, type_).is_some_and(|c| c.status() == ConditionStatus::True)
}

/// Sets (adds or updates) a condition; `lastTransitionTime` becomes `now` only when the status
/// changes or the condition is new. Conditions stay in a fixed order (Ready, Reconciling, Stalled,
/// Drifted, others).
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &str,
) {
    let message = truncate(message, MAX_MESSAGE_BYTES);
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status() != status {
                c.last_transition_time = now.to_string();
                c.status = status.as_str().to_string();
            }
            c.reason = reason.to_string();
            c.message = message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_string(),
            status: status.as_str().to_string(),
            reason: reason.to_string(),
            message,
            last_transition_time: now.to_string(),
            observed_generation: generation,
        }),
    }
    let rank = |t: &str| {
        [READY, RECONCILING, STALLED, DRIFTED]
            .iter()
            .position(|x| *x == t)
            .unwrap_or(usize::MAX)
    };
    conditions.sort_by_key(|c| rank(&c.type_));
}

/// Removes a condition.
pub fn remove(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

/// Cuts `text` to at most `max` bytes on a character boundary, saying that it was cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let note = format!(" ... (cut, {} bytes in all)", text.len());
    let mut end = max.saturating_sub(note.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{note}", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let mut c = Vec::new();
        set(
            &mut c,
            DRIFTED,
            ConditionStatus::False,
            REASON_NO_DRIFT,
            "",
            Some(1),
            "t1",
        );
        set(
            &mut c,
            READY,
            ConditionStatus::True,
            REASON_SUCCEEDED,
            "ok",
            Some(1),
            "t1",
        );
        assert_eq!(c[0].type_, READY, "Ready comes first");
        set(
            &mut c,
            READY,
            ConditionStatus::True,
            REASON_SUCCEEDED,
            "still ok",
            Some(2),
            "t2",
        );
        let ready = get(&c, READY).unwrap();
        assert_eq!(ready.last_transition_time, "t1");
        assert_eq!(ready.message, "still ok");
        assert_eq!(ready.observed_generation, Some(2));
        set(
            &mut c,
            READY,
            ConditionStatus::False,
            "RenderFailed",
            "bad",
            Some(2),
            "t3",
        );
        assert_eq!(get(&c, READY).unwrap().last_transition_time, "t3");
        assert!(!is_true(&c, READY));
        assert!(!is_true(&c, STALLED));
        remove(&mut c, DRIFTED);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let text = "é".repeat(10_000);
        let cut = truncate(&text, 100);
        assert!(cut.len() <= 100, "{}", cut.len());
        assert!(cut.ends_with("(cut, 20000 bytes in all)"), "{cut}");
        assert_eq!(truncate("short", 100), "short");
    }
}
