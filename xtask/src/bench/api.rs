//! `cargo xtask bench api`: the HTTP API of `headway controller` under load, and the latency
//! from a git push's webhook to the changed object in the cluster.
//!
//! A repository of `objects` ConfigMaps is served by `git daemon`; the controller runs as a
//! child process with `--http-address` and a webhook secret; one GitSync follows the repository.
//! Once it is Ready:
//! 1. Status: `clients` concurrent clients read `GET /api/v1/syncs/{ns}/{name}` (a new
//!    connection per request) for `seconds`, while a rebuild of the sync runs (requested just
//!    before). Reported: requests per second, p50 and p99 latency.
//! 2. Webhook to applied: `pushes` times, one ConfigMap's value is changed, committed and pushed,
//!    then a GitLab-style push webhook is posted; a watch on that ConfigMap times the moment the
//!    new value is in the cluster. Pushes are 1.5 s apart, beyond the API's 1 s coalescing gap,
//!    so each is a separate sync. Reported: p50, p90 and max (target: p50 at most 0.25 s).
//!
//! The cluster is the one of `KUBECONFIG`; the bench refuses the shared cluster on port 16443
//! unless `--allow-shared-cluster`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use futures::StreamExt;
use headway_controller::crd::GitSync;
use headway_tests::process::Guarded;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::CustomResourceExt as _;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::gitserve::{GitDaemon, commit_all, init_pair};
use crate::paths::Paths;

/// What to measure.
#[derive(clap::Args, Clone, Debug)]
pub struct Params {
    /// ConfigMaps in the repository.
    #[arg(long, default_value_t = 1_000)]
    pub objects: usize,
    /// Concurrent status clients.
    #[arg(long, default_value_t = 200)]
    pub clients: usize,
    /// Seconds of status load.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Pushes timed from webhook to applied object.
    #[arg(long, default_value_t = 20)]
    pub pushes: usize,
    /// Use the debug build of headway (faster to build, slower to run).
    #[arg(long)]
    pub debug: bool,
    /// Allow running against the shared cluster on port 16443.
    #[arg(long)]
    pub allow_shared_cluster: bool,
    /// Run this `headway` binary instead of building one (e.g. to compare two builds in turn
    /// under the same machine load).
    #[arg(long, value_name = "PATH")]
    pub headway: Option<std::path::PathBuf>,
}

const NAMESPACE: &str = "headway-bench-api";
const SYNC: &str = "site";
const SECRET: &str = "bench-webhook-secret";

/// Runs the benchmark and prints a Markdown summary.
pub fn run(paths: &Paths, params: Params) -> anyhow::Result<()> {
    ensure!(
        params.objects >= 1 && params.clients >= 1 && params.pushes >= 1,
        "bad parameters {params:?}"
    );
    let headway = match &params.headway {
        Some(path) => path.clone(),
        None => super::build_headway(paths, !params.debug)?,
    };
    super::cluster::block_on(run_async(&headway, &params))
}

fn configmap(i: usize, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-{i}\n  namespace: {NAMESPACE}\ndata:\n  value: \"{value}\"\n"
    )
}

/// One HTTP/1.0 request; returns the status code.
async fn http(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<u16> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {address}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    text.split_whitespace()
        .nth(1)
        .context("no status line")?
        .parse()
        .context("status code")
}

/// Progress events of the controller's event stream, each with the moment it arrived here.
type Arrivals = Arc<std::sync::Mutex<Vec<(Instant, Value)>>>;

/// Reads `GET /api/v1/events` until the connection ends, recording every progress event.
async fn record_events(address: SocketAddr, into: Arrivals) -> anyhow::Result<()> {
    let stream = tokio::net::TcpStream::connect(address).await?;
    // The write half stays open for as long as the stream is read.
    let (read, mut write) = stream.into_split();
    write
        .write_all(
            format!(
                "GET /api/v1/events HTTP/1.0\r\nHost: {address}\r\nAccept: text/event-stream\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
    let mut lines = tokio::io::BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        if let Some(data) = line.strip_prefix("data:")
            && let Ok(v) = serde_json::from_str::<Value>(data.trim())
        {
            into.lock().expect("arrivals").push((Instant::now(), v));
        }
    }
    Ok(())
}

/// When one push was sent, answered and seen applied.
#[derive(Debug, Clone, Copy)]
struct PushTimes {
    sent: Instant,
    answered: Instant,
    seen: Instant,
}

/// Where the time of one push went, from the progress events of the run it caused.
#[derive(Debug, Default, Clone)]
struct Breakdown {
    /// Webhook POST until its 202.
    webhook: Duration,
    /// 202 until the run started (annotation watch event, work queue, reconcile's GET, the
    /// "started" status write).
    pickup: Option<Duration>,
    fetch: Option<Duration>,
    render: Option<Duration>,
    /// Render finished until the first apply stage started (preparing the set, reading the
    /// inventory).
    prepare: Option<Duration>,
    /// First apply stage started until the new value was seen by the watch.
    apply: Option<Duration>,
    /// The new value seen until the run finished (inventory write, health wait, status write).
    after: Option<Duration>,
}

fn event_is(v: &Value, event: &str, stage: Option<&str>) -> bool {
    v["event"] == event && stage.is_none_or(|s| v["stage"] == s)
}

fn seconds(v: &Value) -> Option<Duration> {
    v["durationSeconds"].as_f64().map(Duration::from_secs_f64)
}

/// The breakdown of the push `times`, from the events that arrived before `until`.
fn breakdown(times: &PushTimes, until: Option<Instant>, events: &[(Instant, Value)]) -> Breakdown {
    let mut b = Breakdown {
        webhook: times.answered.saturating_duration_since(times.sent),
        ..Breakdown::default()
    };
    let ours = |v: &Value| v["sync"]["namespace"] == NAMESPACE && v["sync"]["name"] == SYNC;
    let window: Vec<&(Instant, Value)> = events
        .iter()
        .filter(|(at, v)| *at >= times.sent && until.is_none_or(|u| *at < u) && ours(v))
        .collect();
    let Some((started_at, started)) = window
        .iter()
        .find(|(_, v)| event_is(v, "runStarted", None))
        .copied()
    else {
        return b;
    };
    let run: Vec<&(Instant, Value)> = window
        .into_iter()
        .filter(|(_, v)| v["runId"] == started["runId"])
        .collect();
    let find = |event: &str, stage: Option<&str>| {
        run.iter().find(|(_, v)| event_is(v, event, stage)).copied()
    };
    b.pickup = Some(started_at.saturating_duration_since(times.answered));
    b.fetch = find("stageFinished", Some("fetch")).and_then(|(_, v)| seconds(v));
    let rendered = find("stageFinished", Some("render"));
    b.render = rendered.and_then(|(_, v)| seconds(v));
    let applying = find("stageStarted", Some("apply"));
    if let (Some((r, _)), Some((a, _))) = (rendered, applying) {
        b.prepare = Some(a.saturating_duration_since(*r));
    }
    b.apply = applying.map(|(a, _)| times.seen.saturating_duration_since(*a));
    b.after = find("runFinished", None).map(|(f, _)| f.saturating_duration_since(times.seen));
    b
}

/// One stage's duration in a [`Breakdown`].
type StageOf = fn(&Breakdown) -> Option<Duration>;

/// The median of the values present, as text.
fn median_of(values: impl Iterator<Item = Option<Duration>>) -> String {
    let mut v: Vec<Duration> = values.flatten().collect();
    if v.is_empty() {
        return "n/a".into();
    }
    let n = v.len();
    format!("{:.0?} ({n})", super::median(&mut v))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn run_async(headway: &Path, params: &Params) -> anyhow::Result<()> {
    let config = super::bench_config("api", 19443, params.allow_shared_cluster).await?;
    let client = kube::Client::try_from(config)?;
    let dir = tempfile::tempdir()?;
    let work = dir.path().join("work");
    let bare = dir.path().join("srv/bench.git");
    init_pair(&work, &bare)?;
    for i in 0..params.objects {
        std::fs::write(
            work.join(format!("config-{i}.yaml")),
            configmap(i, "initial"),
        )?;
    }
    commit_all(&work, &bare, "initial")?;
    let daemon = GitDaemon::start(&dir.path().join("srv"))?;
    let repo_url = daemon.url("bench.git");

    headway_tests::install_crd(&client, &GitSync::crd()).await?;
    super::cluster::apply_namespace(&client, NAMESPACE).await?;

    let secret_file = dir.path().join("webhook-secret");
    std::fs::write(&secret_file, SECRET)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let address: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let log = dir.path().join("controller.log");
    let mut controller = Guarded::spawn(
        Command::new(headway)
            .args([
                "controller",
                "--namespace",
                NAMESPACE,
                "--lease-namespace",
                NAMESPACE,
                "--identity",
                "bench",
            ])
            .arg(format!("--http-address={address}"))
            .arg("--webhook-secret-file")
            .arg(&secret_file)
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?),
    )
    .context("starting headway controller")?;

    let api: Api<GitSync> = Api::namespaced(client.clone(), NAMESPACE);
    let obj = super::cluster::gitsync(
        SYNC,
        NAMESPACE,
        json!({"repository": {"url": repo_url}, "interval": "10m", "timeout": "10m"}),
    )?;
    api.create(&PostParams::default(), &obj).await?;
    let created = Instant::now();
    let deadline = created + Duration::from_secs(600);
    loop {
        if let Some(status) = controller.try_wait()? {
            bail!(
                "the controller exited with {status}:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        let ready = super::cluster::is_ready(&api.get(SYNC).await?);
        if ready && http(address, "GET", "/readyz", &[], b"").await.ok() == Some(200) {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the GitSync is not Ready after 10 min"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "GitSync Ready ({} objects) after {:.1?}",
        params.objects,
        created.elapsed()
    );

    // 1. Status under load while a rebuild runs.
    let handle = headway_controller::Handle::new(client.clone());
    let rebuild_id = handle.rebuild(NAMESPACE, SYNC).await?;
    let path = format!("/api/v1/syncs/{NAMESPACE}/{SYNC}");
    let stop_at = Instant::now() + Duration::from_secs(params.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..params.clients {
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            while Instant::now() < stop_at {
                let t = Instant::now();
                match http(address, "GET", &path, &[], b"").await {
                    Ok(200) => latencies.push(t.elapsed()),
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    latencies.sort();
    ensure!(
        !latencies.is_empty(),
        "no successful status request ({errors} errors)"
    );
    let rebuilt = api.get(SYNC).await?;
    let rebuild = rebuilt.status.as_ref().and_then(|s| s.last_rebuild.clone());
    let handled = rebuilt
        .status
        .as_ref()
        .and_then(|s| s.last_handled_rebuild_request.clone());
    let rebuild_text = match (&rebuild, handled.as_deref() == Some(rebuild_id.as_str())) {
        (Some(r), true) => format!(
            "a rebuild of {} objects ran during the window ({}, {})",
            params.objects, r.duration, r.result
        ),
        _ => "the rebuild had not finished by the end of the window".into(),
    };

    // 2. Webhook to applied.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let (seen_tx, seen_rx) = tokio::sync::watch::channel((String::new(), Instant::now()));
    let seen_tx = Arc::new(seen_tx);
    let watch_cfg = watcher::Config::default().fields("metadata.name=config-0");
    let watch = tokio::spawn({
        let seen_tx = seen_tx.clone();
        async move {
            let mut stream = watcher(cms, watch_cfg).applied_objects().boxed();
            while let Some(Ok(cm)) = stream.next().await {
                let value = cm
                    .data
                    .and_then(|d| d.get("value").cloned())
                    .unwrap_or_default();
                let _ = seen_tx.send((value, Instant::now()));
            }
        }
    });
    let arrivals: Arrivals = Arc::default();
    let recorder = tokio::spawn(record_events(address, arrivals.clone()));
    let body = serde_json::to_vec(&json!({
        "object_kind": "push", "ref": "refs/heads/main",
        "project": {"git_http_url": repo_url},
    }))?;
    let mut push_latencies = Vec::new();
    let mut push_times = Vec::new();
    for i in 0..params.pushes {
        let value = format!("push-{i}");
        std::fs::write(work.join("config-0.yaml"), configmap(0, &value))?;
        commit_all(&work, &bare, &value)?;
        let t0 = Instant::now();
        let status = http(
            address,
            "POST",
            "/hooks/gitlab",
            &[
                ("X-Gitlab-Event", "Push Hook"),
                ("X-Gitlab-Token", SECRET),
                ("Content-Type", "application/json"),
            ],
            &body,
        )
        .await?;
        let answered = Instant::now();
        ensure!(status == 202, "webhook answered {status}");
        let mut rx = seen_rx.clone();
        let at = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                {
                    let (v, at) = &*rx.borrow_and_update();
                    if *v == value {
                        return *at;
                    }
                }
                if rx.changed().await.is_err() {
                    return Instant::now();
                }
            }
        })
        .await
        .with_context(|| format!("push {i}: the new value was not applied within 60 s"))?;
        push_latencies.push(at.saturating_duration_since(t0));
        push_times.push(PushTimes {
            sent: t0,
            answered,
            seen: at,
        });
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    watch.abort();
    recorder.abort();
    let events = arrivals.lock().expect("arrivals").clone();
    let breakdowns: Vec<Breakdown> = push_times
        .iter()
        .enumerate()
        .map(|(i, t)| breakdown(t, push_times.get(i + 1).map(|n| n.sent), &events))
        .collect();
    push_latencies.sort();

    println!();
    println!("## api: status throughput and webhook-to-applied latency");
    println!();
    println!(
        "`headway controller` ({}) with its HTTP API on loopback, one GitSync of {} ConfigMaps:",
        match &params.headway {
            Some(path) => path.display().to_string(),
            None if params.debug => "debug build".into(),
            None => "release".into(),
        },
        params.objects
    );
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| `GET /api/v1/syncs/{{ns}}/{{name}}`, {} concurrent clients, {:.1?} | {} requests, {:.0}/s, {errors} errors |",
        params.clients,
        elapsed,
        latencies.len(),
        latencies.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "| status latency p50 / p99 | {:.1?} / {:.1?} |",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    println!("| during the window | {rebuild_text} |");
    println!(
        "| webhook to applied, {} pushes: p50 / p90 / max | {:.0?} / {:.0?} / {:.0?} |",
        push_latencies.len(),
        percentile(&push_latencies, 0.5),
        percentile(&push_latencies, 0.9),
        push_latencies.last().copied().unwrap_or_default()
    );
    println!();
    println!(
        "Where the time of a push goes (median over the pushes, from the progress events of \
         `GET /api/v1/events`; in parentheses the pushes the stage was seen in):"
    );
    println!();
    println!("| stage | median |");
    println!("|---|---|");
    let rows: [(&str, StageOf); 7] = [
        (
            "webhook POST to 202 (signature, match, annotation PATCH)",
            |b| Some(b.webhook),
        ),
        (
            "202 to run started (watch, queue, reconcile read, \"started\" status write)",
            |b| b.pickup,
        ),
        ("fetch", |b| b.fetch),
        ("render", |b| b.render),
        (
            "render done to apply started (prepare, inventory read)",
            |b| b.prepare,
        ),
        ("apply started to new value seen by the watch", |b| b.apply),
        (
            "new value seen to run finished (inventory, wait, status; not in the latency)",
            |b| b.after,
        ),
    ];
    for (name, f) in rows {
        println!("| {name} | {} |", median_of(breakdowns.iter().map(f)));
    }
    println!();
    let p50 = percentile(&push_latencies, 0.5);
    println!(
        "Target: webhook-to-applied p50 at most 250 ms: {}",
        if p50 <= Duration::from_millis(250) {
            "met"
        } else {
            "NOT met"
        }
    );

    api.delete(SYNC, &DeleteParams::default()).await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while api.get_opt(SYNC).await?.is_some() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(controller);
    drop(daemon);
    Ok(())
}
