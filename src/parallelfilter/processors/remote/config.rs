// SPDX-License-Identifier: MPL-2.0
//! The `remote` settings as the element hands them over, and their checks:
//! the server URLs and the model's path segment.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper::Uri;

use super::headers::ExtraHeaders;
use super::protocol;
use crate::analysis::SceneThreshold;
use crate::parallelfilter::Payload;

/// Upper bound applied to the `retries` property.
pub(super) const MAX_RETRIES: u32 = 1000;

#[derive(Clone, Debug)]
pub struct Config {
    pub servers: String,
    pub model: String,
    pub payload: Payload,
    pub retries: u32,
    /// Concurrent requests per server.
    pub per_server: PerServer,
    /// The element's `timeout`: the whole budget of a frame, retries included.
    pub timeout: LiveTimeout,
    pub scene_threshold: SceneThreshold,
    /// Sent with every request; its Debug shows no value.
    pub extra_headers: ExtraHeaders,
    /// CAs trusted for https servers besides the system's.
    pub tls_ca_file: Option<PathBuf>,
    /// The element's `batch-size`: in a context, the most frames one
    /// request of batches of several members may hold.
    pub batch_size: usize,
}

/// `max-requests-per-server`, resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PerServer {
    /// Exactly this many (at least 1).
    Fixed(usize),
    /// Adapted to each server's latency, between 1 and `max`.
    Adaptive { max: usize },
}

impl PerServer {
    /// The most a server may ever have in flight.
    pub(super) fn max(self) -> usize {
        match self {
            PerServer::Fixed(n) | PerServer::Adaptive { max: n } => n.max(1),
        }
    }
}

/// The `timeout` property shared with the running processor: a change in
/// PLAYING applies from the next frame on, as the engine's does.
#[derive(Debug, Clone, Default)]
pub struct LiveTimeout(Arc<AtomicU64>);

impl LiveTimeout {
    pub fn new(ns: u64) -> Self {
        LiveTimeout(Arc::new(AtomicU64::new(ns)))
    }

    pub fn set(&self, ns: u64) {
        self.0.store(ns, Ordering::Relaxed);
    }

    pub fn get(&self) -> Option<Duration> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }
}

/// Where requests go, from checked settings.
pub(super) struct Targets {
    /// The servers' base URLs, without a trailing slash.
    pub urls: Vec<String>,
    /// The model name as a path segment.
    pub model_path: String,
}

impl Config {
    /// Checks the servers and the model, and bounds `retries`.
    pub(super) fn check(&mut self) -> Result<Targets, gst::ErrorMessage> {
        // The property is a plain uint; more attempts than this per frame
        // make no sense and would overflow the attempt count.
        self.retries = self.retries.min(MAX_RETRIES);
        let urls = parse_servers(&self.servers).map_err(config_error)?;
        let model_path = model_segment(&self.model).map_err(config_error)?;
        for url in urls.iter().filter(|u| !is_grpc(u)) {
            let infer = format!("{url}{}", protocol::infer(&model_path));
            infer
                .parse::<Uri>()
                .map_err(|e| config_error(format!("'{infer}' is not a valid URL: {e}")))?;
        }
        Ok(Targets { urls, model_path })
    }
}

fn config_error(msg: String) -> gst::ErrorMessage {
    gst::error_msg!(gst::ResourceError::Settings, ("remote: {msg}"))
}

/// Parses `servers`: comma-separated `http(s)://host:port[/prefix]` and
/// `grpc(s)://host:port` URLs.
pub(super) fn parse_servers(servers: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for s in servers.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        // Credentials in a URL end up in logs and metas: refused, and
        // never repeated in the error.
        if has_user_info(s) {
            return Err(format!(
                "server '{}' has user info (user:password@) in its URL; send credentials \
                 with extra-headers instead",
                redact(s)
            ));
        }
        // The request paths are appended to the URL.
        if s.contains(['?', '#']) {
            return Err(format!(
                "server '{s}' has a query or fragment; give a base URL (http://host:port[/prefix])"
            ));
        }
        let url = s.trim_end_matches('/').to_string();
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("server '{s}' is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            // gRPC paths are the service's own; no usual port to assume.
            Some("grpc" | "grpcs") if uri.path() != "/" && !uri.path().is_empty() => {
                return Err(format!(
                    "server '{s}': a gRPC URL has no path (grpc://host:port)"
                ));
            }
            Some("grpc" | "grpcs") if uri.port().is_none() => {
                return Err(format!(
                    "server '{s}' has no port (grpc://host:port; Triton listens on 8001, \
                     MLServer on 8081)"
                ));
            }
            Some("grpc" | "grpcs") => {}
            Some(other) => {
                return Err(format!(
                    "server '{s}': scheme '{other}' is not supported (http, https, grpc, grpcs)"
                ));
            }
            None => return Err(format!("server '{s}' has no scheme (http://host:port)")),
        }
        if uri.authority().is_none() {
            return Err(format!("server '{s}' has no host"));
        }
        out.push(url);
    }
    if out.is_empty() {
        return Err("no server: set 'servers' to one or more http(s):// or grpc(s):// URLs".into());
    }
    Ok(out)
}

/// A checked server URL speaks TLS.
pub(super) fn is_tls(url: &str) -> bool {
    url.starts_with("https://") || url.starts_with("grpcs://")
}

/// A checked server URL speaks gRPC.
pub(super) fn is_grpc(url: &str) -> bool {
    url.starts_with("grpc://") || url.starts_with("grpcs://")
}

/// Some server of `servers` speaks TLS (false when they do not parse:
/// start fails on them anyway).
pub fn wants_tls(servers: Option<&str>) -> bool {
    servers
        .and_then(|s| parse_servers(s).ok())
        .is_some_and(|urls| urls.iter().any(|u| is_tls(u)))
}

/// The authority part of a URL: after `scheme://`, up to the path.
fn authority(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://")? + 3;
    let len = url[start..]
        .find(['/', '?', '#'])
        .unwrap_or(url.len() - start);
    Some((start, start + len))
}

fn has_user_info(url: &str) -> bool {
    authority(url).is_some_and(|(a, b)| url[a..b].contains('@'))
}

/// `url` with its user info, if any, replaced by `***`.
fn redact(url: &str) -> String {
    match authority(url) {
        Some((a, b)) => match url[a..b].rfind('@') {
            Some(at) => format!("{}***{}", &url[..a], &url[a + at..]),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// `servers` as a log line may show it: user info in URLs hidden.
pub fn redact_servers(servers: &str) -> String {
    servers.split(',').map(redact).collect::<Vec<_>>().join(",")
}

/// `model` as one URL path segment: everything but RFC 3986 unreserved
/// characters percent-encoded.
pub(super) fn model_segment(model: &str) -> Result<String, String> {
    use std::fmt::Write;
    if model.is_empty() {
        return Err("no model: set 'model'".into());
    }
    if model == "." || model == ".." {
        return Err(format!("model name '{model}' is not valid"));
    }
    let mut out = String::with_capacity(model.len());
    for b in model.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_parsed() {
        assert_eq!(
            parse_servers(" http://a:1/ , http://b:2/prefix").unwrap(),
            vec!["http://a:1", "http://b:2/prefix"]
        );
        assert_eq!(
            parse_servers("https://a:1,http://b").unwrap(),
            vec!["https://a:1", "http://b"]
        );
        assert!(is_tls("https://a:1") && !is_tls("http://a:1"));
        assert!(wants_tls(Some("http://a, https://b")));
        assert!(!wants_tls(Some("http://a")) && !wants_tls(None));
        assert!(parse_servers("").is_err());
        assert!(parse_servers("ftp://a:1").is_err());
        assert_eq!(
            parse_servers("grpc://a:8001/, grpcs://b:443").unwrap(),
            vec!["grpc://a:8001", "grpcs://b:443"]
        );
        assert!(parse_servers("grpc://a").is_err());
        assert!(parse_servers("grpc://a:1/v2").is_err());
        assert!(is_tls("grpcs://a:1") && !is_tls("grpc://a:1"));
        assert!(parse_servers("a:1").is_err());
        assert!(parse_servers("http://a:1/?x=1").is_err());
        assert!(parse_servers("http://a:1/p#f").is_err());
    }

    #[test]
    fn user_info_is_refused_and_never_repeated() {
        let err = parse_servers("http://a:1, https://user:s3cret@b:2/p").unwrap_err();
        assert!(err.contains("https://***@b:2/p"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        assert_eq!(
            redact_servers("http://a,https://u:p@b/x@y"),
            "http://a,https://***@b/x@y"
        );
        // An @ in the path is not user info.
        assert!(parse_servers("http://a:1/x@y").is_ok());
    }

    #[test]
    fn model_names_are_percent_encoded() {
        assert_eq!(model_segment("resnet-50_v1.2~").unwrap(), "resnet-50_v1.2~");
        assert_eq!(model_segment("my model/1").unwrap(), "my%20model%2F1");
        assert_eq!(model_segment("é").unwrap(), "%C3%A9");
        assert!(model_segment("").is_err());
        assert!(model_segment("..").is_err());
    }
}
