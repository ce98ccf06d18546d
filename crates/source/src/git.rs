//! The git2 side of a fetch: one anonymous remote, one refspec, shallow by default, with
//! callbacks that supply credentials once, verify SSH host keys against the source's
//! known_hosts, and cancel the transfer when the deadline passes.
//!
//! Errors are classified here: refusals (auth, host key, unknown ref) become [`SourceError`]s,
//! faults of the local repository become [`Failure::Corrupt`] so the caller can start over.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use git2::{
    AutotagOption, CertificateCheckStatus, Cred, CredentialType, ErrorClass, ErrorCode, Oid,
    RemoteCallbacks, Repository,
};

use crate::error::SourceError;
use crate::known_hosts::{self, HostKeyProblem};
use crate::types::{Auth, FetchOptions, GitRef, Source};
use crate::url::{GitUrl, Scheme};

/// Cancellation shared between the caller and the worker thread.
#[derive(Clone, Debug)]
pub(crate) struct Control {
    pub cancel: Arc<AtomicBool>,
    pub deadline: Instant,
}

impl Control {
    pub fn stopped(&self) -> bool {
        self.cancel.load(Ordering::Relaxed) || Instant::now() >= self.deadline
    }
}

/// How a step failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Report this to the caller.
    Fatal(SourceError),
    /// The local repository is broken: delete it and try again.
    Corrupt(String),
    /// The deadline passed or the caller gave up.
    Stopped,
}

impl From<SourceError> for Failure {
    fn from(e: SourceError) -> Self {
        Failure::Fatal(e)
    }
}

/// What a fetch produced.
pub(crate) struct Fetched {
    pub commit: Oid,
    pub received_bytes: u64,
}

/// Context for classifying errors and scrubbing secrets from them.
pub(crate) struct Ctx<'a> {
    pub source: &'a Source,
    pub url: &'a GitUrl,
    pub control: &'a Control,
}

impl Ctx<'_> {
    /// Removes every secret of the source from a message.
    pub fn scrub(&self, message: &str) -> String {
        let mut out = message.to_string();
        let secrets: Vec<&str> = match &self.source.auth {
            Auth::None => vec![],
            Auth::Basic { password, .. } => vec![password.expose()],
            Auth::Token(t) => vec![t.expose()],
            Auth::Ssh {
                private_key,
                passphrase,
                ..
            } => {
                let mut v = vec![private_key.expose()];
                v.extend(passphrase.as_ref().map(|p| p.expose()));
                v
            }
        };
        for s in secrets.into_iter().filter(|s| s.len() >= 3) {
            out = out.replace(s, "***");
        }
        if let Some((_, rest)) = self.source.url.split_once("://") {
            // a password inside the URL itself
            if let Some((userinfo, _)) = rest.split('/').next().unwrap_or("").rsplit_once('@')
                && let Some((_, pw)) = userinfo.split_once(':')
                && !pw.is_empty()
            {
                out = out.replace(pw, "***");
            }
        }
        out
    }

    fn url(&self) -> String {
        self.url.redacted.clone()
    }

    /// Classifies a git2 error that is not explained by the callbacks.
    fn classify(&self, e: &git2::Error) -> Failure {
        if self.control.stopped() {
            return Failure::Stopped;
        }
        let message = self.scrub(e.message());
        let lower = message.to_ascii_lowercase();
        if e.code() == ErrorCode::Auth
            || (e.class() == ErrorClass::Ssh
                && (lower.contains("auth")
                    || lower.contains("key")
                    || lower.contains("passphrase")))
            || lower.contains("status code: 401")
            || lower.contains("authentication")
        {
            return Failure::Fatal(SourceError::AuthFailed {
                url: self.url(),
                reason: message,
            });
        }
        let network = [
            "failed to connect",
            "could not resolve",
            "connection refused",
            "unreachable",
            "timed out",
            "failed to resolve",
            "connection reset",
            "early eof",
            "unexpected eof",
        ];
        if network.iter().any(|n| lower.contains(n)) {
            return Failure::Fatal(SourceError::Unreachable {
                url: self.url(),
                reason: message,
            });
        }
        match e.class() {
            ErrorClass::Odb
            | ErrorClass::Zlib
            | ErrorClass::Object
            | ErrorClass::Repository
            | ErrorClass::Reference
            | ErrorClass::Index
            | ErrorClass::Config
            | ErrorClass::Filesystem => Failure::Corrupt(message),
            _ => Failure::Fatal(SourceError::Git {
                url: self.url(),
                message,
            }),
        }
    }
}

/// Fetches every branch and tag, full depth, and looks for `oid` there (for servers that do not
/// let clients ask for a commit by id).
fn fetch_commit_from_all_refs(
    repo: &Repository,
    ctx: &Ctx<'_>,
    oid: Oid,
) -> Result<Fetched, Failure> {
    let specs = vec![
        "+refs/heads/*:refs/headway/heads/*".to_string(),
        "+refs/tags/*:refs/tags/*".to_string(),
    ];
    let depth = if repo.is_shallow() {
        Some(i32::MAX)
    } else {
        None
    };
    let received = run_fetch(repo, ctx, &specs, depth)?;
    match repo.find_commit(oid) {
        Ok(_) => Ok(Fetched {
            commit: oid,
            received_bytes: received,
        }),
        Err(_) => Err(unknown(ctx)),
    }
}

/// Fetches the source's reference into `repo` and returns the commit it designates.
pub(crate) fn fetch(
    repo: &Repository,
    ctx: &Ctx<'_>,
    options: &FetchOptions,
) -> Result<Fetched, Failure> {
    let source = ctx.source;
    if let GitRef::Commit(sha) = &source.reference {
        let oid = Oid::from_str(sha).map_err(|_| invalid(format!("bad commit id {sha:?}")))?;
        if repo.find_commit(oid).is_ok() {
            return Ok(Fetched {
                commit: oid,
                received_bytes: 0,
            });
        }
        let shallow_depth = options.depth.map(|d| d as i32);
        let spec = format!("+{sha}:refs/headway/pinned/{sha}");
        match run_fetch(repo, ctx, &[spec], shallow_depth) {
            Ok(received) => {
                return match repo.find_commit(oid) {
                    Ok(_) => Ok(Fetched {
                        commit: oid,
                        received_bytes: received,
                    }),
                    Err(_) => Err(unknown(ctx)),
                };
            }
            Err(Failure::Fatal(SourceError::Git { message, .. }))
                if message.contains("cannot fetch a specific object") =>
            {
                return fetch_commit_from_all_refs(repo, ctx, oid);
            }
            // git daemon answers a want of an unknown id with an error and closes the
            // connection; depending on timing libgit2 sees the reset before the error packet.
            // The server was reachable (the connect pre-check passed), so look in every branch
            // and tag: a server that is really gone fails that fetch too.
            Err(Failure::Fatal(SourceError::Unreachable { .. })) => {
                return fetch_commit_from_all_refs(repo, ctx, oid);
            }
            Err(Failure::Fatal(SourceError::Git { message, .. }))
                // upload-pack answers an unknown id with `ERR upload-pack: not our ref`, which
                // libgit2 reports as an unexpected packet.
                if message.contains("not our ref")
                    || message.contains("not valid")
                    || message.contains("unexpected packet type") =>
            {
                return Err(unknown(ctx));
            }
            Err(other) => return Err(other),
        }
    }

    let (remote_ref, local_ref) = match &source.reference {
        GitRef::Branch(b) => (format!("refs/heads/{b}"), format!("refs/headway/heads/{b}")),
        GitRef::Tag(t) => (format!("refs/tags/{t}"), format!("refs/tags/{t}")),
        GitRef::Commit(_) => unreachable!("handled above"),
    };
    if !git2::Reference::is_valid_name(&remote_ref) {
        return Err(invalid(format!("invalid {}", source.reference)));
    }
    let spec = format!("+{remote_ref}:{local_ref}");
    let depth = options.depth.map(|d| d as i32);
    let (received, advertised) = run_fetch_listing(repo, ctx, &[spec], depth, &remote_ref)?;
    let Some(oid) = advertised else {
        return Err(unknown(ctx));
    };
    let object = repo.find_object(oid, None).map_err(|e| {
        Failure::Corrupt(format!(
            "{remote_ref} fetched but {oid} is missing: {}",
            e.message()
        ))
    })?;
    let commit = object.peel_to_commit().map_err(|e| {
        invalid(format!(
            "{remote_ref} does not point to a commit: {}",
            e.message()
        ))
    })?;
    Ok(Fetched {
        commit: commit.id(),
        received_bytes: received,
    })
}

fn invalid(msg: String) -> Failure {
    Failure::Fatal(SourceError::Invalid(msg))
}

fn unknown(ctx: &Ctx<'_>) -> Failure {
    Failure::Fatal(SourceError::UnknownRef {
        url: ctx.url(),
        reference: ctx.source.reference.clone(),
    })
}

fn run_fetch(
    repo: &Repository,
    ctx: &Ctx<'_>,
    specs: &[String],
    depth: Option<i32>,
) -> Result<u64, Failure> {
    run_fetch_listing(repo, ctx, specs, depth, "").map(|(r, _)| r)
}

/// Runs one fetch; returns the bytes received and the id the server advertised for `wanted`.
fn run_fetch_listing(
    repo: &Repository,
    ctx: &Ctx<'_>,
    specs: &[String],
    depth: Option<i32>,
    wanted: &str,
) -> Result<(u64, Option<Oid>), Failure> {
    let refusal: RefCell<Option<SourceError>> = RefCell::new(None);
    let received = Cell::new(0u64);
    let cred_attempts = Cell::new(0u32);
    let control = ctx.control;
    let auth = &ctx.source.auth;
    let url = ctx.url;

    let mut callbacks = RemoteCallbacks::new();
    callbacks.credentials(|_url, user_from_url, allowed| {
        if control.stopped() {
            return Err(git2::Error::from_str("cancelled"));
        }
        let refuse = |reason: String| {
            *refusal.borrow_mut() = Some(SourceError::AuthFailed {
                url: url.redacted.clone(),
                reason: reason.clone(),
            });
            Err(git2::Error::from_str(&reason))
        };
        let ssh_user = user_from_url
            .map(str::to_string)
            .or_else(|| url.user.clone())
            .unwrap_or_else(|| "git".to_string());
        if allowed.contains(CredentialType::USERNAME) {
            return Cred::username(&ssh_user);
        }
        cred_attempts.set(cred_attempts.get() + 1);
        if cred_attempts.get() > 1 {
            return refuse("the server rejected the credentials".to_string());
        }
        match auth {
            Auth::None => {
                refuse("the server requires credentials and none are configured".to_string())
            }
            Auth::Basic { username, password } => {
                if !allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
                    return refuse("the server does not accept a user name and password".into());
                }
                Cred::userpass_plaintext(username, password.expose())
            }
            Auth::Token(token) => {
                if !allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
                    return refuse("the server does not accept a token".into());
                }
                let user = user_from_url
                    .map(str::to_string)
                    .or_else(|| url.user.clone())
                    .unwrap_or_else(|| "x-access-token".to_string());
                Cred::userpass_plaintext(&user, token.expose())
            }
            Auth::Ssh {
                private_key,
                passphrase,
                ..
            } => {
                if !allowed.contains(CredentialType::SSH_KEY) {
                    return refuse("the server does not accept public-key authentication".into());
                }
                Cred::ssh_key_from_memory(
                    &ssh_user,
                    None,
                    private_key.expose(),
                    passphrase.as_ref().map(|p| p.expose()),
                )
                .or_else(|e| refuse(format!("cannot use the private key: {}", e.message())))
            }
        }
    });
    callbacks.certificate_check(|cert, _host| {
        let Some(hostkey) = cert.as_hostkey() else {
            // X.509 (https): keep libgit2's verification against the system's CAs.
            return Ok(CertificateCheckStatus::CertificatePassthrough);
        };
        let host = url.known_hosts_name();
        let Auth::Ssh { known_hosts, .. } = auth else {
            *refusal.borrow_mut() = Some(SourceError::Invalid(
                "ssh URLs need Auth::Ssh with known_hosts".to_string(),
            ));
            return Err(git2::Error::from_str("no known_hosts"));
        };
        let (Some(key), Some(kind)) = (hostkey.hostkey(), hostkey.hostkey_type()) else {
            *refusal.borrow_mut() = Some(SourceError::HostKeyUnknown {
                host,
                key_type: "unknown".into(),
                fingerprint: "unavailable".into(),
            });
            return Err(git2::Error::from_str("host key unavailable"));
        };
        match known_hosts::verify(known_hosts, &host, key) {
            Ok(()) => Ok(CertificateCheckStatus::CertificateOk),
            Err(problem) => {
                let key_type = kind.name().to_string();
                let fingerprint = known_hosts::fingerprint(key);
                *refusal.borrow_mut() = Some(match problem {
                    HostKeyProblem::Unknown => SourceError::HostKeyUnknown {
                        host,
                        key_type,
                        fingerprint,
                    },
                    HostKeyProblem::Changed => SourceError::HostKeyChanged {
                        host,
                        key_type,
                        fingerprint,
                    },
                    HostKeyProblem::Revoked => SourceError::HostKeyRevoked {
                        host,
                        key_type,
                        fingerprint,
                    },
                    HostKeyProblem::CertificateOnly => SourceError::HostCertificateUnsupported {
                        host,
                        key_type,
                        fingerprint,
                    },
                });
                Err(git2::Error::from_str("host key verification failed"))
            }
        }
    });
    callbacks.transfer_progress(|progress| {
        received.set(progress.received_bytes() as u64);
        !control.stopped()
    });
    callbacks.sideband_progress(|_| !control.stopped());

    let mut fetch_options = git2::FetchOptions::new();
    fetch_options
        .remote_callbacks(callbacks)
        .download_tags(AutotagOption::None)
        .update_fetchhead(false);
    if let Some(d) = depth {
        fetch_options.depth(d);
    }
    if url.scheme == Scheme::Http && !matches!(auth, Auth::None) {
        tracing::warn!(url = %url.redacted, "sending credentials over plain http");
    }

    let mut remote = repo
        .remote_anonymous(&ctx.source.url)
        .map_err(|e| ctx.classify(&e))?;
    let result = remote.fetch(specs, Some(&mut fetch_options), None);
    drop(fetch_options);
    if let Some(err) = refusal.into_inner() {
        return Err(Failure::Fatal(err));
    }
    if let Err(e) = result {
        return Err(ctx.classify(&e));
    }
    if control.stopped() {
        return Err(Failure::Stopped);
    }
    let advertised = if wanted.is_empty() {
        None
    } else {
        remote
            .list()
            .map_err(|e| ctx.classify(&e))?
            .iter()
            .find(|h| h.name() == wanted)
            .map(|h| h.oid())
    };
    Ok((received.get(), advertised))
}
