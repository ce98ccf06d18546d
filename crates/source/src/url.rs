//! Just enough git URL parsing: the scheme, user, host and port (for the connect pre-check and
//! known_hosts lookup), and a redacted form without the password for messages.

use crate::error::SourceError;
use crate::secret::redact_url;

/// The transports Headway accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scheme {
    Git,
    Http,
    Https,
    Ssh,
}

/// A parsed git URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GitUrl {
    pub scheme: Scheme,
    pub user: Option<String>,
    pub has_password: bool,
    pub host: String,
    pub port: u16,
    /// The URL as given, but without a password.
    pub redacted: String,
}

impl GitUrl {
    /// The host as known_hosts names it: `host` on port 22, `[host]:port` otherwise.
    pub fn known_hosts_name(&self) -> String {
        if self.port == 22 {
            self.host.clone()
        } else {
            format!("[{}]:{}", self.host, self.port)
        }
    }
}

/// Parses a git URL; refuses local paths, `file://` and unknown schemes.
pub(crate) fn parse(url: &str) -> Result<GitUrl, SourceError> {
    let invalid = |why: &str| SourceError::Invalid(format!("URL {:?}: {why}", redact_url(url)));
    if url.trim() != url || url.is_empty() {
        return Err(invalid("empty or surrounded by spaces"));
    }
    if let Some((scheme, rest)) = url.split_once("://") {
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "git" => Scheme::Git,
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "ssh" | "git+ssh" | "ssh+git" => Scheme::Ssh,
            "file" => {
                return Err(invalid(
                    "file:// is not supported (shallow fetch needs a network transport)",
                ));
            }
            other => return Err(invalid(&format!("unsupported scheme {other:?}"))),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, has_password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((name, _)) => (Some(name.to_string()), true),
                None => (Some(u.to_string()), false),
            },
            None => (None, false),
        };
        let (host, port) = split_host_port(hostport).ok_or_else(|| invalid("bad host or port"))?;
        let default_port = match scheme {
            Scheme::Git => 9418,
            Scheme::Http => 80,
            Scheme::Https => 443,
            Scheme::Ssh => 22,
        };
        Ok(GitUrl {
            scheme,
            user: user.filter(|u| !u.is_empty()),
            has_password,
            host,
            port: port.unwrap_or(default_port),
            redacted: redact_url(url),
        })
    } else {
        // scp-like: [user@]host:path, with no slash before the colon.
        let (before, _path) = url.split_once(':').ok_or_else(|| {
            invalid("local paths are not supported; use git://, http(s):// or ssh://")
        })?;
        if before.contains('/') || before.is_empty() {
            return Err(invalid(
                "local paths are not supported; use git://, http(s):// or ssh://",
            ));
        }
        let (user, host) = match before.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_string()), h.to_string()),
            None => (None, before.to_string()),
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(invalid("missing host"));
        }
        Ok(GitUrl {
            scheme: Scheme::Ssh,
            user,
            has_password: false,
            host,
            port: 22,
            redacted: url.to_string(),
        })
    }
}

fn split_host_port(hostport: &str) -> Option<(String, Option<u16>)> {
    if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return (!host.is_empty()).then(|| (host.to_string(), port));
    }
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, Some(p.parse().ok()?)),
        None => (hostport, None),
    };
    (!host.is_empty()).then(|| (host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_schemes_and_ports() {
        let u = parse("git://127.0.0.1:9999/repo.git").unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port),
            (Scheme::Git, "127.0.0.1", 9999)
        );
        let u = parse("https://example.com/org/repo.git").unwrap();
        assert_eq!((u.scheme, u.port), (Scheme::Https, 443));
        let u = parse("ssh://git@[::1]:2222/repo").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.user.as_deref()),
            ("::1", 2222, Some("git"))
        );
        assert_eq!(u.known_hosts_name(), "[::1]:2222");
        let u = parse("git@github.com:org/repo.git").unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port),
            (Scheme::Ssh, "github.com", 22)
        );
        assert_eq!(u.known_hosts_name(), "github.com");
    }

    #[test]
    fn refuses_local_and_unknown() {
        for bad in [
            "/tmp/repo",
            "./repo",
            "file:///tmp/repo",
            "ftp://x/y",
            "",
            "C/x:y",
        ] {
            assert!(matches!(parse(bad), Err(SourceError::Invalid(_))), "{bad}");
        }
    }

    #[test]
    fn redacts_passwords() {
        let u = parse("https://u:p4ss@h:8443/x").unwrap();
        assert!(u.has_password);
        assert!(!u.redacted.contains("p4ss"));
    }
}
