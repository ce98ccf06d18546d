//! Which GitSyncs a push concerns: the same repository (normalised URLs, every URL the payload
//! gives) and the followed branch or tag among the pushed refs.

use headway_controller::crd::{DEFAULT_BRANCH, GitSync};

use crate::push::Push;
use crate::repo_url::normalize;

/// Whether `push` moves what `sync` follows. A GitSync pinned to a commit or suspended never
/// matches; a push that names no ref matches every ref.
pub fn matches(sync: &GitSync, push: &Push) -> bool {
    if sync.spec.suspend {
        return false;
    }
    let Some(want) = normalize(&sync.spec.repository.url) else {
        return false;
    };
    if !push
        .urls
        .iter()
        .any(|u| normalize(u).as_deref() == Some(want.as_str()))
    {
        return false;
    }
    let r = &sync.spec.repository.reference;
    let followed = match (&r.branch, &r.tag, &r.commit) {
        (_, _, Some(_)) => return false,
        (Some(b), _, _) => format!("refs/heads/{b}"),
        (None, Some(t), _) => format!("refs/tags/{t}"),
        (None, None, None) => format!("refs/heads/{DEFAULT_BRANCH}"),
    };
    push.refs.is_empty() || push.refs.contains(&followed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sync(url: &str, reference: serde_json::Value) -> GitSync {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "headway.dev/v1alpha1", "kind": "GitSync",
            "metadata": {"name": "s", "namespace": "n"},
            "spec": {"repository": {"url": url, "ref": reference}},
        }))
        .unwrap()
    }

    fn push(urls: &[&str], refs: &[&str]) -> Push {
        Push {
            urls: urls.iter().map(|s| s.to_string()).collect(),
            refs: refs.iter().map(|s| s.to_string()).collect(),
            after: None,
        }
    }

    #[test]
    fn url_and_ref_both_count() {
        let github = push(
            &[
                "https://github.com/Codertocat/Hello-World.git",
                "git@github.com:Codertocat/Hello-World.git",
            ],
            &["refs/heads/main"],
        );
        for (url, reference, expected) in [
            (
                "https://github.com/codertocat/hello-world",
                serde_json::json!({}),
                true,
            ),
            (
                "ssh://git@github.com/Codertocat/Hello-World.git",
                serde_json::json!({"branch": "main"}),
                true,
            ),
            (
                "git@github.com:Codertocat/Hello-World.git",
                serde_json::json!({"branch": "prod"}),
                false,
            ),
            (
                "https://github.com/Codertocat/Other.git",
                serde_json::json!({}),
                false,
            ),
            (
                "https://github.com/Codertocat/Hello-World.git",
                serde_json::json!({"tag": "main"}),
                false,
            ),
            (
                "https://github.com/Codertocat/Hello-World.git",
                serde_json::json!({"commit": "0123456789012345678901234567890123456789"}),
                false,
            ),
        ] {
            assert_eq!(
                matches(&sync(url, reference.clone()), &github),
                expected,
                "{url} {reference}"
            );
        }
        let tag = push(&["https://h/a/b"], &["refs/tags/v1"]);
        assert!(matches(
            &sync("https://h/a/b.git", serde_json::json!({"tag": "v1"})),
            &tag
        ));
        assert!(!matches(
            &sync("https://h/a/b.git", serde_json::json!({"tag": "v2"})),
            &tag
        ));
        // No ref named: every ref of the repository.
        assert!(matches(
            &sync("https://h/a/b.git", serde_json::json!({"branch": "x"})),
            &push(&["https://h/a/b"], &[])
        ));
        let mut suspended = sync("https://h/a/b.git", serde_json::json!({}));
        suspended.spec.suspend = true;
        assert!(!matches(&suspended, &push(&["https://h/a/b"], &[])));
    }

    /// The published Bitbucket examples: the GitSyncs the webhook tests create match them over
    /// HTTPS and SSH URLs, the other branch does not.
    #[test]
    fn bitbucket_examples() {
        use crate::provider::Provider;
        use crate::push::{Delivery, parse};
        let parsed = |provider, event: &str, file: &str| {
            let path = format!("{}/tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
            let body = std::fs::read(&path).unwrap();
            match parse(provider, &[("X-Event-Key", event)][..], &body).unwrap() {
                Delivery::Push(p) => p,
                other => panic!("{file}: {other:?}"),
            }
        };
        let server = parsed(
            Provider::BitbucketServer,
            "repo:refs_changed",
            "bitbucket-server-refs-changed.json",
        );
        for url in [
            "ssh://git@bitbucketserver:7999/myproject/test-repo.git",
            "https://bitbucketserver/scm/myproject/test-repo.git",
        ] {
            assert!(
                matches(&sync(url, serde_json::json!({"branch": "master"})), &server),
                "{url}"
            );
            assert!(
                !matches(&sync(url, serde_json::json!({"branch": "main"})), &server),
                "{url}"
            );
        }
        let cloud = parsed(
            Provider::Bitbucket,
            "repo:push",
            "bitbucket-cloud-push.json",
        );
        for url in [
            "https://bitbucket.org/team_name/repo_name.git",
            "git@bitbucket.org:team_name/repo_name.git",
        ] {
            let want = serde_json::json!({"branch": "name-of-branch"});
            assert!(matches(&sync(url, want), &cloud), "{url}");
            assert!(!matches(&sync(url, serde_json::json!({})), &cloud), "{url}");
        }
    }
}
