//! The agent's health checks of its local service backends
//! (docs/health-checks.md).
//!
//! Every [`ProberConfig::period`] each target is probed once, with
//! [`ProberConfig::timeout`]: a TCP connect, or an HTTP `GET` whose status
//! must be 2xx or 3xx. A target goes down after [`ProberConfig::fall`]
//! consecutive failures and up again after [`ProberConfig::rise`]
//! successes; a new target has no verdict until one of the two happens.
//!
//! Probes leave from a socket bound to the gateway address (169.254.1.1,
//! [`netfabric_common::resolver::RESOLVER_ADDR`], which is on every host)
//! with `SO_MARK = `[`HEALTH_PROBE_MARK`]: `to_container` lets exactly such
//! packets reach a container of any owner (only a process with
//! `CAP_NET_ADMIN` can set a mark, and traffic routed in from outside never
//! carries it). The socket closes with an RST (`SO_LINGER 0`), so five
//! probes a second per target leave no `TIME_WAIT` behind on either side.
//!
//! All probes of a round run concurrently on the agent's tokio runtime, at
//! most [`ProberConfig::max_in_flight`] at a time: no thread per target,
//! and a round never lasts much more than one timeout.
//!
//! [`run`] ties a prober to a [`HealthBoard`]: it publishes the host's
//! report when a verdict changes and every [`REPORT_HEARTBEAT`] otherwise
//! (which renews an etcd lease or a file report's age), from a task of its
//! own so that the store's latency never delays a probe.

use std::{
    collections::BTreeMap,
    io,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    sync::Arc,
    time::Duration,
};

use futures::StreamExt as _;
use netfabric_common::{resolver::RESOLVER_ADDR, service::HEALTH_PROBE_MARK};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::{
    health::{Check, HealthReport, ProbeTarget, REPORT_HEARTBEAT, TargetHealth, now_ms},
    store::health_board::HealthBoard,
};

/// How the prober probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProberConfig {
    /// Time between the starts of two rounds.
    pub period: Duration,
    /// Longest wait for one probe (connect, and for HTTP the status line).
    pub timeout: Duration,
    /// Consecutive failures that take a target down.
    pub fall: u32,
    /// Consecutive successes that bring it up.
    pub rise: u32,
    /// Probes in flight at once.
    pub max_in_flight: usize,
    /// The address probes leave from; `None`: whatever the route picks.
    pub source: Option<Ipv4Addr>,
    /// `SO_MARK` of the probes' sockets; `None`: no mark.
    pub mark: Option<u32>,
}

impl Default for ProberConfig {
    /// The agent's: every 200 ms, 200 ms timeout, down after 2 failures, up
    /// after 1 success, from the gateway address with the probes' mark.
    fn default() -> Self {
        ProberConfig {
            period: Duration::from_millis(200),
            timeout: Duration::from_millis(200),
            fall: 2,
            rise: 1,
            max_in_flight: 256,
            source: Some(Ipv4Addr::from(RESOLVER_ADDR)),
            mark: Some(HEALTH_PROBE_MARK),
        }
    }
}

/// Why one probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("making the probe's socket: {0}")]
    Socket(#[source] io::Error),
    #[error("connecting: {0}")]
    Connect(#[source] io::Error),
    #[error("sending the request: {0}")]
    Send(#[source] io::Error),
    #[error("reading the answer: {0}")]
    Receive(#[source] io::Error),
    #[error("the answer is not HTTP: {0:?}")]
    NotHttp(String),
    #[error("HTTP status {0}")]
    Status(u16),
}

/// One target's probe history.
#[derive(Debug, Clone, Default)]
struct TargetState {
    up: Option<bool>,
    successes: u32,
    failures: u32,
    reason: Option<String>,
}

impl TargetState {
    /// Counts one probe; whether the verdict changed.
    fn record(&mut self, result: Result<(), ProbeError>, config: &ProberConfig) -> bool {
        let before = self.up;
        match result {
            Ok(()) => {
                self.failures = 0;
                self.successes = self.successes.saturating_add(1);
                if self.successes >= config.rise {
                    self.up = Some(true);
                    self.reason = None;
                }
            }
            Err(e) => {
                self.successes = 0;
                self.failures = self.failures.saturating_add(1);
                self.reason = Some(e.to_string());
                if self.failures >= config.fall {
                    self.up = Some(false);
                }
            }
        }
        self.up != before
    }
}

/// Probes a set of targets round after round and keeps their verdicts.
#[derive(Debug)]
pub struct Prober {
    config: ProberConfig,
    states: BTreeMap<ProbeTarget, TargetState>,
}

impl Prober {
    pub fn new(config: ProberConfig) -> Prober {
        Prober {
            config,
            states: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &ProberConfig {
        &self.config
    }

    /// Probes every target once, concurrently; forgets targets no longer
    /// given. Whether any verdict changed (or a target with one went away).
    pub async fn round(&mut self, targets: &[ProbeTarget]) -> bool {
        let given: std::collections::BTreeSet<&ProbeTarget> = targets.iter().collect();
        let mut changed = false;
        self.states.retain(|t, s| {
            let keep = given.contains(t);
            changed |= !keep && s.up.is_some();
            keep
        });
        let config = &self.config;
        let results: Vec<(ProbeTarget, Result<(), ProbeError>)> =
            futures::stream::iter(targets.iter().cloned())
                .map(|t| async move {
                    let r = probe(&t, config).await;
                    (t, r)
                })
                .buffer_unordered(config.max_in_flight.max(1))
                .collect()
                .await;
        for (target, result) in results {
            if let Err(e) = &result {
                tracing::debug!(backend = %target.backend, port = target.port, error = %e, "health probe failed");
            }
            let state = self.states.entry(target.clone()).or_default();
            if state.record(result, &self.config) {
                changed = true;
                tracing::info!(
                    backend = %target.backend,
                    port = target.port,
                    check = %target.check,
                    up = state.up,
                    reason = state.reason.as_deref().unwrap_or(""),
                    "backend health changed"
                );
            }
        }
        changed
    }

    /// The verdicts as `host`'s report (targets without a verdict left out).
    pub fn report(&self, host: &str) -> HealthReport {
        HealthReport {
            host: host.to_owned(),
            at_ms: now_ms(),
            targets: self
                .states
                .iter()
                .filter_map(|(t, s)| {
                    Some(TargetHealth {
                        backend: t.backend,
                        port: t.port,
                        check: t.check.clone(),
                        up: s.up?,
                        reason: if s.up == Some(false) {
                            s.reason.clone()
                        } else {
                            None
                        },
                    })
                })
                .collect(),
        }
    }
}

/// The probe's socket: bound to the source, marked, closing with an RST.
fn probe_socket(config: &ProberConfig) -> io::Result<tokio::net::TcpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM.cloexec(),
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    if let Some(mark) = config.mark {
        socket.set_mark(mark)?;
    }
    // No TIME_WAIT: a probe that is done has nothing left to say.
    socket.set_linger(Some(Duration::ZERO))?;
    if let Some(source) = config.source {
        socket.bind(&SocketAddr::V4(SocketAddrV4::new(source, 0)).into())?;
    }
    Ok(tokio::net::TcpSocket::from_std_stream(socket.into()))
}

/// Probes `target` once: `Ok` when healthy.
pub async fn probe(target: &ProbeTarget, config: &ProberConfig) -> Result<(), ProbeError> {
    match tokio::time::timeout(config.timeout, probe_untimed(target, config)).await {
        Ok(r) => r,
        Err(_) => Err(ProbeError::Timeout(config.timeout)),
    }
}

async fn probe_untimed(target: &ProbeTarget, config: &ProberConfig) -> Result<(), ProbeError> {
    let socket = probe_socket(config).map_err(ProbeError::Socket)?;
    let addr = SocketAddr::V4(SocketAddrV4::new(target.backend, target.port));
    let mut stream = socket.connect(addr).await.map_err(ProbeError::Connect)?;
    let Check::Http { path } = &target.check else {
        return Ok(());
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: netfabric-health\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n",
        target.backend, target.port
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(ProbeError::Send)?;
    // The status line is all we need: read until its end (or 512 bytes).
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !head.contains(&b'\n') && head.len() < 512 {
        let n = stream.read(&mut buf).await.map_err(ProbeError::Receive)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let status = http_status(&head)?;
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(ProbeError::Status(status))
    }
}

/// The status code of an HTTP/1.x status line at the start of `head`.
fn http_status(head: &[u8]) -> Result<u16, ProbeError> {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = String::from_utf8_lossy(&head[..line_end]);
    let line = line.trim_end();
    let not_http = || ProbeError::NotHttp(line.chars().take(80).collect());
    let mut words = line.split(' ');
    let version = words.next().ok_or_else(not_http)?;
    if !version.starts_with("HTTP/1.") {
        return Err(not_http());
    }
    let code = words.next().ok_or_else(not_http)?;
    if code.len() != 3 {
        return Err(not_http());
    }
    code.parse().map_err(|_| not_http())
}

/// Probes the targets `targets` holds (updated by the agent as its local
/// backends change) and publishes `host`'s report on `board`, until the
/// future is dropped.
///
/// Publishing is a task of its own, fed the latest report: a slow or
/// unreachable store never delays a probe round, and a publication that
/// failed is retried with the report current by then (a verdict that
/// changed meanwhile is never lost, only the ones it superseded).
pub async fn run(
    host: String,
    config: ProberConfig,
    mut targets: tokio::sync::watch::Receiver<Vec<ProbeTarget>>,
    board: Arc<dyn HealthBoard>,
) {
    let mut prober = Prober::new(config);
    let (latest, reports) = tokio::sync::watch::channel(None::<HealthReport>);
    let publisher = tokio::spawn(publish(reports, board));
    // Stops the publisher when this future is dropped.
    struct Abort(tokio::task::JoinHandle<()>);
    impl Drop for Abort {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _publisher = Abort(publisher);
    let mut tick = tokio::time::interval(prober.config().period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let current = targets.borrow_and_update().clone();
        prober.round(&current).await;
        let report = prober.report(&host);
        latest.send_if_modified(|last| {
            let changed = last.as_ref().is_none_or(|l| !l.same_verdicts(&report));
            if changed {
                *last = Some(report);
            }
            changed
        });
    }
}

/// Publishes each new report, and the last one again every
/// [`REPORT_HEARTBEAT`]; retries a failed publication after a pause.
async fn publish(
    mut reports: tokio::sync::watch::Receiver<Option<HealthReport>>,
    board: Arc<dyn HealthBoard>,
) {
    const RETRY: Duration = Duration::from_millis(500);
    let mut wait = REPORT_HEARTBEAT;
    loop {
        // A new report, or the heartbeat (timeout); the prober gone: stop.
        if let Ok(Err(_)) = tokio::time::timeout(wait, reports.changed()).await {
            return;
        }
        let Some(mut report) = reports.borrow_and_update().clone() else {
            continue;
        };
        // A heartbeat says "still current" with a new time.
        report.at_ms = now_ms();
        let board = board.clone();
        wait = match tokio::task::spawn_blocking(move || board.publish(&report)).await {
            Ok(Ok(())) => REPORT_HEARTBEAT,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "publishing the health report failed; retrying");
                RETRY
            }
            Err(e) => {
                tracing::error!(error = %e, "the health report's publication panicked");
                RETRY
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> ProberConfig {
        ProberConfig {
            period: Duration::from_millis(50),
            timeout: Duration::from_millis(500),
            source: None,
            mark: None,
            ..ProberConfig::default()
        }
    }

    #[test]
    fn status_lines() {
        assert_eq!(http_status(b"HTTP/1.1 204 No Content\r\n").unwrap(), 204);
        assert_eq!(http_status(b"HTTP/1.0 302 Found\r\n").unwrap(), 302);
        assert!(matches!(
            http_status(b"SSH-2.0-OpenSSH\r\n"),
            Err(ProbeError::NotHttp(_))
        ));
        assert!(http_status(b"HTTP/1.1 2000 x").is_err());
        assert!(http_status(b"").is_err());
    }

    #[test]
    fn verdicts_fall_after_two_failures_and_rise_after_one_success() {
        let config = ProberConfig::default();
        let mut s = TargetState::default();
        let fail = || Err(ProbeError::Status(500));
        assert!(!s.record(fail(), &config), "one failure: no verdict yet");
        assert_eq!(s.up, None);
        assert!(s.record(fail(), &config));
        assert_eq!(s.up, Some(false));
        assert!(s.record(Ok(()), &config));
        assert_eq!(s.up, Some(true));
        assert!(!s.record(fail(), &config), "one failure keeps it up");
        assert!(!s.record(Ok(()), &config));
        assert!(!s.record(fail(), &config));
        assert!(s.record(fail(), &config));
        assert_eq!(s.up, Some(false));
    }

    /// A one-shot HTTP server on loopback answering every request `status`.
    async fn http_server(status: &'static str) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = s
                        .write_all(
                            format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
                        )
                        .await;
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn probes_judge_tcp_and_http_on_loopback() {
        let lo = Ipv4Addr::LOCALHOST;
        let ok = http_server("200 OK").await;
        let redirect = http_server("301 Moved Permanently").await;
        let broken = http_server("503 Service Unavailable").await;
        // A port nothing listens on: a free one, closed again.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let http = |port| ProbeTarget {
            backend: lo,
            port,
            check: Check::Http {
                path: "/healthz".into(),
            },
        };
        let tcp = |port| ProbeTarget {
            backend: lo,
            port,
            check: Check::Tcp,
        };
        let config = local();
        assert!(probe(&http(ok), &config).await.is_ok());
        assert!(probe(&http(redirect), &config).await.is_ok());
        assert!(matches!(
            probe(&http(broken), &config).await,
            Err(ProbeError::Status(503))
        ));
        assert!(
            probe(&tcp(broken), &config).await.is_ok(),
            "TCP only connects"
        );
        assert!(matches!(
            probe(&tcp(closed), &config).await,
            Err(ProbeError::Connect(_))
        ));

        let targets = vec![http(ok), http(broken), tcp(closed)];
        let mut prober = Prober::new(config);
        prober.round(&targets).await;
        let first = prober.report("h1");
        assert_eq!(
            first.targets.len(),
            1,
            "only the success has a verdict: {first:?}"
        );
        assert!(prober.round(&targets).await);
        let report = prober.report("h1");
        let up: Vec<(u16, bool)> = report.targets.iter().map(|t| (t.port, t.up)).collect();
        let mut expected = vec![(ok, true), (broken, false), (closed, false)];
        expected.sort();
        let mut up_sorted = up.clone();
        up_sorted.sort();
        assert_eq!(up_sorted, expected);
        assert!(report.targets.iter().all(|t| t.up || t.reason.is_some()));
        // A target no longer given is forgotten.
        assert!(prober.round(&targets[..1]).await);
        assert_eq!(prober.report("h1").targets.len(), 1);
    }
}
