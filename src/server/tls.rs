//! TLS on the listeners (`--tls-cert`, `--tls-key`, optionally `--tls-client-ca` for the
//! ingest listeners): rustls with ALPN `h2` and `http/1.1`, so HTTP/2 and gRPC work as
//! over plain TCP. The certificate and key are re-read when either file changes (a bad
//! pair keeps the last good one, logged); connections opened before keep theirs.
//!
//! This module owns the configurations and the reloading; `listener` does the handshakes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// The certificate in use, swapped whole when the files change.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.0.read().unwrap_or_else(|e| e.into_inner()),
        ))
    }
}

/// What the listeners accept with.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: Arc<Current>,
    /// For the query, gateway and sampling ports.
    pub plain: TlsAcceptor,
    /// For the ingest ports: client certificates checked when `--tls-client-ca` is given.
    pub ingest: TlsAcceptor,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain and its key from PEM files.
fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("private key: {e}"))?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match()
        .map_err(|e| format!("the key does not belong to the certificate: {e}"))?;
    Ok(ck)
}

fn config(current: &Arc<Current>, client_ca: Option<&Path>) -> Result<Arc<ServerConfig>, String> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
            {
                roots
                    .add(c.map_err(|e| format!("{}: {e}", path.display()))?)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut c = builder.with_cert_resolver(Arc::clone(current) as Arc<dyn ResolvesServerCert>);
    c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(c))
}

impl Tls {
    pub fn new(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Tls, String> {
        let current = Arc::new(Current(RwLock::new(Arc::new(load(cert, key)?))));
        Ok(Tls {
            plain: TlsAcceptor::from(config(&current, None)?),
            ingest: TlsAcceptor::from(config(&current, client_ca)?),
            cert: cert.to_owned(),
            key: key.to_owned(),
            current,
        })
    }

    /// Re-read the certificate and key whenever either file changes, until `stop`.
    pub async fn watch(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let read = |tls: &Tls| (std::fs::read(&tls.cert).ok(), std::fs::read(&tls.key).ok());
        let mut last = read(&self);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let now = read(&self);
            if now == last {
                continue;
            }
            last = now;
            match load(&self.cert, &self.key) {
                Ok(ck) => {
                    *self.current.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ck);
                    tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                }
                Err(e) => {
                    tracing::error!(error = %e, "TLS certificate not reloaded; keeping the last good one")
                }
            }
        }
    }
}
