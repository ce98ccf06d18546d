//! Sharding: several controllers (each its own Deployment, each with its own leader election)
//! split the GitSyncs by a label. A controller started with a shard watches only the GitSyncs
//! its selector matches and elects its leader on a Lease of its own (`<lease>-<shard>`), so the
//! shards work side by side and a replica of one shard takes over only that shard. The API
//! server remains the only store: a GitSync belongs to the shard its label says, nothing else
//! records it. Pure: no I/O here.

/// The label that assigns a GitSync to a shard.
pub const SHARD_LABEL: &str = "headway.dev/shard";

/// The shard of GitSyncs without [`SHARD_LABEL`].
pub const DEFAULT_SHARD: &str = "default";

/// One shard: its name (in the Lease's name) and the label selector of its GitSyncs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub name: String,
    pub selector: String,
}

impl Shard {
    /// The shard `name`, selecting GitSyncs labelled `headway.dev/shard=<name>` or, for
    /// [`DEFAULT_SHARD`], the GitSyncs without that label; `selector` replaces that selector
    /// (any Kubernetes label selector). The name must be a valid label value.
    pub fn new(name: &str, selector: Option<&str>) -> Result<Shard, String> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !valid {
            return Err(format!(
                "shard name {name:?} is not a valid label value (at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)"
            ));
        }
        let selector = match selector.map(str::trim) {
            Some("") => return Err(format!("the selector of shard {name} is empty")),
            Some(s) => s.to_string(),
            None if name == DEFAULT_SHARD => format!("!{SHARD_LABEL}"),
            None => format!("{SHARD_LABEL}={name}"),
        };
        Ok(Shard {
            name: name.to_string(),
            selector,
        })
    }

    /// The name of the shard's Lease, from the base name of the controller's Lease.
    pub fn lease_name(&self, base: &str) -> String {
        format!("{base}-{}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_and_lease_names() {
        let a = Shard::new("team-a", None).unwrap();
        assert_eq!(a.selector, "headway.dev/shard=team-a");
        assert_eq!(
            a.lease_name("headway-controller"),
            "headway-controller-team-a"
        );
        let d = Shard::new(DEFAULT_SHARD, None).unwrap();
        assert_eq!(d.selector, "!headway.dev/shard");
        let custom = Shard::new("big", Some("tier in (big, huge)")).unwrap();
        assert_eq!(custom.selector, "tier in (big, huge)");
    }

    #[test]
    fn invalid_names_and_selectors_are_refused() {
        for bad in ["", "-a", "a-", "a b", "a/b", &"x".repeat(64)] {
            let e = Shard::new(bad, None).unwrap_err();
            assert!(e.contains("not a valid label value"), "{bad:?}: {e}");
        }
        assert!(Shard::new("a", Some(" ")).unwrap_err().contains("empty"));
    }
}
