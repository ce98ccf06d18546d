//! The webhook senders Headway understands (`/hooks/{provider}`) and how each one signs a
//! delivery and names its events.

use std::fmt;
use std::str::FromStr;

/// A webhook sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// GitHub and GitHub Enterprise: `X-Hub-Signature-256: sha256=<hex>`, event `X-GitHub-Event`.
    Github,
    /// GitLab: the shared secret itself in `X-Gitlab-Token`, event `X-Gitlab-Event`.
    Gitlab,
    /// Gitea and Forgejo: bare hex HMAC in `X-Gitea-Signature` / `X-Forgejo-Signature`.
    Gitea,
    /// Bitbucket Cloud: `X-Hub-Signature: sha256=<hex>`, event `X-Event-Key`.
    Bitbucket,
    /// Bitbucket Server / Data Center: `X-Hub-Signature: sha256=<hex>`, event `X-Event-Key`.
    BitbucketServer,
    /// Anything else: `X-Signature: sha256=<hex>` over a small JSON body (see docs/api.md).
    Generic,
}

impl Provider {
    /// Every provider, in the order of the documentation.
    pub const ALL: [Provider; 6] = [
        Provider::Github,
        Provider::Gitlab,
        Provider::Gitea,
        Provider::Bitbucket,
        Provider::BitbucketServer,
        Provider::Generic,
    ];

    /// The path segment and metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Github => "github",
            Provider::Gitlab => "gitlab",
            Provider::Gitea => "gitea",
            Provider::Bitbucket => "bitbucket",
            Provider::BitbucketServer => "bitbucket-server",
            Provider::Generic => "generic",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown `/hooks/{provider}` segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown webhook provider {0:?}: use github, gitlab, gitea, forgejo, bitbucket, bitbucket-server or generic"
)]
pub struct UnknownProvider(pub String);

impl FromStr for Provider {
    type Err = UnknownProvider;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "github" => Provider::Github,
            "gitlab" => Provider::Gitlab,
            "gitea" | "forgejo" => Provider::Gitea,
            "bitbucket" | "bitbucket-cloud" => Provider::Bitbucket,
            "bitbucket-server" | "bitbucket-datacenter" => Provider::BitbucketServer,
            "generic" => Provider::Generic,
            other => return Err(UnknownProvider(other.to_string())),
        })
    }
}
