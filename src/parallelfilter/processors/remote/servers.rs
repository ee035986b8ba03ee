// SPDX-License-Identifier: MPL-2.0
//! The servers' shared state (health, requests in flight, concurrency
//! limit, what each supports, counters) and the leasing of request slots:
//! a request goes to the ready server with the smallest share of its
//! limit in flight.

use std::cmp::Ordering;
use std::sync::atomic::{self, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::config::PerServer;
use super::limit::{Change, Limit};
use super::protocol::DEFAULT_INPUT_NAME;
use crate::engine::lock;

/// Backoff between probes of a server that is down.
pub(super) const PROBE_BACKOFF_MIN: Duration = Duration::from_millis(50);
pub(super) const PROBE_BACKOFF_MAX: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Health {
    /// Not probed yet: requests wait for the first probe.
    Unknown,
    Up,
    /// A request failed and a probe decides: requests wait for it.
    Suspect,
    /// A probe failed.
    Down,
    /// The server is ready but lacks the model, or the model is not ready
    /// there: probed again like a server that is down.
    NoModel,
}

#[derive(Debug, Default, Clone)]
struct ServerStats {
    requests: u64,
    failures: u64,
    latency_total: Duration,
    latency_max: Duration,
    successes: u64,
}

#[derive(Debug)]
struct ServerState {
    health: Health,
    in_flight: usize,
    /// How many requests it may have in flight.
    limit: Limit,
    probing: bool,
    /// `GET /v2` listed `binary_tensor_data`.
    binary: bool,
    /// The model's first input, from its metadata.
    input_name: Option<String>,
    /// Why the last probe or request failed: the error when all are down.
    /// With `NoModel`, a whole sentence naming the model and the server.
    last_error: Option<String>,
    /// Failed requests since the last success: delays the probe of a
    /// server that passes probes but fails requests.
    streak: u32,
    stats: ServerStats,
}

/// What a successful probe learnt about a server.
#[derive(Debug)]
pub(super) struct ServerInfo {
    /// It takes the binary tensor data extension.
    pub binary: bool,
    /// The model's first input name, when its metadata gives one.
    pub input_name: Option<String>,
}

pub(super) struct Servers {
    /// As configured, without a trailing slash: what the meta reports.
    urls: Vec<String>,
    state: Mutex<Vec<ServerState>>,
    /// A slot was freed, a limit rose or a server changed health.
    changed: Notify,
    /// Requests waiting for a slot: a full server with requests waiting
    /// may take more.
    waiting: AtomicUsize,
}

/// Counts a request waiting for a slot while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, atomic::Ordering::Relaxed);
        Waiting(n)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, atomic::Ordering::Relaxed);
    }
}

/// `a` has a smaller share of its limit in flight than `b`.
fn less_loaded(a: &ServerState, b: &ServerState) -> Ordering {
    let (la, lb) = (a.limit.current(), b.limit.current());
    (a.in_flight * lb)
        .cmp(&(b.in_flight * la))
        .then(a.in_flight.cmp(&b.in_flight))
}

/// A request slot on a server; freed on drop, so a cancelled frame (flush)
/// releases it too.
pub(super) struct Slot {
    servers: Arc<Servers>,
    pub server: usize,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(s) = lock(&self.servers.state).get_mut(self.server) {
            s.in_flight = s.in_flight.saturating_sub(1);
        }
        self.servers.changed.notify_waiters();
    }
}

/// A slot leased for one attempt, with what the request needs to know
/// about its server.
pub(super) struct Lease {
    pub slot: Slot,
    /// The server takes binary tensors.
    pub binary: bool,
    /// The name the input tensor goes by.
    pub input_name: String,
}

impl Servers {
    /// `urls`, each not probed yet (its first probe is being started).
    pub(super) fn new(urls: Vec<String>, per_server: PerServer) -> Self {
        let state = urls
            .iter()
            .map(|_| ServerState {
                health: Health::Unknown,
                in_flight: 0,
                limit: match per_server {
                    PerServer::Fixed(n) => Limit::Fixed(n),
                    PerServer::Adaptive { max } => Limit::adaptive(max),
                },
                probing: true,
                binary: false,
                input_name: None,
                last_error: None,
                streak: 0,
                stats: ServerStats::default(),
            })
            .collect();
        Servers {
            urls,
            state: Mutex::new(state),
            changed: Notify::new(),
            waiting: AtomicUsize::new(0),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.urls.len()
    }

    pub(super) fn url(&self, server: usize) -> &str {
        &self.urls[server]
    }

    /// Wakes the requests waiting for a usable server.
    pub(super) fn notify_changed(&self) {
        self.changed.notify_waiters();
    }

    /// Waits for a slot on the ready server with the smallest share of its
    /// limit in flight, preferring servers this frame has not tried. Fails
    /// at once when every server is down or lacks the model.
    pub(super) async fn acquire(
        self: &Arc<Self>,
        deadline: Instant,
        tried: &[usize],
    ) -> Result<Lease, String> {
        let mut waiting = None;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = lock(&self.state);
                let best = st
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.health == Health::Up && s.in_flight < s.limit.current())
                    .min_by(|(i, a), (j, b)| {
                        tried
                            .contains(i)
                            .cmp(&tried.contains(j))
                            .then_with(|| less_loaded(a, b))
                    })
                    .map(|(i, _)| i);
                if let Some(i) = best {
                    let s = &mut st[i];
                    s.in_flight += 1;
                    let input_name = s
                        .input_name
                        .clone()
                        .unwrap_or_else(|| DEFAULT_INPUT_NAME.to_string());
                    return Ok(Lease {
                        slot: Slot {
                            servers: self.clone(),
                            server: i,
                        },
                        binary: s.binary,
                        input_name,
                    });
                }
                if st.iter().all(|s| s.health == Health::Down) {
                    return Err(format!(
                        "all {} servers are down: {}",
                        st.len(),
                        self.unavailable(&st)
                    ));
                }
                // Each server says whether it is down or lacks the model.
                if st
                    .iter()
                    .all(|s| matches!(s.health, Health::Down | Health::NoModel))
                {
                    return Err(self.unavailable(&st));
                }
                waiting.get_or_insert_with(|| Waiting::new(&self.waiting));
            }
            if tokio::time::timeout_at(deadline.into(), notified)
                .await
                .is_err()
            {
                let st = lock(&self.state);
                return Err(format!(
                    "no server usable before the frame's deadline: {}",
                    self.unavailable(&st)
                ));
            }
        }
    }

    /// Why no server can take a request: each server's state and last error.
    fn unavailable(&self, st: &[ServerState]) -> String {
        self.urls
            .iter()
            .zip(st)
            .map(|(url, s)| {
                let state = match s.health {
                    Health::Unknown => "not probed yet",
                    Health::Up => "busy",
                    Health::Suspect => "being probed",
                    Health::Down => "down",
                    Health::NoModel => "without the model",
                };
                match (s.health, &s.last_error) {
                    (Health::NoModel, Some(e)) => e.clone(),
                    (_, Some(e)) => format!("{url} {state} ({e})"),
                    (_, None) => format!("{url} {state}"),
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// A probe found `server` up: it takes requests again.
    pub(super) fn up(&self, server: usize, info: ServerInfo) {
        let mut st = lock(&self.state);
        let s = &mut st[server];
        s.health = Health::Up;
        s.probing = false;
        s.binary = info.binary;
        s.input_name = info.input_name;
        s.last_error = None;
        drop(st);
        self.changed.notify_waiters();
    }

    /// A probe of `server` failed with `health`; returns the health it had.
    /// Its probe goes on.
    pub(super) fn probe_failed(&self, server: usize, health: Health, why: String) -> Health {
        let mut st = lock(&self.state);
        let s = &mut st[server];
        s.last_error = Some(why);
        std::mem::replace(&mut s.health, health)
    }

    /// A request to `server` failed: it is suspect until a probe decides.
    /// Returns when that probe should start, `None` when one is running.
    /// The wait grows while its requests keep failing.
    pub(super) fn suspect(&self, server: usize, why: &str) -> Option<Duration> {
        let mut st = lock(&self.state);
        let s = &mut st[server];
        if s.health == Health::Up {
            s.health = Health::Suspect;
        }
        s.last_error = Some(why.to_string());
        s.streak = s.streak.saturating_add(1);
        let wait = match s.streak {
            0 | 1 => Duration::ZERO,
            n => PROBE_BACKOFF_MIN
                .saturating_mul(1 << (n - 2).min(16))
                .min(PROBE_BACKOFF_MAX),
        };
        (!std::mem::replace(&mut s.probing, true)).then_some(wait)
    }

    /// A request goes to `server` (a lease may also end unused).
    pub(super) fn sending(&self, server: usize) {
        if let Some(s) = lock(&self.state).get_mut(server) {
            s.stats.requests += 1;
        }
    }

    /// A request to `server`, sent at `start`, succeeded at `now`; its slot
    /// is still held. Returns a change of the server's limit.
    pub(super) fn succeeded(&self, server: usize, start: Instant, now: Instant) -> Option<Change> {
        let elapsed = now.saturating_duration_since(start);
        let waiting = self.waiting.load(atomic::Ordering::Relaxed) > 0;
        let mut st = lock(&self.state);
        let s = &mut st[server];
        s.streak = 0;
        let change = s.limit.succeeded(start, now, s.in_flight, waiting);
        let stats = &mut s.stats;
        stats.successes += 1;
        stats.latency_total += elapsed;
        stats.latency_max = stats.latency_max.max(elapsed);
        drop(st);
        if change.is_some_and(|c| c.to > c.from) {
            self.changed.notify_waiters();
        }
        change
    }

    /// A request to `server` failed; `overload`: by a server fault or a
    /// timeout, which lowers its limit. Returns a change of that limit.
    pub(super) fn failed(&self, server: usize, overload: bool) -> Option<Change> {
        let mut st = lock(&self.state);
        let s = &mut st[server];
        s.stats.failures += 1;
        overload.then(|| s.limit.failed()).flatten()
    }

    /// One `server` structure per server, for the element's `stats`.
    pub(super) fn stats(&self) -> Vec<gst::Structure> {
        let st = lock(&self.state);
        self.urls
            .iter()
            .zip(st.iter())
            .map(|(url, x)| {
                let avg = x
                    .stats
                    .latency_total
                    .as_nanos()
                    .checked_div(u128::from(x.stats.successes))
                    .unwrap_or(0) as u64;
                gst::Structure::builder("server")
                    .field("url", url.as_str())
                    .field("up", x.health == Health::Up)
                    .field("in-flight", x.in_flight as u32)
                    .field("limit", x.limit.current() as u32)
                    .field("requests", x.stats.requests)
                    .field("failures", x.stats.failures)
                    .field("avg-latency", avg)
                    .field("max-latency", x.stats.latency_max.as_nanos() as u64)
                    .build()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    fn info() -> ServerInfo {
        ServerInfo {
            binary: true,
            input_name: None,
        }
    }

    #[test]
    fn leases_go_to_the_least_busy_untried_server() {
        let servers = Arc::new(Servers::new(
            vec!["http://a".into(), "http://b".into()],
            PerServer::Fixed(2),
        ));
        servers.up(0, info());
        servers.up(1, info());
        let deadline = Instant::now() + Duration::from_secs(1);
        rt().block_on(async {
            let first = servers.acquire(deadline, &[]).await.unwrap();
            assert_eq!(first.slot.server, 0);
            assert_eq!(first.input_name, DEFAULT_INPUT_NAME);
            assert_eq!(servers.acquire(deadline, &[]).await.unwrap().slot.server, 1);
            // Dropped above: b is free again, and a was tried.
            let retry = servers.acquire(deadline, &[0]).await.unwrap();
            assert_eq!(retry.slot.server, 1);
        });
    }

    #[test]
    fn a_lease_fails_at_once_when_every_server_is_down() {
        let servers = Arc::new(Servers::new(vec!["http://a".into()], PerServer::Fixed(1)));
        assert_eq!(
            servers.probe_failed(0, Health::Down, "refused".into()),
            Health::Unknown
        );
        let deadline = Instant::now() + Duration::from_secs(3600);
        let err = rt().block_on(servers.acquire(deadline, &[])).err().unwrap();
        assert_eq!(err, "all 1 servers are down: http://a down (refused)");
    }

    #[test]
    fn suspects_are_probed_once_with_growing_waits() {
        let servers = Servers::new(vec!["http://a".into()], PerServer::Fixed(1));
        servers.up(0, info());
        assert_eq!(servers.suspect(0, "500"), Some(Duration::ZERO));
        // The first probe still runs: no second one.
        assert_eq!(servers.suspect(0, "500"), None);
        servers.up(0, info());
        assert_eq!(servers.suspect(0, "500"), Some(PROBE_BACKOFF_MIN * 2));
    }
}
