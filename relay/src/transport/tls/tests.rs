//! Tests of TLS loading and hot reload, with certificates made by rcgen at test time.

use std::net::SocketAddr;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::*;

/// A throw-away CA that issues `localhost` leaf certificates into PEM files.
pub(crate) struct TestPki {
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

impl TestPki {
    pub(crate) fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Switchboard test CA");
        let ca_key = KeyPair::generate().expect("ca key");
        let ca = params.self_signed(&ca_key).expect("ca cert");
        Self { ca, ca_key }
    }

    /// Writes a new leaf (chain: leaf, CA) and its key to `files`; returns the leaf.
    pub(crate) fn write_leaf(&self, files: &TlsFiles) -> CertificateDer<'static> {
        let params = CertificateParams::new(vec!["localhost".to_owned()]).expect("leaf params");
        let key = KeyPair::generate().expect("leaf key");
        let leaf = params
            .signed_by(&key, &self.ca, &self.ca_key)
            .expect("leaf");
        std::fs::write(&files.cert, format!("{}{}", leaf.pem(), self.ca.pem())).expect("cert");
        std::fs::write(&files.key, key.serialize_pem()).expect("key");
        leaf.der().clone()
    }

    /// A client trusting only this CA.
    pub(crate) fn connector(&self) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).expect("ca root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocols")
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }

    pub(crate) async fn connect(&self, addr: SocketAddr) -> TlsStream<TcpStream> {
        let tcp = TcpStream::connect(addr).await.expect("tcp connect");
        let name = ServerName::try_from("localhost").expect("name");
        self.connector()
            .connect(name, tcp)
            .await
            .expect("tls handshake")
    }
}

pub(crate) fn files_in(dir: &tempfile::TempDir) -> TlsFiles {
    TlsFiles {
        cert: dir.path().join("fullchain.pem"),
        key: dir.path().join("privkey.pem"),
    }
}

fn served_leaf(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    let certs = stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("server sent certs");
    certs.first().expect("leaf").clone().into_owned()
}

/// A TLS echo server that takes the reloader's config per connection.
async fn echo_server(reloader: Arc<TlsReloader>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = reloader.acceptor();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 256];
                while let Ok(n @ 1..) = tls.read(&mut buf).await {
                    if tls.write_all(&buf[..n]).await.is_err() || tls.flush().await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

async fn echo(stream: &mut TlsStream<TcpStream>, msg: &[u8]) -> Vec<u8> {
    stream.write_all(msg).await.expect("write");
    stream.flush().await.expect("flush");
    let mut back = vec![0u8; msg.len()];
    stream.read_exact(&mut back).await.expect("echo");
    back
}

#[tokio::test]
async fn a_pem_chain_and_key_serve_a_handshake_the_ca_trusts() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let files = files_in(&dir);
    let leaf = pki.write_leaf(&files);
    let reloader = Arc::new(TlsReloader::load(files).expect("valid files load"));
    let addr = echo_server(reloader).await;

    let mut client = pki.connect(addr).await;
    assert_eq!(served_leaf(&client), leaf);
    let chain_len = client.get_ref().1.peer_certificates().map(<[_]>::len);
    assert_eq!(chain_len, Some(2), "leaf and CA are both sent");
    assert_eq!(echo(&mut client, b"ping").await, b"ping");
}

#[tokio::test]
async fn reload_serves_the_new_certificate_to_new_connections_while_old_ones_keep_working() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let files = files_in(&dir);
    let old_leaf = pki.write_leaf(&files);
    let reloader = Arc::new(TlsReloader::load(files.clone()).expect("load"));
    let addr = echo_server(Arc::clone(&reloader)).await;

    let mut before = pki.connect(addr).await;
    assert_eq!(served_leaf(&before), old_leaf);

    let new_leaf = pki.write_leaf(&files);
    assert_ne!(new_leaf, old_leaf);
    reloader.reload().expect("valid new files reload");

    let mut after = pki.connect(addr).await;
    assert_eq!(
        served_leaf(&after),
        new_leaf,
        "new handshakes get the new cert"
    );
    assert_eq!(echo(&mut after, b"new").await, b"new");
    assert_eq!(
        echo(&mut before, b"still here").await,
        b"still here",
        "the connection made before the reload keeps its session"
    );
}

#[tokio::test]
async fn a_bad_pem_on_reload_is_an_error_naming_the_file_and_the_old_certificate_stays() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let files = files_in(&dir);
    let leaf = pki.write_leaf(&files);
    let reloader = Arc::new(TlsReloader::load(files.clone()).expect("load"));
    let addr = echo_server(Arc::clone(&reloader)).await;

    std::fs::write(
        &files.cert,
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let err = reloader.reload().expect_err("bad pem refused");
    assert!(matches!(err, TlsError::Pem { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&files.cert.display().to_string()), "{msg}");

    let mut client = pki.connect(addr).await;
    assert_eq!(
        served_leaf(&client),
        leaf,
        "the old certificate is still served"
    );
    assert_eq!(echo(&mut client, b"ok").await, b"ok");
}

#[test]
fn a_missing_file_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = files_in(&dir);
    let err = TlsReloader::load(files.clone()).expect_err("no files");
    assert!(matches!(err, TlsError::Read { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot read {}", files.cert.display()))
    );
}

#[test]
fn a_key_file_without_a_private_key_is_an_error_naming_it() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let files = files_in(&dir);
    pki.write_leaf(&files);
    let swapped = TlsFiles {
        cert: files.cert.clone(),
        key: files.cert.clone(),
    };
    let err = load_server_config(&swapped).expect_err("a cert is not a key");
    assert!(matches!(err, TlsError::NoPrivateKey { .. }), "{err:?}");
    assert!(
        err.to_string().contains("fullchain.pem: no private key"),
        "{err}"
    );

    std::fs::write(&files.cert, "").expect("write");
    let err = load_server_config(&files).expect_err("empty chain");
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_refused_and_reload_keeps_the_old_one() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let files = files_in(&dir);
    pki.write_leaf(&files);
    let reloader = TlsReloader::load(files.clone()).expect("load");
    let before = reloader.current();

    // A new certificate whose key never reaches the key file (a half-finished renewal).
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other = files_in(&other_dir);
    pki.write_leaf(&other);
    std::fs::copy(&other.cert, &files.cert).expect("copy cert only");

    let err = reloader.reload().expect_err("mismatched key refused");
    assert!(matches!(err, TlsError::Rejected { .. }), "{err:?}");
    assert!(err.to_string().contains("privkey.pem"), "{err}");
    assert!(Arc::ptr_eq(&before, &reloader.current()), "old config kept");
}
