//! A TLS front for a loopback server: terminates HTTPS with a test certificate (signed by
//! `tests/fixtures/tls/ca.pem`, for `localhost` and `127.0.0.1`) and passes the bytes on to the
//! plain-HTTP server behind it, so a test can reach the sandbox or moto over `https://` and
//! prove which certificates a client trusts.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The CA that signed the front's certificate, as PEM.
pub const CA_PEM: &str = include_str!("../fixtures/tls/ca.pem");
const CERT_PEM: &str = include_str!("../fixtures/tls/server.pem");
const KEY_PEM: &str = include_str!("../fixtures/tls/server-key.pem");

/// A running TLS front.
pub struct TlsFront {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl TlsFront {
    /// Listens on loopback and forwards every connection to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> TlsFront {
        let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let certs = vec![CertificateDer::from_pem_slice(CERT_PEM.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(KEY_PEM.as_bytes()).unwrap();
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let upstream = upstream.to_owned();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    // A client that rejects the certificate ends the handshake: nothing to do.
                    let Ok(mut tls) = acceptor.accept(client).await else {
                        return;
                    };
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
                });
            }
        });
        TlsFront { port, task }
    }

    /// `https://localhost:PORT`.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}
