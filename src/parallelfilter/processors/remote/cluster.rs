// SPDX-License-Identifier: MPL-2.0
//! The connections, servers and probes behind `remote` processors: one
//! per processor, or, in a `context`, one for all members with the same
//! servers, model, `max-requests-per-server`, `extra-headers` and
//! `tls-ca-file`, so they share connections, health and per-server caps.
//! The registry keeps weak handles: a cluster ends with its last member.

use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex, Weak};

use tokio::sync::watch;

use super::config::{self, Config, PerServer, Targets};
use super::grpc::GrpcServer;
use super::headers::ExtraHeaders;
use super::http::HttpClient;
use super::servers::Servers;
use super::{GRPC_CONNECTIONS, Inner, Members, gather::Gather, tls};
use crate::engine::lock;

/// What members must have in common to share a cluster.
#[derive(PartialEq, Eq)]
struct Key {
    context: String,
    servers: String,
    model: String,
    per_server: PerServer,
    extra_headers: ExtraHeaders,
    tls_ca_file: Option<PathBuf>,
}

/// The clusters of contexts: a few, looked up when an element starts.
type Registry = Vec<(Key, Weak<Cluster>)>;

static CLUSTERS: LazyLock<Mutex<Registry>> = LazyLock::new(|| Mutex::new(Vec::new()));

/// A member's handle; the last one to go ends the probes.
pub(super) struct Cluster {
    pub inner: Arc<Inner>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.inner.closed.send_replace(true);
    }
}

/// The cluster of a processor with these (checked) settings: the one of
/// the same `context` with the same servers, or a new one.
pub(super) fn join(
    context: Option<&str>,
    config: &Config,
    targets: Targets,
    rt: tokio::runtime::Handle,
) -> Result<Arc<Cluster>, gst::ErrorMessage> {
    let Some(context) = context else {
        return Cluster::new(config, targets, false, rt);
    };
    let key = Key {
        context: context.to_owned(),
        servers: config.servers.clone(),
        model: config.model.clone(),
        per_server: config.per_server,
        extra_headers: config.extra_headers.clone(),
        tls_ca_file: config.tls_ca_file.clone(),
    };
    let mut all = lock(&CLUSTERS);
    all.retain(|(_, c)| c.strong_count() > 0);
    if let Some(cluster) = all
        .iter()
        .filter(|(k, _)| *k == key)
        .find_map(|(_, c)| c.upgrade())
    {
        return Ok(cluster);
    }
    let cluster = Cluster::new(config, targets, true, rt)?;
    all.push((key, Arc::downgrade(&cluster)));
    Ok(cluster)
}

impl Cluster {
    /// Clients for every server, each probed from now on. `shared`: in a
    /// context, where waiting batches of members go together.
    fn new(
        config: &Config,
        targets: Targets,
        shared: bool,
        rt: tokio::runtime::Handle,
    ) -> Result<Arc<Self>, gst::ErrorMessage> {
        // The CAs are read only when some server needs them.
        let tls = tls::client_config(
            targets.urls.iter().any(|u| config::is_tls(u)),
            config.tls_ca_file.as_deref(),
        )?;
        let connections = config.per_server.max().min(GRPC_CONNECTIONS);
        let grpc = targets
            .urls
            .iter()
            .map(|url| {
                let tls = tls.clone();
                let headers = config.extra_headers.clone();
                config::is_grpc(url)
                    .then(|| GrpcServer::new(url, connections, tls, headers))
                    .transpose()
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(|e| gst::error_msg!(gst::ResourceError::Settings, ("remote: {e}")))?;
        let http = HttpClient::new(config.per_server.max(), tls, config.extra_headers.clone());
        let members = Members {
            elements: Vec::new(),
            tls_failed: vec![None; targets.urls.len()],
        };
        let inner = Arc::new(Inner {
            http,
            grpc,
            servers: Arc::new(Servers::new(targets.urls, config.per_server)),
            model: config.model.clone(),
            model_path: targets.model_path,
            members: Mutex::new(members),
            gather: shared.then(Gather::default),
            closed: watch::channel(false).0,
            rt,
        });
        for i in 0..inner.servers.len() {
            Inner::spawn_probe(&inner, i, std::time::Duration::ZERO);
        }
        Ok(Arc::new(Cluster { inner }))
    }
}
