//! TLS for `turns:` listeners: a rustls server config built from PEM files, and a
//! reloader that swaps in a new certificate (SIGHUP) without touching live connections.
//!
//! Each accepted connection takes the config that is current when its handshake starts
//! and keeps it for its whole life, so a reload changes only what new handshakes see.
//! A reload that fails validation leaves the config in force untouched.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::ServerConfig;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use switchboard_config::TlsFiles;
use tokio_rustls::TlsAcceptor;

/// Why a certificate chain and key cannot be used. Each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: invalid pem: {source}", path.display())]
    Pem { path: PathBuf, source: pem::Error },
    #[error("{}: no certificate found (expected a pem `CERTIFICATE` block)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: no private key found (expected a pem pkcs#8, rsa or ec `PRIVATE KEY` block)", path.display())]
    NoPrivateKey { path: PathBuf },
    #[error("{} with {}: rejected: {source}", cert.display(), key.display())]
    Rejected {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
}

/// Builds a server config from a PEM certificate chain (leaf first) and a PEM private
/// key, checking that the key belongs to the leaf certificate. Uses the `ring` provider
/// explicitly so the result does not depend on which providers other crates enable.
pub fn load_server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = read_cert_chain(&files.cert)?;
    let key = read_private_key(&files.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let rejected = |source| TlsError::Rejected {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    };
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(rejected)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(rejected)?;
    Ok(Arc::new(config))
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn read_cert_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: path.to_owned(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_file(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|source| match source {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: path.to_owned(),
        },
        source => TlsError::Pem {
            path: path.to_owned(),
            source,
        },
    })
}

/// The TLS config in force for a set of listeners, reloadable from the same files.
///
/// Share it as `Arc<TlsReloader>`: listeners call [`acceptor`](Self::acceptor) per
/// connection, the SIGHUP handler calls [`reload`](Self::reload).
#[derive(Debug)]
pub struct TlsReloader {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsReloader {
    /// Loads the files once; fails start-up with the file and cause if they are unusable.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let config = load_server_config(&files)?;
        Ok(Self {
            files,
            current: RwLock::new(config),
        })
    }

    /// Re-reads the files and, only if they make a valid config, serves them to new
    /// handshakes. On error the previous certificate stays in force.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = load_server_config(&self.files)?;
        // A panic while holding this lock cannot leave a half-written Arc: recover.
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = config;
        Ok(())
    }

    /// The config new handshakes use.
    #[must_use]
    pub fn current(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// An acceptor for one new connection, bound to the config current now.
    #[must_use]
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current())
    }

    #[must_use]
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }
}

#[cfg(test)]
#[path = "tls/tests.rs"]
pub(crate) mod tests;
