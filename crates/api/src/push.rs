//! What a verified webhook delivery says: a push (the repository's URLs and the refs that
//! moved), a ping, or an event Headway ignores. Parsed only after the signature was checked.

use serde_json::Value;

use crate::provider::Provider;
use crate::signature::Headers;

/// A verified delivery, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Commits (or tags) were pushed.
    Push(Push),
    /// A ping or test event: answered 200, nothing requested.
    Ping,
    /// Another event (issues, pull requests, ...): answered 200, nothing requested.
    Ignored(String),
}

/// A push: every URL the payload gives for the repository and the refs that changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Push {
    /// Clone, SSH and web URLs, as sent.
    pub urls: Vec<String>,
    /// Full ref names (`refs/heads/main`, `refs/tags/v1`); empty means "any ref" (generic hooks
    /// that name no ref).
    pub refs: Vec<String>,
    /// The new commit when the payload names one (a hint for logs; the controller fetches itself).
    pub after: Option<String>,
}

/// Why a verified body is not a push Headway can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error(
        "the form-encoded body has no `payload` field (the content type is \
         application/x-www-form-urlencoded)"
    )]
    NoFormPayload,
    #[error("the {provider} push payload has no repository URL (looked at {fields})")]
    NoUrl {
        provider: Provider,
        fields: &'static str,
    },
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for key in path {
        cur = cur.get(key)?;
    }
    cur.as_str().filter(|s| !s.is_empty())
}

fn push_urls(out: &mut Vec<String>, v: &Value, paths: &[&[&str]]) {
    for path in paths {
        if let Some(u) = str_at(v, path)
            && !out.iter().any(|o| o == u)
        {
            out.push(u.to_string());
        }
    }
}

/// The event name a provider puts in its headers.
fn event(provider: Provider, headers: &(impl Headers + ?Sized)) -> Option<&str> {
    let names: &[&str] = match provider {
        Provider::Github => &["X-GitHub-Event"],
        Provider::Gitlab => &["X-Gitlab-Event"],
        Provider::Gitea => &["X-Gitea-Event", "X-Forgejo-Event", "X-Gogs-Event"],
        Provider::Bitbucket | Provider::BitbucketServer => &["X-Event-Key"],
        Provider::Generic => &["X-Event"],
    };
    names
        .iter()
        .find_map(|n| headers.header(n).map(str::trim).filter(|v| !v.is_empty()))
}

/// Whether the delivery is form-encoded (`Content-Type: application/x-www-form-urlencoded`,
/// with or without parameters): GitHub's default content type for a new webhook, and one Gitea
/// and Gogs offer.
fn form_encoded(headers: &(impl Headers + ?Sized)) -> bool {
    headers.header("Content-Type").is_some_and(|v| {
        v.split(';').next().is_some_and(|t| {
            t.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
    })
}

/// The JSON document of a delivery: the body, or the `payload` field of a form-encoded one.
fn document(headers: &(impl Headers + ?Sized), body: &[u8]) -> Result<Value, PayloadError> {
    if form_encoded(headers) {
        let payload = form_urlencoded::parse(body)
            .find(|(k, _)| k == "payload")
            .map(|(_, v)| v)
            .ok_or(PayloadError::NoFormPayload)?;
        serde_json::from_str(&payload).map_err(|e| PayloadError::NotJson(format!("payload: {e}")))
    } else {
        serde_json::from_slice(body).map_err(|e| PayloadError::NotJson(e.to_string()))
    }
}

/// Classifies and parses a delivery whose signature has been verified.
pub fn parse(
    provider: Provider,
    headers: &(impl Headers + ?Sized),
    body: &[u8],
) -> Result<Delivery, PayloadError> {
    let event = event(provider, headers).unwrap_or("");
    let is_push = match provider {
        Provider::Github => match event {
            "ping" => return Ok(Delivery::Ping),
            "push" => true,
            _ => false,
        },
        Provider::Gitlab => match event {
            "Push Hook" | "Tag Push Hook" => true,
            // An instance's or group's system hook sends every project's pushes with the same
            // body as a project hook, under one event name: the body says which kind it is.
            "System Hook" => matches!(
                document(headers, body)?
                    .get("object_kind")
                    .and_then(Value::as_str),
                Some("push" | "tag_push")
            ),
            _ => false,
        },
        Provider::Gitea => match event {
            "push" => true,
            "ping" => return Ok(Delivery::Ping),
            _ => false,
        },
        Provider::Bitbucket => event == "repo:push",
        Provider::BitbucketServer => match event {
            "diagnostics:ping" => return Ok(Delivery::Ping),
            "repo:refs_changed" | "mirror:repo_synchronized" => true,
            _ => false,
        },
        Provider::Generic => match event {
            "" | "push" => true,
            "ping" => return Ok(Delivery::Ping),
            _ => false,
        },
    };
    if !is_push {
        return Ok(Delivery::Ignored(if event.is_empty() {
            "(none)".into()
        } else {
            event.to_string()
        }));
    }
    let v = document(headers, body)?;
    let mut push = Push::default();
    let fields = match provider {
        Provider::Github | Provider::Gitea => {
            push_urls(
                &mut push.urls,
                &v,
                &[
                    &["repository", "clone_url"],
                    &["repository", "ssh_url"],
                    &["repository", "git_url"],
                    &["repository", "html_url"],
                    &["repository", "url"],
                ],
            );
            push.refs.extend(str_at(&v, &["ref"]).map(String::from));
            push.after = str_at(&v, &["after"]).map(String::from);
            "repository.clone_url, ssh_url, git_url, html_url"
        }
        Provider::Gitlab => {
            push_urls(
                &mut push.urls,
                &v,
                &[
                    &["project", "git_http_url"],
                    &["project", "git_ssh_url"],
                    &["project", "web_url"],
                    &["repository", "git_http_url"],
                    &["repository", "git_ssh_url"],
                    &["repository", "url"],
                    &["repository", "homepage"],
                ],
            );
            push.refs.extend(str_at(&v, &["ref"]).map(String::from));
            // For an annotated tag `after` is the tag object; the commit is `checkout_sha`.
            push.after = str_at(&v, &["checkout_sha"])
                .or_else(|| str_at(&v, &["after"]))
                .map(String::from);
            "project.git_http_url, git_ssh_url, web_url"
        }
        Provider::BitbucketServer => {
            if let Some(clone) = v
                .pointer("/repository/links/clone")
                .and_then(Value::as_array)
            {
                for link in clone {
                    push_urls(&mut push.urls, link, &[&["href"]]);
                }
            }
            for change in v
                .get("changes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(r) =
                    str_at(change, &["ref", "id"]).or_else(|| str_at(change, &["refId"]))
                {
                    push.refs.push(r.to_string());
                }
                if push.after.is_none() {
                    push.after = str_at(change, &["toHash"]).map(String::from);
                }
            }
            "repository.links.clone[].href"
        }
        Provider::Bitbucket => {
            // No clone URL in the payload: the web URL is the HTTPS clone URL without `.git`.
            push_urls(
                &mut push.urls,
                &v,
                &[&["repository", "links", "html", "href"]],
            );
            if let Some(full) = str_at(&v, &["repository", "full_name"]) {
                let ssh = format!("git@bitbucket.org:{full}.git");
                if push.urls.is_empty() {
                    push.urls.push(format!("https://bitbucket.org/{full}.git"));
                }
                push.urls.push(ssh);
            }
            for change in v
                .pointer("/push/changes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                // `new` is null when a branch is deleted; `old` names it then.
                let side = change
                    .get("new")
                    .filter(|n| !n.is_null())
                    .or_else(|| change.get("old"));
                if let Some(side) = side
                    && let Some(name) = str_at(side, &["name"])
                {
                    let prefix = if str_at(side, &["type"]) == Some("tag") {
                        "refs/tags/"
                    } else {
                        "refs/heads/"
                    };
                    push.refs.push(format!("{prefix}{name}"));
                    if push.after.is_none() {
                        push.after = str_at(side, &["target", "hash"]).map(String::from);
                    }
                }
            }
            "repository.links.html.href, repository.full_name"
        }
        Provider::Generic => {
            push_urls(&mut push.urls, &v, &[&["repository"], &["url"]]);
            for u in v
                .get("urls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(u) = u.as_str() {
                    push.urls.push(u.to_string());
                }
            }
            push.refs.extend(str_at(&v, &["ref"]).map(String::from));
            push.after = str_at(&v, &["after"]).map(String::from);
            "repository, url, urls[]"
        }
    };
    if push.urls.is_empty() {
        return Err(PayloadError::NoUrl { provider, fields });
    }
    Ok(Delivery::Push(push))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn push(provider: Provider, event: (&str, &str), file: &str) -> Push {
        match parse(provider, &[event][..], &fixture(file)).unwrap() {
            Delivery::Push(p) => p,
            other => panic!("{file}: {other:?}"),
        }
    }

    #[test]
    fn github_documented_push() {
        let p = push(
            Provider::Github,
            ("X-GitHub-Event", "push"),
            "github-push.json",
        );
        assert_eq!(
            p.urls,
            [
                "https://github.com/Codertocat/Hello-World.git",
                "git@github.com:Codertocat/Hello-World.git",
                "git://github.com/Codertocat/Hello-World.git",
                "https://github.com/Codertocat/Hello-World",
            ]
        );
        assert_eq!(p.refs, ["refs/tags/simple-tag"]);
        assert_eq!(
            parse(Provider::Github, &[("X-GitHub-Event", "ping")][..], b"{}"),
            Ok(Delivery::Ping)
        );
        assert_eq!(
            parse(
                Provider::Github,
                &[("X-GitHub-Event", "issues")][..],
                b"not json"
            ),
            Ok(Delivery::Ignored("issues".into()))
        );
    }

    #[test]
    fn github_form_encoded_push_reads_the_payload_field() {
        let json = fixture("github-push.json");
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", std::str::from_utf8(&json).unwrap())
            .finish();
        let headers = [
            ("X-GitHub-Event", "push"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ];
        let form = match parse(Provider::Github, &headers[..], body.as_bytes()).unwrap() {
            Delivery::Push(p) => p,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            form,
            push(
                Provider::Github,
                ("X-GitHub-Event", "push"),
                "github-push.json"
            )
        );
        // The same body read as JSON is refused; a form without `payload` too.
        assert!(matches!(
            parse(
                Provider::Github,
                &[("X-GitHub-Event", "push")][..],
                body.as_bytes()
            ),
            Err(PayloadError::NotJson(_))
        ));
        assert_eq!(
            parse(Provider::Github, &headers[..], b"other=1"),
            Err(PayloadError::NoFormPayload)
        );
        // Parameters and case of the media type do not matter.
        let headers = [
            ("X-GitHub-Event", "push"),
            (
                "Content-Type",
                "Application/X-WWW-Form-Urlencoded; charset=utf-8",
            ),
        ];
        assert!(matches!(
            parse(Provider::Github, &headers[..], body.as_bytes()),
            Ok(Delivery::Push(_))
        ));
    }

    #[test]
    fn gitlab_system_hooks_carry_pushes_and_other_events() {
        let p = push(
            Provider::Gitlab,
            ("X-Gitlab-Event", "System Hook"),
            "gitlab-push.json",
        );
        assert_eq!(p.refs, ["refs/heads/master"]);
        let other = br#"{"object_kind": "merge_request", "event_type": "merge_request"}"#;
        assert_eq!(
            parse(
                Provider::Gitlab,
                &[("X-Gitlab-Event", "System Hook")][..],
                other
            ),
            Ok(Delivery::Ignored("System Hook".into()))
        );
    }

    #[test]
    fn gitlab_documented_push_and_tag_push() {
        let p = push(
            Provider::Gitlab,
            ("X-Gitlab-Event", "Push Hook"),
            "gitlab-push.json",
        );
        assert_eq!(
            p.urls[..2],
            [
                "http://example.com/mike/diaspora.git",
                "git@example.com:mike/diaspora.git"
            ]
        );
        assert_eq!(p.refs, ["refs/heads/master"]);
        assert_eq!(
            p.after.as_deref(),
            Some("da1560886d4f094c3e6c9ef40349f7d38b5d27d7")
        );
        let p = push(
            Provider::Gitlab,
            ("X-Gitlab-Event", "Tag Push Hook"),
            "gitlab-tag-push.json",
        );
        assert_eq!(p.refs, ["refs/tags/v1.0.0"]);
        assert!(
            p.urls
                .iter()
                .any(|u| u == "ssh://git@example.com/jsmith/example.git")
        );
    }

    #[test]
    fn gitea_documented_push() {
        let p = push(
            Provider::Gitea,
            ("X-Gitea-Event", "push"),
            "gitea-push.json",
        );
        assert_eq!(
            p.urls[..2],
            [
                "http://localhost:3000/gitea/webhooks.git",
                "ssh://gitea@localhost:2222/gitea/webhooks.git"
            ]
        );
        assert_eq!(p.refs, ["refs/heads/develop"]);
        let p = push(
            Provider::Gitea,
            ("X-Forgejo-Event", "push"),
            "gitea-push.json",
        );
        assert_eq!(p.refs, ["refs/heads/develop"]);
    }

    #[test]
    fn bitbucket_server_and_cloud() {
        let p = push(
            Provider::BitbucketServer,
            ("X-Event-Key", "repo:refs_changed"),
            "bitbucket-server-refs-changed.json",
        );
        assert_eq!(
            p.urls,
            [
                "ssh://git@bitbucketserver:7999/myproject/test-repo.git",
                "https://bitbucketserver/scm/myproject/test-repo.git"
            ]
        );
        assert_eq!(p.refs, ["refs/heads/master"]);
        assert_eq!(
            p.after.as_deref(),
            Some("22671f0349857934857983457983475ec39f196b")
        );
        assert_eq!(
            parse(
                Provider::BitbucketServer,
                &[("X-Event-Key", "diagnostics:ping")][..],
                b""
            ),
            Ok(Delivery::Ping)
        );
        let p = push(
            Provider::Bitbucket,
            ("X-Event-Key", "repo:push"),
            "bitbucket-cloud-push.json",
        );
        // Atlassian's example gives `links.html` on another host than `full_name`; the SSH URL
        // derived from `full_name` is the one a GitSync on bitbucket.org matches.
        assert_eq!(
            p.urls,
            [
                "https://api.bitbucket.org/bitbucket/bitbucket",
                "git@bitbucket.org:team_name/repo_name.git"
            ]
        );
        assert_eq!(p.refs, ["refs/heads/name-of-branch"]);
        assert_eq!(
            p.after.as_deref(),
            Some("709d658dc5b6d6afcd46049c2f332ee3f515a67d")
        );
    }

    #[test]
    fn generic_and_errors() {
        let d = parse(
            Provider::Generic,
            &[][..],
            br#"{"repository":"https://h/a/b.git","ref":"refs/heads/main"}"#,
        );
        assert_eq!(
            d,
            Ok(Delivery::Push(Push {
                urls: vec!["https://h/a/b.git".into()],
                refs: vec!["refs/heads/main".into()],
                after: None
            }))
        );
        assert!(matches!(
            parse(Provider::Generic, &[][..], b"{"),
            Err(PayloadError::NotJson(_))
        ));
        assert_eq!(
            parse(Provider::Github, &[("X-GitHub-Event", "push")][..], b"{}"),
            Err(PayloadError::NoUrl {
                provider: Provider::Github,
                fields: "repository.clone_url, ssh_url, git_url, html_url"
            })
        );
        // Hostile shapes never panic.
        for body in [
            &b"[]"[..],
            b"null",
            b"{\"repository\":7}",
            b"{\"changes\":{}}",
            b"{\"push\":{\"changes\":[null,1]}}",
        ] {
            for provider in Provider::ALL {
                let _ = parse(
                    provider,
                    &[
                        ("X-GitHub-Event", "push"),
                        ("X-Gitlab-Event", "Push Hook"),
                        ("X-Gitea-Event", "push"),
                        ("X-Event-Key", "repo:push"),
                    ][..],
                    body,
                );
                let _ = parse(provider, &[("X-Event-Key", "repo:refs_changed")][..], body);
            }
        }
    }
}
