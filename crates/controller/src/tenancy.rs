//! Multi-tenancy: which identity a GitSync's objects are applied with, the lockdown rules on its
//! references, and the cache of impersonating clients.
//!
//! A GitSync with `spec.serviceAccountName` (or, without it, the controller's
//! `--default-service-account`) is synced as `system:serviceaccount:<its namespace>:<name>`
//! through Kubernetes impersonation: every request about its objects (apply, prune, health and
//! drift reads) carries `Impersonate-User`, so the API server decides what the tenant may write.
//! No `Impersonate-Group` is sent: for a service-account user the API server adds its groups
//! itself (`system:serviceaccounts`, `system:serviceaccounts:<namespace>`,
//! `system:authenticated`), so the controller needs `impersonate` on `serviceaccounts` only, not
//! on `groups` (which would let it claim any group, `system:masters` included).
//!
//! The controller's own identity is used only for the GitSync, its status, Events, the
//! inventory ConfigMaps, discovery, the decryption keys and the Lease. The inventory is the
//! controller's record (a tenant's identity need not be able to write it), but it cannot widen
//! what a tenant prunes: deletions go through the tenant's identity and are re-checked against
//! the ownership labels on the live object.
//!
//! With `--no-cross-namespace-refs`, a GitSync's `dependsOn` and `targetNamespace` may not name
//! another namespace (secret references are local by construction: they have no namespace).

use std::collections::HashMap;
use std::sync::Mutex;

use headway_apply::Identity;

use crate::crd::{GitSyncSpec, SpecError};

/// The user name of a service account.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// The lockdown settings of the controller (`--default-service-account`,
/// `--no-cross-namespace-refs`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lockdown {
    /// The service account (in the GitSync's namespace) a GitSync without
    /// `serviceAccountName` is impersonated as; `None`: the controller's own identity.
    pub default_service_account: Option<String>,
    /// Refuse `dependsOn` and `targetNamespace` outside the GitSync's namespace.
    pub no_cross_namespace_refs: bool,
}

impl Lockdown {
    /// The service account a GitSync of `namespace` is synced as, or `None` for the controller's
    /// own identity.
    pub fn service_account<'a>(&'a self, spec: &'a GitSyncSpec) -> Option<&'a str> {
        spec.service_account_name
            .as_deref()
            .or(self.default_service_account.as_deref())
    }

    /// Checks the references of a GitSync in `namespace` against the lockdown (`InvalidSpec`
    /// when one leaves the namespace).
    pub fn check(&self, spec: &GitSyncSpec, namespace: &str) -> Result<(), SpecError> {
        if !self.no_cross_namespace_refs {
            return Ok(());
        }
        let refused = |field: String, other: &str| SpecError {
            field,
            message: format!(
                "names namespace {other:?}, but cross-namespace references are disabled \
                 (--no-cross-namespace-refs): use the GitSync's namespace {namespace:?}"
            ),
        };
        for (i, dep) in spec.depends_on.iter().enumerate() {
            if let Some(other) = dep.namespace.as_deref()
                && other != namespace
            {
                return Err(refused(format!("dependsOn[{i}].namespace"), other));
            }
        }
        if let Some(other) = spec.target_namespace.as_deref()
            && other != namespace
        {
            return Err(refused("targetNamespace".into(), other));
        }
        Ok(())
    }
}

/// Why no client could be built for an identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The controller was started without the configuration impersonation needs.
    #[error(
        "cannot act as {user}: this controller was started without a client configuration to impersonate with"
    )]
    NoConfig { user: String },
    /// The client could not be built.
    #[error("building a client impersonating {user}: {source}")]
    Client {
        user: String,
        #[source]
        source: kube::Error,
    },
}

/// Impersonating clients, one per identity, built from the controller's configuration on first
/// use and kept for the life of the controller.
pub struct Identities {
    base: Option<kube::Config>,
    clients: Mutex<HashMap<String, Identity>>,
}

impl Identities {
    /// Identities impersonated from `base` (the configuration of the controller's own client);
    /// `None`: impersonation is unavailable and any GitSync needing it fails.
    pub fn new(base: Option<kube::Config>) -> Self {
        Identities {
            base,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The client acting as service account `name` of `namespace`.
    pub fn service_account(&self, namespace: &str, name: &str) -> Result<Identity, IdentityError> {
        let user = service_account_user(namespace, name);
        if let Some(identity) = self.clients.lock().expect("identities lock").get(&user) {
            return Ok(identity.clone());
        }
        let Some(base) = &self.base else {
            return Err(IdentityError::NoConfig { user });
        };
        let mut config = base.clone();
        config.auth_info.impersonate = Some(user.clone());
        // No groups: the API server derives a service account's groups (module documentation).
        config.auth_info.impersonate_groups = None;
        let client = kube::Client::try_from(config).map_err(|source| IdentityError::Client {
            user: user.clone(),
            source,
        })?;
        let identity = Identity {
            user: user.clone(),
            client,
        };
        self.clients
            .lock()
            .expect("identities lock")
            .insert(user, identity.clone());
        Ok(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> GitSyncSpec {
        let mut base = serde_json::json!({"repository": {"url": "https://example.com/r.git"}});
        for (k, v) in json.as_object().unwrap() {
            base[k] = v.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn the_service_account_is_the_spec_s_then_the_default() {
        let open = Lockdown::default();
        let locked = Lockdown {
            default_service_account: Some("headway".into()),
            no_cross_namespace_refs: false,
        };
        let own = spec(serde_json::json!({"serviceAccountName": "deployer"}));
        let none = spec(serde_json::json!({}));
        assert_eq!(open.service_account(&own), Some("deployer"));
        assert_eq!(open.service_account(&none), None);
        assert_eq!(locked.service_account(&own), Some("deployer"));
        assert_eq!(locked.service_account(&none), Some("headway"));
        assert_eq!(
            service_account_user("team-a", "deployer"),
            "system:serviceaccount:team-a:deployer"
        );
    }

    #[test]
    fn cross_namespace_references_are_refused_only_when_locked_down() {
        let locked = Lockdown {
            default_service_account: None,
            no_cross_namespace_refs: true,
        };
        let check = |l: &Lockdown, json| l.check(&spec(json), "team-a").map_err(|e| e.to_string());
        let dep =
            serde_json::json!({"dependsOn": [{"name": "x"}, {"name": "y", "namespace": "team-b"}]});
        let target = serde_json::json!({"targetNamespace": "kube-system"});
        let local = serde_json::json!({"dependsOn": [{"name": "x", "namespace": "team-a"}], "targetNamespace": "team-a"});
        assert_eq!(check(&Lockdown::default(), dep.clone()), Ok(()));
        assert_eq!(check(&Lockdown::default(), target.clone()), Ok(()));
        let e = check(&locked, dep).unwrap_err();
        assert!(
            e.starts_with("spec.dependsOn[1].namespace: names namespace \"team-b\""),
            "{e}"
        );
        assert!(e.contains("--no-cross-namespace-refs"), "{e}");
        let e = check(&locked, target).unwrap_err();
        assert!(
            e.starts_with("spec.targetNamespace: names namespace \"kube-system\""),
            "{e}"
        );
        assert_eq!(check(&locked, local), Ok(()));
    }

    #[test]
    fn without_a_configuration_impersonation_fails_with_the_user() {
        let ids = Identities::new(None);
        let e = ids.service_account("team-a", "deployer").unwrap_err();
        assert!(
            e.to_string()
                .contains("system:serviceaccount:team-a:deployer"),
            "{e}"
        );
    }
}
