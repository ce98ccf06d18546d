//! Repository URL normalisation: the forms one repository goes by (`https://`, `ssh://` with a
//! port, scp-like `user@host:path`, with or without `.git`, Bitbucket Server's `/scm/`) reduced
//! to one comparable key, `host/path`, lower case.

/// The comparable form of a git URL: lower-case `host/path` without scheme, user, port, `.git`
/// suffix, trailing slashes or Bitbucket Server's `scm/` segment. `None` when the text is not a
/// URL with a host and a path.
///
/// The port is dropped on purpose: the same repository is reached over HTTPS on 443 and over SSH
/// on 22, 2222 (Gitea) or 7999 (Bitbucket Server). Paths are compared without case (GitHub,
/// GitLab and Bitbucket treat them so); a webhook is only a hint to fetch, so a too-wide match
/// costs one fetch, never a wrong revision.
pub fn normalize(url: &str) -> Option<String> {
    let url = url.trim();
    let (authority, path) = if let Some((scheme, rest)) = url.split_once("://") {
        if scheme.is_empty()
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
        {
            return None;
        }
        match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        }
    } else {
        // scp-like: [user@]host:path (no scheme; the colon comes before any slash).
        let colon = url.find(':')?;
        if url[..colon].contains('/') {
            return None;
        }
        (&url[..colon], &url[colon + 1..])
    };
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(rest) = host_port.strip_prefix('[') {
        // [IPv6]:port
        rest.split_once(']').map(|(h, _)| h)?
    } else {
        host_port.split_once(':').map_or(host_port, |(h, _)| h)
    };
    if host.is_empty() {
        return None;
    }
    let path = path.split(['?', '#']).next().unwrap_or("");
    let mut segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if let Some(last) = segments.last_mut()
        && let Some(stripped) = last.strip_suffix(".git")
    {
        *last = stripped;
    }
    segments.retain(|s| !s.is_empty());
    // Bitbucket Server serves HTTP clones under `/scm/<project>/<repo>` and SSH clones under
    // `/<project>/<repo>`.
    if segments.len() >= 3 && segments[segments.len() - 3].eq_ignore_ascii_case("scm") {
        segments.remove(segments.len() - 3);
    }
    if segments.is_empty() {
        return None;
    }
    Some(format!("{}/{}", host, segments.join("/")).to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::normalize;

    fn check(input: &str, expected: Option<&str>) {
        assert_eq!(normalize(input).as_deref(), expected, "{input}");
    }

    #[test]
    fn every_form_of_one_repository_is_one_key() {
        for url in [
            "https://github.com/Codertocat/Hello-World.git",
            "https://github.com/Codertocat/Hello-World",
            "https://github.com/codertocat/hello-world/",
            "http://GitHub.com/Codertocat/Hello-World.git/",
            "git@github.com:Codertocat/Hello-World.git",
            "github.com:Codertocat/Hello-World",
            "ssh://git@github.com/Codertocat/Hello-World.git",
            "ssh://git@github.com:22/Codertocat/Hello-World.git",
            "git://github.com/Codertocat/Hello-World.git",
            "https://user:token@github.com/Codertocat/Hello-World.git",
            "https://github.com:443/Codertocat/Hello-World.git?x=1",
        ] {
            check(url, Some("github.com/codertocat/hello-world"));
        }
    }

    #[test]
    fn bitbucket_server_scm_and_port_7999() {
        check(
            "https://bitbucket.example.com/scm/proj/repository.git",
            Some("bitbucket.example.com/proj/repository"),
        );
        check(
            "ssh://git@bitbucket.example.com:7999/proj/repository.git",
            Some("bitbucket.example.com/proj/repository"),
        );
        // A context path before /scm/ is kept.
        check(
            "https://example.com/bitbucket/scm/PROJ/repo.git",
            Some("example.com/bitbucket/proj/repo"),
        );
    }

    #[test]
    fn gitea_ssh_with_a_port_and_ipv6() {
        check(
            "ssh://gitea@localhost:2222/gitea/webhooks.git",
            Some("localhost/gitea/webhooks"),
        );
        check(
            "http://localhost:3000/gitea/webhooks.git",
            Some("localhost/gitea/webhooks"),
        );
        check("ssh://git@[::1]:2222/a/b.git", Some("::1/a/b"));
    }

    #[test]
    fn not_urls() {
        for bad in [
            "",
            "   ",
            "https://",
            "https://host",
            "https://host/",
            "/local/path",
            "a/b:c",
            "://x/y",
        ] {
            check(bad, None);
        }
        // Different repositories stay different.
        assert_ne!(normalize("https://h/a/b"), normalize("https://h/a/c"));
        assert_ne!(normalize("https://h/a/b"), normalize("https://g/a/b"));
    }
}
