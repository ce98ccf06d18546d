//! Who is calling and what they may do, asked of the Kubernetes API itself: the bearer token is
//! checked by a TokenReview, the right by a SubjectAccessReview for `patch` on the GitSync (the
//! same right `kubectl annotate` needs to make the request by hand).

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, UserInfo};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use crate::error::ApiError;

/// The bearer token of a request; 401 when there is none.
pub fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::Unauthorized("missing Authorization: Bearer <Kubernetes token>".into())
        })?
        .to_str()
        .map_err(|_| ApiError::Unauthorized("the Authorization header is not text".into()))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::Unauthorized("the Authorization header is not `Bearer <token>`".into())
        })?;
    Ok(token)
}

/// Authenticates a token with a TokenReview; 401 when the API server does not accept it.
pub async fn authenticate(client: &kube::Client, token: &str) -> Result<UserInfo, ApiError> {
    let api: Api<TokenReview> = Api::all(client.clone());
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.to_string()),
            audiences: None,
        },
        ..Default::default()
    };
    let answer = api
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| ApiError::Upstream(format!("TokenReview failed: {e}")))?;
    let status = answer.status.unwrap_or_default();
    match (status.authenticated, status.user) {
        (Some(true), Some(user)) => Ok(user),
        _ => Err(ApiError::Unauthorized(match status.error {
            Some(e) if !e.is_empty() => format!("the token was not accepted: {e}"),
            _ => "the token was not accepted".into(),
        })),
    }
}

/// Whether `user` may `patch` the GitSync `namespace/name` (SubjectAccessReview).
pub async fn may_patch(
    client: &kube::Client,
    user: &UserInfo,
    namespace: &str,
    name: &str,
) -> Result<bool, ApiError> {
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let extra: Option<BTreeMap<String, Vec<String>>> = user.extra.clone();
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: user.username.clone(),
            groups: user.groups.clone(),
            uid: user.uid.clone(),
            extra,
            resource_attributes: Some(ResourceAttributes {
                group: Some(headway_controller::crd::GROUP.into()),
                resource: Some("gitsyncs".into()),
                verb: Some("patch".into()),
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = api
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| ApiError::Upstream(format!("SubjectAccessReview failed: {e}")))?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// The caller's name for messages.
pub fn who(user: &UserInfo) -> String {
    user.username
        .clone()
        .unwrap_or_else(|| "(unnamed user)".into())
}
