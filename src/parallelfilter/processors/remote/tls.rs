// SPDX-License-Identifier: MPL-2.0
//! TLS for `https://` and `grpcs://` servers: rustls with the ring provider, trusting the
//! system's CA store plus `tls-ca-file`; and the text of a failed
//! handshake, found in a connection error.
//!
//! The provider is passed to each config, never installed as the process
//! default: the plugin lives in someone else's process.

use std::error::Error;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::{self, PemObject};
use rustls::{CertificateError, ClientConfig, RootCertStore};

/// The client config for every connection of a processor. `roots`: load
/// the trusted CAs (some server is https); without, a config that trusts
/// nothing, used only for plain connections.
pub(super) fn client_config(
    roots: bool,
    ca_file: Option<&Path>,
) -> Result<Arc<ClientConfig>, gst::ErrorMessage> {
    let store = if roots {
        trusted(ca_file)?
    } else {
        RootCertStore::empty()
    };
    // Deprecated in rustls 0.23.48 for lacking post-quantum key exchange,
    // which only aws-lc-rs has; ring keeps the build small (see Cargo.toml).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| settings_error(format!("TLS set-up failed: {e}")))?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn settings_error(msg: String) -> gst::ErrorMessage {
    gst::error_msg!(gst::ResourceError::Settings, ("remote: {msg}"))
}

/// The system's CAs and those of `ca_file`. An unreadable or useless
/// file fails: it was set for a reason.
fn trusted(ca_file: Option<&Path>) -> Result<RootCertStore, gst::ErrorMessage> {
    let mut store = RootCertStore::empty();
    // Unreadable entries of the system store are not ours to fix.
    let native = rustls_native_certs::load_native_certs();
    store.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let file = path.display();
        let read_error = |e: pem::Error| match e {
            pem::Error::Io(e) => gst::error_msg!(
                gst::ResourceError::OpenRead,
                ("remote: cannot read tls-ca-file '{file}': {e}")
            ),
            e => settings_error(format!("tls-ca-file '{file}' is not valid PEM: {e}")),
        };
        let mut n = 0;
        for cert in CertificateDer::pem_file_iter(path).map_err(read_error)? {
            let cert = cert.map_err(read_error)?;
            n += 1;
            store.add(cert).map_err(|e| {
                settings_error(format!(
                    "tls-ca-file '{file}': certificate {n} is not a usable CA certificate: {e}"
                ))
            })?;
        }
        if n == 0 {
            return Err(settings_error(format!(
                "tls-ca-file '{file}' holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
            )));
        }
    }
    if store.is_empty() {
        return Err(settings_error(
            "no CA certificate to trust for https and grpcs servers: the system store is empty \
             (install ca-certificates) and tls-ca-file is not set"
                .into(),
        ));
    }
    Ok(store)
}

/// The TLS failure in a connection error, as a sentence with a hint.
/// hyper-rustls wraps rustls' error in two `io::Error`s, whose `source()`
/// skips a wrapped error: `get_ref()` finds it.
pub(super) fn failure(e: &(dyn Error + 'static)) -> Option<String> {
    let mut e = e;
    loop {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(reason(r));
        }
        e = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => inner,
            None => e.source()?,
        };
    }
}

fn reason(e: &rustls::Error) -> String {
    use rustls::Error as E;
    match e {
        E::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the server's certificate is not trusted (unknown issuer): add its CA to tls-ca-file"
                .into()
        }
        E::InvalidCertificate(c) => format!("the server's certificate is refused: {c}"),
        // A plain HTTP answer read as a TLS record.
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => {
            format!("{e}: is it a TLS port? (use http:// for a plain HTTP server)")
        }
        e => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rustls_error_is_found_inside_io_errors() {
        let inner = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let outer = std::io::Error::other(inner);
        let text = failure(&outer).unwrap();
        assert!(text.contains("add its CA to tls-ca-file"), "{text}");
        let plain = std::io::Error::other("connection refused");
        assert_eq!(failure(&plain), None);
    }

    #[test]
    fn an_unreadable_or_empty_ca_file_is_named() {
        gst::init().unwrap();
        let missing = Path::new("/nonexistent/ca.pem");
        let err = client_config(true, Some(missing)).unwrap_err();
        assert!(
            format!("{err:?}").contains("/nonexistent/ca.pem"),
            "{err:?}"
        );
        // Not read when no server is https.
        assert!(client_config(false, Some(missing)).is_ok());
    }
}
