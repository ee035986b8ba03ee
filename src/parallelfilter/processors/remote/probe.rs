// SPDX-License-Identifier: MPL-2.0
//! Finding out whether a server can take requests: readiness of the
//! server and of the model, what the server supports and, when the model
//! is missing, why. One probe loop per server at a time, with a bounded
//! backoff, until the server is up.
//!
//! A server whose request fails becomes suspect and is probed at once; a
//! failed probe marks it down (or without the model) and it is probed
//! again in the background.

use std::sync::{Arc, Weak};
use std::time::Duration;

use hyper::StatusCode;

use super::Inner;
use super::http::{Unanswered, refused_credentials};
use super::protocol::{self, IndexEntry};
use super::servers::{Health, PROBE_BACKOFF_MAX, PROBE_BACKOFF_MIN, ServerInfo};

/// Bound of one readiness or metadata request.
pub(super) const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a probe failed, and the health it leaves the server in.
pub(super) struct ProbeFailure {
    pub health: Health,
    pub why: String,
    /// The TLS handshake failed, for this reason.
    pub tls: Option<String>,
}

impl ProbeFailure {
    pub(super) fn down(why: String) -> Self {
        ProbeFailure {
            health: Health::Down,
            why,
            tls: None,
        }
    }
}

impl From<Unanswered> for ProbeFailure {
    fn from(e: Unanswered) -> Self {
        ProbeFailure {
            tls: e.tls,
            ..ProbeFailure::down(e.msg)
        }
    }
}

impl Inner {
    /// Readiness of the server and the model, then what the server
    /// supports and the model's input name.
    async fn probe(&self, server: usize) -> Result<ServerInfo, ProbeFailure> {
        if let Some(grpc) = self.grpc(server) {
            let url = self.servers.url(server);
            return grpc.probe(&self.model, url, PROBE_TIMEOUT).await;
        }
        let path = &self.model_path;
        let ready = self
            .http
            .get_json(&self.url(server, protocol::SERVER_READY), PROBE_TIMEOUT)
            .await?;
        if let Some(why) = refused_credentials(ready.status) {
            return Err(ProbeFailure::down(why));
        }
        if !ready.status.is_success() {
            return Err(ProbeFailure::down(format!(
                "server not ready ({})",
                ready.status
            )));
        }
        let ready = self
            .http
            .get_json(
                &self.url(server, &protocol::model_ready(path)),
                PROBE_TIMEOUT,
            )
            .await?;
        // Credentials may be checked per model.
        if let Some(why) = refused_credentials(ready.status) {
            return Err(ProbeFailure::down(why));
        }
        if !ready.status.is_success() {
            return Err(ProbeFailure {
                health: Health::NoModel,
                why: self.model_unready(server, ready.status).await,
                tls: None,
            });
        }
        let binary = match self
            .http
            .get_json(&self.url(server, protocol::SERVER_METADATA), PROBE_TIMEOUT)
            .await?
        {
            r if r.status.is_success() => r.json.as_ref().is_some_and(protocol::supports_binary),
            _ => false,
        };
        let input_name = match self
            .http
            .get_json(
                &self.url(server, &protocol::model_metadata(path)),
                PROBE_TIMEOUT,
            )
            .await
        {
            Ok(r) if r.status.is_success() => r.json.as_ref().and_then(protocol::first_input),
            _ => None,
        };
        Ok(ServerInfo { binary, input_name })
    }

    /// Why the model is not ready on a ready server: unknown there (with
    /// the models it serves, from the repository index when it has one),
    /// or known but not ready.
    async fn model_unready(&self, server: usize, ready: StatusCode) -> String {
        let (model, url) = (&self.model, self.servers.url(server));
        if let Some(index) = self.repository_index(server).await {
            // One entry per version: a ready one means the index cannot
            // say more than the readiness status.
            let mut versions = index.iter().filter(|m| m.name == *model);
            return match (versions.clone().any(IndexEntry::ready), versions.next()) {
                (_, None) => format!("model '{model}' not found on {url} ({})", serves(&index)),
                (false, Some(m)) => {
                    format!("model '{model}' not ready on {url} ({})", m.state_text())
                }
                (true, Some(_)) => format!("model '{model}' not ready on {url} ({ready})"),
            };
        }
        // No index (KServe, OpenVINO): the metadata tells whether the
        // server knows the model (Triton answers 400 when it does not).
        let path = protocol::model_metadata(&self.model_path);
        match self
            .http
            .get_json(&self.url(server, &path), PROBE_TIMEOUT)
            .await
        {
            Ok(r) if r.status == StatusCode::NOT_FOUND || r.status == StatusCode::BAD_REQUEST => {
                format!("model '{model}' not found on {url}")
            }
            _ => format!("model '{model}' not ready on {url} ({ready})"),
        }
    }

    /// The models a server has; `None` when it does not answer an index.
    async fn repository_index(&self, server: usize) -> Option<Vec<IndexEntry>> {
        let url = self.url(server, protocol::REPOSITORY_INDEX);
        let index = self.http.post_json(&url, b"{}", PROBE_TIMEOUT).await?;
        protocol::parse_index(&index)
    }

    /// Probes `server` until it is up, then marks it so; one probe per
    /// server at a time, ended when the processor goes away.
    pub(super) fn spawn_probe(this: &Arc<Inner>, server: usize, first_wait: Duration) {
        let weak: Weak<Inner> = Arc::downgrade(this);
        let mut closed = this.closed.subscribe();
        this.rt.spawn(async move {
            let mut wait = first_wait;
            loop {
                if !wait.is_zero() {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = closed.wait_for(|c| *c) => return,
                    }
                }
                let Some(inner) = weak.upgrade() else { return };
                let result = tokio::select! {
                    r = inner.probe(server) => r,
                    _ = closed.wait_for(|c| *c) => return,
                };
                let url = inner.servers.url(server);
                match result {
                    Ok(info) => {
                        inner.log(
                            gst::DebugLevel::Info,
                            format_args!(
                                "{url} is up (binary tensors: {}, input: {:?})",
                                info.binary, info.input_name
                            ),
                        );
                        inner.servers.up(server, info);
                        inner.tls_fixed(server);
                        return;
                    }
                    Err(ProbeFailure { health, why, tls }) => {
                        if let Some(reason) = tls {
                            inner.report_tls(server, &reason);
                        }
                        let was = inner.servers.probe_failed(server, health, why.clone());
                        let msg = match health {
                            Health::NoModel => why,
                            _ => format!("{url} is down: {why}"),
                        };
                        if was != health {
                            inner.log(gst::DebugLevel::Warning, format_args!("{msg}"));
                            inner.servers.notify_changed();
                        } else {
                            inner.log(gst::DebugLevel::Debug, format_args!("{msg} (again)"));
                        }
                    }
                }
                wait = (wait * 2).clamp(PROBE_BACKOFF_MIN, PROBE_BACKOFF_MAX);
            }
        });
    }

    /// A request to `server` failed: it is suspect until a probe (at once,
    /// or later when its requests keep failing) decides.
    pub(super) fn mark_suspect(this: &Arc<Inner>, server: usize, why: &str) {
        if let Some(wait) = this.servers.suspect(server, why) {
            this.log(
                gst::DebugLevel::Info,
                format_args!("{} suspect: {why}", this.servers.url(server)),
            );
            Inner::spawn_probe(this, server, wait);
        }
    }
}

/// The ready models of an index, as "it serves: a, b", at most 10 named.
fn serves(index: &[IndexEntry]) -> String {
    const SHOWN: usize = 10;
    let mut names: Vec<&str> = Vec::new();
    for m in index.iter().filter(|m| m.ready()) {
        if !names.contains(&m.name.as_str()) {
            names.push(&m.name);
        }
    }
    match names.len() {
        0 => "it serves no model".into(),
        n if n > SHOWN => format!(
            "it serves: {}, … {} more",
            names[..SHOWN].join(", "),
            n - SHOWN
        ),
        _ => format!("it serves: {}", names.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_models_are_listed_once_and_bounded() {
        let entry = |name: &str, state: Option<&str>| IndexEntry {
            name: name.into(),
            state: state.map(String::from),
            reason: None,
        };
        let index = [
            entry("a", Some("READY")),
            entry("a", Some("READY")),
            entry("b", Some("UNAVAILABLE")),
            entry("c", None),
        ];
        assert_eq!(serves(&index), "it serves: a, c");
        assert_eq!(serves(&index[2..3]), "it serves no model");
        let many: Vec<_> = (0..12).map(|i| entry(&i.to_string(), None)).collect();
        assert_eq!(
            serves(&many),
            "it serves: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, … 2 more"
        );
    }
}
