//! Native protocol listeners: TCP (SO_REUSEPORT, so several edges can share a port) and TLS.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use natter_codec::ErrorCode;
use natter_codec::frame::Error;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use socket2::{Domain, Protocol, Socket, Type};
use std::io::Write as _;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tracing::warn;

use crate::connection::{StreamSink, StreamSource, serve};
use crate::hub::Hub;

/// Binds a TCP listener with SO_REUSEADDR and SO_REUSEPORT.
pub fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Builds the TLS acceptor from PEM files: TLS 1.2 and 1.3 with the ring provider, and
/// client certificates verified against `client_ca` when it is given.
pub fn tls_acceptor(cert: &Path, key: &Path, client_ca: Option<&Path>) -> io::Result<TlsAcceptor> {
    let certs = rustls_pemfile::certs(&mut io::BufReader::new(std::fs::File::open(cert)?))
        .collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut io::BufReader::new(std::fs::File::open(key)?))?
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no private key in PEM file"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(io::Error::other)?;
    let builder = match client_ca {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for ca in rustls_pemfile::certs(&mut io::BufReader::new(std::fs::File::open(path)?)) {
                roots.add(ca?).map_err(io::Error::other)?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(io::Error::other)?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(io::Error::other)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections until `shutdown` turns true.
pub async fn accept_loop(
    hub: Arc<Hub>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    permits: Arc<Semaphore>,
    tracker: mpsc::Sender<()>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff_ms = 1;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                backoff_ms = 1;
                stream
            }
            Err(error) => {
                // Usually out of file descriptors: back off instead of spinning.
                warn!(%error, backoff_ms, "accept failed");
                tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                backoff_ms = (backoff_ms * 2).min(1_000);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            hub.count_error(ErrorCode::TOO_MANY_CONNECTIONS);
            let plain = tls.is_none();
            match stream.into_std() {
                Ok(stream) => {
                    let fallback = stream.try_clone();
                    hub.refuse(refuse(stream, plain), move || {
                        if let (Ok(stream), true) = (fallback, plain) {
                            let _ = (&stream).write(&full_error());
                        }
                    });
                }
                Err(error) => warn!(%error, "could not refuse a connection"),
            }
            continue;
        };
        let hub = hub.clone();
        let tls = tls.clone();
        let tracker = tracker.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            handle(hub, stream, tls, permit, shutdown).await;
            drop(tracker);
        });
    }
}

async fn handle(
    hub: Arc<Hub>,
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    permit: OwnedSemaphorePermit,
    shutdown: watch::Receiver<bool>,
) {
    match tls {
        None => {
            let (reader, writer) = stream.into_split();
            serve(
                hub,
                StreamSource::new(reader),
                StreamSink::new(writer),
                "tcp",
                shutdown,
            )
            .await;
        }
        Some(acceptor) => {
            let deadline = Duration::from_millis(hub.config.timing.hello_timeout_ms);
            let Ok(Ok(stream)) = tokio::time::timeout(deadline, acceptor.accept(stream)).await
            else {
                return;
            };
            let (reader, writer) = tokio::io::split(stream);
            serve(
                hub,
                StreamSource::new(reader),
                StreamSink::new(writer),
                "tls",
                shutdown,
            )
            .await;
        }
    }
    drop(permit);
}

/// The ERROR a client over the process limit gets.
fn full_error() -> Vec<u8> {
    let error = Error::new(0, ErrorCode::TOO_MANY_CONNECTIONS, "server is full");
    natter_codec::Frame::from(error)
        .to_bytes()
        .map(|bytes| bytes.to_vec())
        .unwrap_or_default()
}

/// Tells a plain-TCP client over the process limit why it is closed, then reads what it
/// sent: closing with unread bytes would reset the connection and could lose the ERROR.
async fn refuse(stream: std::net::TcpStream, plain: bool) {
    let Ok(mut stream) = TcpStream::from_std(stream) else {
        return;
    };
    if plain {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            stream.write_all(&full_error()).await?;
            stream.shutdown().await?;
            let mut sink = [0; 1024];
            while stream.read(&mut sink).await? > 0 {}
            Ok::<_, io::Error>(())
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn two_listeners_share_one_port() {
        let first = bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        let second = bind_tcp(addr).unwrap();
        assert_eq!(second.local_addr().unwrap(), addr);
    }
}
