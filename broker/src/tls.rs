//! Mutual TLS for cluster links: both ends present a certificate chained to the cluster CA.
//!
//! The accepting side verifies the client certificate with webpki
//! ([`WebPkiClientVerifier`]); the dialing side verifies the server certificate against the
//! same CA with the broker's id as the server name, so every broker's certificate carries its
//! id as a DNS SAN. The cluster secret of LINK_HELLO is still checked inside the tunnel.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

use crate::config::LinkTlsConfig;
use crate::link::HANDSHAKE_TIMEOUT;

/// Both halves of mutual TLS for links, loaded once from [`LinkTlsConfig`]; cheap to clone.
#[derive(Clone)]
pub struct LinkTls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl fmt::Debug for LinkTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkTls").finish_non_exhaustive()
    }
}

impl LinkTls {
    /// Reads the PEM files of `config` and builds the TLS 1.2/1.3 configurations, ring
    /// provider, for both directions.
    pub fn load(config: &LinkTlsConfig) -> io::Result<Self> {
        let certs = read_certs(&config.cert)?;
        let key = read_key(&config.key)?;
        let mut roots = RootCertStore::empty();
        for ca in read_certs(&config.ca)? {
            roots.add(ca).map_err(|e| invalid(&config.ca, e))?;
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions = [&rustls::version::TLS13, &rustls::version::TLS12];

        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| invalid(&config.ca, e))?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(io::Error::other)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(|e| invalid(&config.cert, e))?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .map_err(io::Error::other)?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(|e| invalid(&config.cert, e))?;
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }

    /// The dialing half, for edges: it presents our certificate and expects the broker's id
    /// in the server's.
    pub fn connector(&self) -> TlsConnector {
        self.connector.clone()
    }

    /// Runs the accepting side of the handshake, within the link handshake timeout.
    pub async fn accept<S>(&self, stream: S) -> io::Result<server::TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(stream))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
    }

    /// Runs the dialing side of the handshake with broker `broker`, within the link handshake
    /// timeout.
    pub async fn connect<S>(&self, broker: &str, stream: S) -> io::Result<client::TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = broker_name(broker)?;
        tokio::time::timeout(HANDSHAKE_TIMEOUT, self.connector.connect(name, stream))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
    }
}

/// The name a broker's certificate must carry: its id, as a DNS name.
pub fn broker_name(broker: &str) -> io::Result<ServerName<'static>> {
    ServerName::try_from(broker.to_string()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("broker id {broker:?} is not a valid TLS server name"),
        )
    })
}

fn read_certs(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = rustls_pemfile::certs(&mut io::BufReader::new(open(path)?))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, e))?;
    if certs.is_empty() {
        return Err(invalid(path, "no certificate in PEM file"));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> io::Result<PrivateKeyDer<'static>> {
    rustls_pemfile::private_key(&mut io::BufReader::new(open(path)?))
        .map_err(|e| invalid(path, e))?
        .ok_or_else(|| invalid(path, "no private key in PEM file"))
}

fn open(path: &Path) -> io::Result<std::fs::File> {
    std::fs::File::open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

fn invalid(path: &Path, error: impl fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {error}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::PathBuf;

    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A CA that signs node certificates into a directory.
    struct Ca {
        cert: rcgen::Certificate,
        key: KeyPair,
        path: PathBuf,
    }

    impl Ca {
        fn new(dir: &Path, name: &str) -> Self {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let cert = params.self_signed(&key).unwrap();
            let path = dir.join(format!("{name}.pem"));
            std::fs::write(&path, cert.pem()).unwrap();
            Self { cert, key, path }
        }

        /// Certificate and key for `node`, trusting `trust` as the cluster CA.
        fn issue(&self, dir: &Path, node: &str, trust: &Ca) -> LinkTlsConfig {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(vec![node.to_string()])
                .unwrap()
                .signed_by(&key, &self.cert, &self.key)
                .unwrap();
            let (cert_path, key_path) = (dir.join(format!("{node}.pem")), dir.join(node));
            std::fs::write(&cert_path, cert.pem()).unwrap();
            std::fs::write(&key_path, key.serialize_pem()).unwrap();
            LinkTlsConfig {
                cert: cert_path,
                key: key_path,
                ca: trust.path.clone(),
            }
        }
    }

    /// Dials `server` as broker id `name` over an in-memory pipe; echoes one byte through.
    async fn handshake(client: &LinkTls, server: &LinkTls, name: &str) -> io::Result<()> {
        let (near, far) = tokio::io::duplex(64 * 1024);
        let server = server.clone();
        let accepting = tokio::spawn(async move {
            let mut stream = server.accept(far).await?;
            let mut byte = [0];
            stream.read_exact(&mut byte).await?;
            stream.write_all(&byte).await?;
            stream.flush().await
        });
        let dialed = async {
            let mut stream = client.connect(name, near).await?;
            stream.write_all(b"x").await?;
            stream.flush().await?;
            let mut byte = [0];
            stream.read_exact(&mut byte).await?;
            Ok(())
        }
        .await;
        let accepted = accepting.await.unwrap();
        dialed.and(accepted)
    }

    #[tokio::test]
    async fn nodes_of_one_ca_link_and_strangers_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new(dir.path(), "ca");
        let other = Ca::new(dir.path(), "other");
        let b1 = LinkTls::load(&ca.issue(dir.path(), "b1", &ca)).unwrap();
        let edge = LinkTls::load(&ca.issue(dir.path(), "edge-1", &ca)).unwrap();
        let stranger = LinkTls::load(&other.issue(dir.path(), "edge-2", &ca)).unwrap();

        handshake(&edge, &b1, "b1").await.unwrap();
        assert!(
            handshake(&stranger, &b1, "b1").await.is_err(),
            "a client certificate from another CA is refused"
        );
        assert!(
            handshake(&edge, &b1, "b2").await.is_err(),
            "a certificate without the dialed broker's id is refused"
        );
    }

    #[test]
    fn a_missing_file_is_named_in_the_error() {
        let config = LinkTlsConfig {
            cert: "/nonexistent/node.pem".into(),
            key: "/nonexistent/node.key".into(),
            ca: "/nonexistent/ca.pem".into(),
        };
        let error = LinkTls::load(&config).unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/node.pem"),
            "{error}"
        );
    }
}
