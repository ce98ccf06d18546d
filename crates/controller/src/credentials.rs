//! Git credentials of a GitSync: the Secret named by `spec.repository.secretRef` (SSH key,
//! token, or username and password) plus `spec.repository.knownHosts`; and the chart repository
//! credentials of `spec.render.helm.chart.secretRef` (username and password). Every problem is a
//! fetch failure naming the Secret and the key.

use headway_source::{Auth, Secret as SourceSecret};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use crate::crd::Repository;
use crate::outcome::Failure;
use crate::progress::Stage;

/// Credentials from `spec.repository.secretRef` and `knownHosts`.
pub async fn credentials(
    client: &kube::Client,
    namespace: &str,
    repo: &Repository,
) -> Result<Auth, Failure> {
    let Some(secret_ref) = &repo.secret_ref else {
        return Ok(Auth::None);
    };
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = match api.get_opt(&secret_ref.name).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(Failure::at(
                Stage::Fetch,
                format!(
                    "spec.repository.secretRef: Secret {namespace}/{} not found",
                    secret_ref.name
                ),
                false,
            ));
        }
        Err(e) => {
            return Err(Failure::at(
                Stage::Fetch,
                format!(
                    "reading Secret {namespace}/{}: {}",
                    secret_ref.name,
                    headway_apply::error_message(&e)
                ),
                true,
            ));
        }
    };
    let data = secret.data.unwrap_or_default();
    let text = |key: &str| -> Result<Option<String>, Failure> {
        match data.get(key) {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes.0.clone()).map(Some).map_err(|_| {
                Failure::at(
                    Stage::Fetch,
                    format!(
                        "Secret {namespace}/{}: key {key} is not UTF-8",
                        secret_ref.name
                    ),
                    false,
                )
            }),
        }
    };
    if let Some(key) = text("identity")? {
        let mut known_hosts = text("known_hosts")?.unwrap_or_default();
        if let Some(extra) = &repo.known_hosts {
            known_hosts.push('\n');
            known_hosts.push_str(extra);
        }
        return Ok(Auth::Ssh {
            private_key: SourceSecret::new(key),
            passphrase: text("passphrase")?.map(SourceSecret::new),
            known_hosts,
        });
    }
    if let Some(token) = text("token")? {
        return Ok(Auth::Token(SourceSecret::new(token)));
    }
    match (text("username")?, text("password")?) {
        (Some(username), Some(password)) => Ok(Auth::Basic {
            username,
            password: SourceSecret::new(password),
        }),
        (Some(_), None) | (None, Some(_)) => {
            let (has, lacks) = if data.contains_key("username") {
                ("username", "password")
            } else {
                ("password", "username")
            };
            Err(Failure::at(
                Stage::Fetch,
                format!(
                    "Secret {namespace}/{} has key {has} but no key {lacks}",
                    secret_ref.name
                ),
                false,
            ))
        }
        (None, None) => Err(Failure::at(
            Stage::Fetch,
            format!(
                "Secret {namespace}/{} has none of: identity (SSH key), token, username and password",
                secret_ref.name
            ),
            false,
        )),
    }
}

/// Credentials for a remote chart's repository: `username` and `password` of the Secret named by
/// `spec.render.helm.chart.secretRef`.
pub async fn chart_credentials(
    client: &kube::Client,
    namespace: &str,
    secret_ref: Option<&crate::crd::LocalObjectReference>,
) -> Result<Option<headway_render::chart::Credentials>, Failure> {
    let Some(secret_ref) = secret_ref else {
        return Ok(None);
    };
    let name = &secret_ref.name;
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = match api.get_opt(name).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(Failure::at(
                Stage::Fetch,
                format!("spec.render.helm.chart.secretRef: Secret {namespace}/{name} not found"),
                false,
            ));
        }
        Err(e) => {
            return Err(Failure::at(
                Stage::Fetch,
                format!(
                    "reading Secret {namespace}/{name}: {}",
                    headway_apply::error_message(&e)
                ),
                true,
            ));
        }
    };
    let data = secret.data.unwrap_or_default();
    let text = |key: &str| -> Result<String, Failure> {
        let bytes = data.get(key).ok_or_else(|| {
            Failure::at(
                Stage::Fetch,
                format!(
                    "spec.render.helm.chart.secretRef: Secret {namespace}/{name} has no key {key}"
                ),
                false,
            )
        })?;
        String::from_utf8(bytes.0.clone()).map_err(|_| {
            Failure::at(
                Stage::Fetch,
                format!("Secret {namespace}/{name}: key {key} is not UTF-8"),
                false,
            )
        })
    };
    Ok(Some(headway_render::chart::Credentials {
        username: text("username")?,
        password: text("password")?,
    }))
}
