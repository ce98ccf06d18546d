//! Who the objects of `diff` and `apply` belong to: the sync's name and namespace (its ownership
//! labels and its inventory), and the namespace of namespaced objects that name none.

use clap::Args;
use headway_model::SyncOwner;

use crate::cluster::Cluster;

/// Who the applied objects belong to.
#[derive(Debug, Clone, Args)]
pub struct SyncArgs {
    /// Sync name written in the ownership labels and naming the inventory
    /// (`headway-inventory-<name>`). Default: the directory's (or repository's) name.
    #[arg(long)]
    pub name: Option<String>,
    /// Namespace holding the inventory ConfigMaps (it must exist).
    #[arg(long, default_value = "default")]
    pub sync_namespace: String,
    /// Namespace of namespaced objects that name none; default: the kubeconfig context's
    /// namespace, else `default`.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
}

impl SyncArgs {
    /// The owner: `--sync-namespace` / (`--name` or the default name).
    pub fn owner(&self, default_name: &str) -> anyhow::Result<SyncOwner> {
        let name = self.name.as_deref().unwrap_or(default_name);
        Ok(SyncOwner::new(&self.sync_namespace, name)?)
    }

    /// The namespace of namespaced objects that name none.
    pub fn target_namespace(&self, cluster: &Cluster) -> String {
        cluster.namespace_or(self.namespace.as_deref())
    }
}

/// `name` as a label value: lowercase alphanumerics and `-`, at most 63, `headway` when empty.
pub fn label_value(name: &str) -> String {
    let mut v: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    v.truncate(63);
    let v = v.trim_matches('-').to_string();
    if v.is_empty() { "headway".into() } else { v }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_names_are_label_values() {
        for (input, expected) in [
            ("site", "site"),
            ("My_Apps.prod", "my-apps-prod"),
            ("--x--", "x"),
            ("", "headway"),
            (&"a".repeat(80), &"a".repeat(63)),
        ] {
            assert_eq!(label_value(input), expected, "{input}");
            assert!(SyncOwner::new("default", &label_value(input)).is_ok());
        }
    }
}
