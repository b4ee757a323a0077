//! TLS for both services and for the host's calls to its centre: rustls on aws-lc-rs, the
//! crate's one crypto provider (nothing here may pull in `ring`). Certificates and keys are
//! PEM files the operator names; every error names the file and what is wrong with it.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("{}: {problem}", path.display())]
    File { path: PathBuf, problem: String },
    #[error("{0}")]
    Config(String),
}

fn file_error(path: &Path, problem: impl Into<String>) -> TlsError {
    TlsError::File {
        path: path.into(),
        problem: problem.into(),
    }
}

/// Explicitly aws-lc-rs, so a second provider linked in by some dependency changes nothing.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| file_error(path, format!("cannot read: {e}")))
}

/// Every `CERTIFICATE` block of a PEM file, in order (the chain: leaf first, then issuers).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(
            path,
            "no certificate found (expected PEM blocks \"-----BEGIN CERTIFICATE-----\")",
        ));
    }
    Ok(certs)
}

/// The first private key of a PEM file: PKCS#8 `PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY` or
/// SEC1 `EC PRIVATE KEY`.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => file_error(
            path,
            "no private key found (expected a PEM block \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\")",
        ),
        e => file_error(path, format!("not a PEM private key: {e}")),
    })
}

/// A server configuration from a certificate chain file and its private key file. HTTP/1.1
/// only, as the services speak nothing else.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = load_certs(cert)?;
    let key_der = load_key(key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        // Also checks that the key belongs to the leaf certificate.
        .with_single_cert(chain, key_der)
        .map_err(|e| {
            file_error(
                key,
                format!(
                    "cannot be used with the certificate in {}: {e}",
                    cert.display()
                ),
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The acceptor the serve loop wraps connections in.
pub fn acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    server_config(cert, key).map(tokio_rustls::TlsAcceptor::from)
}

/// A client configuration trusting the system's roots plus, if given, the CA certificates
/// in `ca_file` (a private CA for the centre). Reads files: call it at start-up, not on a
/// request.
pub fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::warn!("system CA certificates: {e}");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    if ignored > 0 {
        tracing::debug!("system CA certificates: {added} loaded, {ignored} unusable");
    }
    if let Some(path) = ca_file {
        for cert in load_certs(path)? {
            roots
                .add(cert)
                .map_err(|e| file_error(path, format!("not a usable CA certificate: {e}")))?;
        }
    }
    if roots.is_empty() {
        tracing::warn!("no trusted CA certificates: no https:// centre can be verified");
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let d = tempfile::tempdir().expect("tmp");
        let missing = d.path().join("missing.pem");
        let e = load_certs(&missing).expect_err("missing").to_string();
        assert!(
            e.contains("missing.pem") && e.contains("cannot read"),
            "{e}"
        );

        let junk = d.path().join("junk.pem");
        std::fs::write(&junk, "hello\n").expect("write");
        let e = load_certs(&junk).expect_err("no cert").to_string();
        assert!(
            e.contains("junk.pem") && e.contains("no certificate"),
            "{e}"
        );
        let e = load_key(&junk).expect_err("no key").to_string();
        assert!(
            e.contains("junk.pem") && e.contains("no private key"),
            "{e}"
        );

        let broken = d.path().join("broken.pem");
        std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\nAAAA\n").expect("write");
        let e = load_certs(&broken).expect_err("broken").to_string();
        assert!(e.contains("broken.pem") && e.contains("not a PEM"), "{e}");
    }
}
