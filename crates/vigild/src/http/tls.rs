//! TLS on the TCP listener (`[http] tls_cert` and `tls_key`, docs/http.md), and the reading of the
//! config's secret files (the token file too, so that a re-exec can check it): the PEM files read and
//! checked into rustls' server config (ring's provider, as etcd's client has it; ALPN `http/1.1`), and
//! the handshake of one connection, bounded in time.
//!
//! The files are checked wherever the config is: `vigild --check`, the start (before any tag starts,
//! as the token file), and before a re-exec, which is refused while they do not load, so the running
//! image keeps its listener and the reason is logged.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::{HttpSettings, TlsFiles};

/// The first byte of a TLS record that starts a handshake: what a TLS client sends first.
const HANDSHAKE_RECORD: u8 = 0x16;

/// The most a certificate chain, a key or a token file may hold.
const MAX_FILE: u64 = 1 << 20;

/// Reads a file the config names (`key`, e.g. `[http] token_file`), as root: only a regular file (a FIFO
/// or a device would hold vigild), at most [`MAX_FILE`] bytes. With `risk`, a secret: it must be its
/// owner's alone (no group or other permission bits), since whoever reads it can `risk` (given the
/// owner's uid). The checks are made on the file opened, not on its name.
pub fn read_config_file(
    path: &Path,
    key: &str,
    risk: Option<&dyn Fn(u32) -> String>,
) -> anyhow::Result<(std::fs::Metadata, Vec<u8>)> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .with_context(|| format!("{key} {}", path.display()))?;
    let meta = f.metadata().with_context(|| format!("{key} {}", path.display()))?;
    anyhow::ensure!(meta.is_file(), "{key} {} is not a regular file", path.display());
    if let Some(risk) = risk {
        let mode = meta.permissions().mode() & 0o777;
        anyhow::ensure!(
            mode & 0o077 == 0,
            "{key} {} has mode {mode:03o}: others could read it and {}; chmod 600 it",
            path.display(),
            risk(meta.uid())
        );
    }
    let mut bytes = Vec::new();
    f.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {key} {}", path.display()))?;
    anyhow::ensure!(
        bytes.len() as u64 <= MAX_FILE,
        "{key} {} is larger than {} KiB",
        path.display(),
        MAX_FILE >> 10
    );
    Ok((meta, bytes))
}

/// Reads the bearer token of `[http] token_file`: the file must be its owner's alone (whoever reads it
/// acts as that owner) and hold at least 16 printable characters; with the file's metadata (its owner is
/// who the token acts as).
pub fn read_token_file(path: &Path) -> anyhow::Result<(String, std::fs::Metadata)> {
    let risk = |uid| format!("act as uid {uid}");
    let (meta, bytes) = read_config_file(path, "[http] token_file", Some(&risk))?;
    let secret = String::from_utf8_lossy(&bytes).trim().to_string();
    anyhow::ensure!(
        secret.len() >= 16 && secret.bytes().all(|b| b.is_ascii_graphic()),
        "[http] token_file {} must hold a token of at least 16 printable characters without spaces",
        path.display()
    );
    Ok((secret, meta))
}

/// Reads the certificate chain and its key into the server's TLS config: the key must be its owner's
/// alone, the files must hold PEM, and the key must be the certificate's (rustls compares them).
pub fn server_config(files: &TlsFiles) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let (cert_path, key_path) = (files.cert.as_path(), files.key.as_path());
    let risk = |_| "pose as this server".to_string();
    let (_, key_pem) = read_config_file(key_path, "[http] tls_key", Some(&risk))?;
    let (_, pem) = read_config_file(cert_path, "[http] tls_cert", None)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("[http] tls_cert {} is not valid PEM: {e}", cert_path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "[http] tls_cert {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        cert_path.display()
    );
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => anyhow::anyhow!(
            "[http] tls_key {} holds no PEM private key (-----BEGIN PRIVATE KEY-----, or RSA or EC)",
            key_path.display()
        ),
        e => anyhow::anyhow!("[http] tls_key {} is not valid PEM: {e}", key_path.display()),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => anyhow::anyhow!(
                "[http] tls_key {} is not the private key of the certificate in [http] tls_cert {}",
                key_path.display(),
                cert_path.display()
            ),
            e => anyhow::anyhow!(
                "[http] tls_cert {} and tls_key {} cannot serve TLS: {e}",
                cert_path.display(),
                key_path.display()
            ),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Checks the TLS files of `[http]`, if any, as the start reads them.
pub fn check(http: &HttpSettings) -> anyhow::Result<()> {
    match &http.tls {
        Some(files) => server_config(files).map(drop),
        None => Ok(()),
    }
}

/// How one connection's handshake went.
pub enum Handshake {
    Done(Box<TlsStream<TcpStream>>),
    /// The client spoke first and not TLS (plain HTTP, most likely): it may be told so in plain text.
    Plain(TcpStream),
    /// The handshake failed or did not end in time; the connection is closed.
    Failed(String),
}

/// Runs the server's side of the handshake, all of it within `limit`: a client that connects and
/// sends nothing, or stops half-way, holds its place in the connection limits no longer than a client
/// that is slow to send a plain request's head.
pub async fn handshake(acceptor: &TlsAcceptor, tcp: TcpStream, limit: Duration) -> Handshake {
    let deadline = tokio::time::Instant::now() + limit;
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline, tcp.peek(&mut first)).await {
        Err(_) => return Handshake::Failed(format!("no TLS handshake within {limit:?}")),
        Ok(Err(e)) => return Handshake::Failed(format!("TLS handshake: {e}")),
        Ok(Ok(0)) => return Handshake::Failed("closed before a TLS handshake".into()),
        Ok(Ok(_)) if first[0] != HANDSHAKE_RECORD => return Handshake::Plain(tcp),
        Ok(Ok(_)) => {}
    }
    match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => Handshake::Done(Box::new(s)),
        Ok(Err(e)) => Handshake::Failed(format!("TLS handshake: {e}")),
        Err(_) => Handshake::Failed(format!("TLS handshake not done within {limit:?}")),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// Each file problem found before rustls sees the files, named with its key and path.
    #[test]
    fn file_problems_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let files = TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        };
        let err = |files: &TlsFiles| format!("{:#}", server_config(files).unwrap_err());
        assert!(
            err(&files).starts_with(&format!("[http] tls_key {}: ", key.display())),
            "{}",
            err(&files)
        );
        std::fs::write(&key, "not a key\n").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let want = format!(
            "[http] tls_key {} has mode 640: others could read it and pose as this server; chmod 600 it",
            key.display()
        );
        assert_eq!(err(&files), want);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(
            err(&files).starts_with(&format!("[http] tls_cert {}: ", cert.display())),
            "{}",
            err(&files)
        );
        std::fs::write(&cert, "not a certificate\n").unwrap();
        assert!(
            err(&files).ends_with("holds no PEM certificate (-----BEGIN CERTIFICATE-----)"),
            "{}",
            err(&files)
        );
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap();
        assert!(err(&files).contains("is not valid PEM"), "{}", err(&files));
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
        assert!(err(&files).contains("holds no PEM private key"), "{}", err(&files));
        // With the files right as files, rustls judges the contents.
        std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
        assert!(err(&files).contains("cannot serve TLS"), "{}", err(&files));
        assert!(check(&HttpSettings::default()).is_ok());
    }
}
