//! A TLS front for a plain HTTP server, as a load balancer or a mesh's gateway puts one
//! before a service: it presents the test CA's server certificate (`localhost`,
//! `127.0.0.1`) on a free port and passes each connection on to the server.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::services;

/// The proxy; it stops when dropped.
pub struct TlsProxy {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TlsProxy {
    /// Listens on a free port of 127.0.0.1 and passes connections on to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        Self::start_on([127, 0, 0, 1].into(), upstream).await
    }

    /// [`start`](Self::start), listening on `ip`: another loopback address, such as
    /// 127.0.0.2, is a host the certificate does not name.
    pub async fn start_on(ip: std::net::IpAddr, upstream: SocketAddr) -> Self {
        let pki = services::dir().join("pki");
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(pki.join("server.crt"))
                .expect("the test server certificate")
                .collect::<Result<_, _>>()
                .expect("PEM certificates");
        let key =
            PrivateKeyDer::from_pem_file(pki.join("server.key")).expect("the test server key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("a certificate and its key");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind((ip, 0)).await.expect("a free port");
        let addr = listener.local_addr().expect("its address");
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client that refuses the certificate ends the handshake: nothing
                    // more to do for it.
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    if let Ok(mut plain) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                    }
                });
            }
        });
        Self { addr, task }
    }

    /// `https://localhost:<port>` on 127.0.0.1, the name the certificate is for;
    /// `https://<ip>:<port>` elsewhere.
    pub fn url(&self) -> String {
        match self.addr.ip() {
            ip if ip == std::net::IpAddr::from([127, 0, 0, 1]) => {
                format!("https://localhost:{}", self.addr.port())
            }
            ip => format!("https://{ip}:{}", self.addr.port()),
        }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
