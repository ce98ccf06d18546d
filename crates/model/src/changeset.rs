//! The result of an apply or prune: what happened to each object, with a one-line summary for
//! logs, events and status ("3 created, 1 configured, 10 unchanged, 1 deleted").

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ObjectRef;

/// What happened to one object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "action", content = "detail", rename_all = "lowercase")]
pub enum Action {
    /// The object did not exist and was created.
    Created,
    /// The object existed and was changed.
    Configured,
    /// The object existed and already matched.
    Unchanged,
    /// The object was deleted (or was already gone when prune tried).
    Deleted,
    /// Nothing was done, for the given reason (e.g. prune disabled on the object).
    Skipped(String),
    /// The operation failed with the given message.
    Failed(String),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Created => f.write_str("created"),
            Action::Configured => f.write_str("configured"),
            Action::Unchanged => f.write_str("unchanged"),
            Action::Deleted => f.write_str("deleted"),
            Action::Skipped(reason) => write!(f, "skipped: {reason}"),
            Action::Failed(message) => write!(f, "failed: {message}"),
        }
    }
}

/// What happened to one object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Change {
    pub id: ObjectRef,
    pub action: Action,
}

/// `Deployment.apps/prod/web configured`.
impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.id, self.action)
    }
}

/// The number of objects per action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub created: usize,
    pub configured: usize,
    pub unchanged: usize,
    pub deleted: usize,
    pub skipped: usize,
    pub failed: usize,
}

impl Counts {
    /// Total number of objects counted.
    pub fn total(&self) -> usize {
        self.created + self.configured + self.unchanged + self.deleted + self.skipped + self.failed
    }
}

/// Non-zero counts in a fixed order, `3 created, 1 configured, 10 unchanged, 1 deleted`;
/// `no changes` when every count is zero.
impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = [
            (self.created, "created"),
            (self.configured, "configured"),
            (self.unchanged, "unchanged"),
            (self.deleted, "deleted"),
            (self.skipped, "skipped"),
            (self.failed, "failed"),
        ];
        let mut first = true;
        for (n, what) in parts {
            if n == 0 {
                continue;
            }
            if !first {
                f.write_str(", ")?;
            }
            write!(f, "{n} {what}")?;
            first = false;
        }
        if first {
            f.write_str("no changes")?;
        }
        Ok(())
    }
}

/// The changes of one apply and/or prune, in the order they were made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSet {
    pub changes: Vec<Change>,
}

impl ChangeSet {
    /// An empty change set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records what happened to one object.
    pub fn push(&mut self, id: ObjectRef, action: Action) {
        self.changes.push(Change { id, action });
    }

    /// Appends another change set (e.g. prune results after apply results).
    pub fn extend(&mut self, other: ChangeSet) {
        self.changes.extend(other.changes);
    }

    /// The number of objects per action.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for change in &self.changes {
            match change.action {
                Action::Created => c.created += 1,
                Action::Configured => c.configured += 1,
                Action::Unchanged => c.unchanged += 1,
                Action::Deleted => c.deleted += 1,
                Action::Skipped(_) => c.skipped += 1,
                Action::Failed(_) => c.failed += 1,
            }
        }
        c
    }

    /// The changes that failed.
    pub fn failures(&self) -> impl Iterator<Item = &Change> {
        self.changes
            .iter()
            .filter(|c| matches!(c.action, Action::Failed(_)))
    }

    /// Whether nothing failed.
    pub fn is_ok(&self) -> bool {
        self.failures().next().is_none()
    }

    /// Whether anything was created, configured or deleted.
    pub fn has_changes(&self) -> bool {
        self.changes.iter().any(|c| {
            matches!(
                c.action,
                Action::Created | Action::Configured | Action::Deleted
            )
        })
    }

    /// One line per created, configured, deleted, skipped or failed object (unchanged ones are
    /// left out), for logs and the CLI.
    pub fn describe_changes(&self) -> String {
        let mut out = String::new();
        for c in self
            .changes
            .iter()
            .filter(|c| c.action != Action::Unchanged)
        {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&c.to_string());
        }
        out
    }
}

/// The summary of the counts, e.g. `3 created, 1 configured, 10 unchanged, 1 deleted`.
impl fmt::Display for ChangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.counts().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> ObjectRef {
        ObjectRef::new("v1", "ConfigMap", Some("ns".into()), name)
    }

    fn check(input: &[Action], expected_summary: &str) {
        let mut set = ChangeSet::new();
        for (i, a) in input.iter().enumerate() {
            set.push(id(&format!("c{i}")), a.clone());
        }
        assert_eq!(set.to_string(), expected_summary, "{input:?}");
        assert_eq!(set.counts().total(), input.len());
    }

    #[test]
    fn summaries() {
        use Action::*;
        check(&[], "no changes");
        check(&[Unchanged, Unchanged], "2 unchanged");
        check(
            &[
                Deleted, Created, Unchanged, Created, Configured, Created, Unchanged,
            ],
            "3 created, 1 configured, 2 unchanged, 1 deleted",
        );
        check(
            &[
                Failed("boom".into()),
                Skipped("prune disabled".into()),
                Created,
            ],
            "1 created, 1 skipped, 1 failed",
        );
    }

    #[test]
    fn failures_and_lines() {
        let mut set = ChangeSet::new();
        set.push(id("a"), Action::Unchanged);
        assert!(set.is_ok() && !set.has_changes());
        let mut prune = ChangeSet::new();
        prune.push(id("b"), Action::Deleted);
        prune.push(id("c"), Action::Failed("forbidden".into()));
        set.extend(prune);
        assert!(!set.is_ok() && set.has_changes());
        assert_eq!(set.failures().count(), 1);
        assert_eq!(
            set.describe_changes(),
            "ConfigMap/ns/b deleted\nConfigMap/ns/c failed: forbidden"
        );
        let json = serde_json::to_string(&set.changes[2].action).unwrap();
        assert_eq!(json, r#"{"action":"failed","detail":"forbidden"}"#);
    }
}
