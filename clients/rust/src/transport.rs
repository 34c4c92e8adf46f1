//! Where the server is and how frames travel to it: TCP, TLS or WebSocket.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use natter_codec::{Frame, FrameCodec, split_frame};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::codec::Framed;

use crate::{Error, Result};

/// How frames travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// The natter byte stream over plain TCP (`tcp://`).
    Tcp,
    /// The natter byte stream over TLS (`tls://`).
    Tls,
    /// One frame per binary WebSocket message (`ws://`).
    Ws,
    /// WebSocket over TLS (`wss://`).
    Wss,
}

impl Scheme {
    /// Whether the transport runs over TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Self::Tls | Self::Wss)
    }
}

/// A server address: `tcp://host:port`, `tls://host:port`, `ws://host:port/ws` or
/// `wss://host/ws`.
///
/// ```
/// use natter_client::transport::{Endpoint, Scheme};
///
/// let endpoint: Endpoint = "ws://127.0.0.1:7480".parse()?;
/// assert_eq!(endpoint.scheme, Scheme::Ws);
/// assert_eq!(endpoint.path, "/ws");
/// # Ok::<(), natter_client::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The transport.
    pub scheme: Scheme,
    /// Host name or IP address (without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// The WebSocket path (`/ws` unless given).
    pub path: String,
}

impl FromStr for Endpoint {
    type Err = Error;

    fn from_str(url: &str) -> Result<Self> {
        let bad = |why: &str| Error::Config(format!("bad server URL {url:?}: {why}"));
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let (scheme, default_port) = match scheme {
            "tcp" => (Scheme::Tcp, 7400),
            "tls" => (Scheme::Tls, 7443),
            "ws" => (Scheme::Ws, 7480),
            "wss" => (Scheme::Wss, 443),
            _ => return Err(bad("the scheme must be tcp, tls, ws or wss")),
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => {
                (host, port.parse().map_err(|_| bad("bad port"))?)
            }
            _ => (authority, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let path = if path.is_empty() { "/ws" } else { path };
        Ok(Self {
            scheme,
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Tcp => "tcp",
            Scheme::Tls => "tls",
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
        };
        let host = match self.host.contains(':') {
            true => format!("[{}]", self.host),
            false => self.host.clone(),
        };
        write!(f, "{scheme}://{host}:{}", self.port)?;
        if matches!(self.scheme, Scheme::Ws | Scheme::Wss) {
            f.write_str(&self.path)?;
        }
        Ok(())
    }
}

/// A rustls client configuration (ring provider) trusting the web PKI roots, or only the CA
/// certificates of a PEM file when one is given.
pub fn tls_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| Error::Config(format!("reading {}: {e}", path.display())))?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An open connection that reads and writes whole frames.
pub(crate) enum Transport {
    Stream(Framed<Box<dyn Io>, FrameCodec>),
    WebSocket {
        socket: Box<WebSocketStream<Box<dyn Io>>>,
        max_frame_size: u64,
    },
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Stream(_) => "Transport::Stream",
            Self::WebSocket { .. } => "Transport::WebSocket",
        })
    }
}

impl Transport {
    /// Opens a connection; `tls` is needed for `tls://` and `wss://`.
    pub(crate) async fn connect(
        endpoint: &Endpoint,
        tls: Option<&Arc<ClientConfig>>,
        max_frame_size: u64,
    ) -> Result<Self> {
        let transport = |e: std::io::Error| Error::Transport(format!("{endpoint}: {e}"));
        let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(transport)?;
        tcp.set_nodelay(true).map_err(transport)?;
        let io: Box<dyn Io> = if endpoint.scheme.is_tls() {
            let config = tls.ok_or_else(|| Error::Config("no TLS configuration".into()))?;
            let name = ServerName::try_from(endpoint.host.clone())
                .map_err(|e| Error::Config(format!("bad TLS server name: {e}")))?;
            let stream = TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .map_err(transport)?;
            Box::new(stream)
        } else {
            Box::new(tcp)
        };
        Ok(match endpoint.scheme {
            Scheme::Tcp | Scheme::Tls => {
                Self::Stream(Framed::new(io, FrameCodec::new(max_frame_size)))
            }
            Scheme::Ws | Scheme::Wss => {
                let http = if endpoint.scheme == Scheme::Wss {
                    "wss"
                } else {
                    "ws"
                };
                let url = format!(
                    "{http}://{}:{}{}",
                    endpoint.host, endpoint.port, endpoint.path
                );
                let (socket, _) = tokio_tungstenite::client_async(url, io)
                    .await
                    .map_err(|e| Error::Transport(format!("{endpoint}: {e}")))?;
                Self::WebSocket {
                    socket: Box::new(socket),
                    max_frame_size,
                }
            }
        })
    }

    /// The next frame; `None` when the server closed the connection. Cancel-safe.
    pub(crate) async fn recv(&mut self) -> Option<Result<Frame>> {
        match self {
            Self::Stream(framed) => framed
                .next()
                .await
                .map(|frame| frame.map_err(|e| Error::Transport(e.to_string()))),
            Self::WebSocket {
                socket,
                max_frame_size,
            } => loop {
                let message = match socket.next().await? {
                    Ok(message) => message,
                    Err(e) => return Some(Err(Error::Transport(e.to_string()))),
                };
                match message {
                    Message::Binary(bytes) => return Some(one_frame(&bytes, *max_frame_size)),
                    Message::Text(_) => {
                        return Some(Err(Error::Protocol("text WebSocket message".into())));
                    }
                    Message::Close(_) => return None,
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                }
            },
        }
    }

    /// Writes frames in order and flushes them.
    pub(crate) async fn send(&mut self, frames: Vec<Frame>) -> Result<()> {
        let failed = |e: &dyn fmt::Display| Error::Transport(e.to_string());
        match self {
            Self::Stream(framed) => {
                for frame in frames {
                    framed.feed(frame).await.map_err(|e| failed(&e))?;
                }
                SinkExt::<Frame>::flush(framed)
                    .await
                    .map_err(|e| failed(&e))
            }
            Self::WebSocket { socket, .. } => {
                for frame in frames {
                    let bytes = frame.to_bytes().map_err(|e| failed(&e))?;
                    socket
                        .feed(Message::Binary(bytes))
                        .await
                        .map_err(|e| failed(&e))?;
                }
                socket.flush().await.map_err(|e| failed(&e))
            }
        }
    }
}

/// Decodes a WebSocket message that must hold exactly one complete frame.
fn one_frame(message: &[u8], max_frame_size: u64) -> Result<Frame> {
    let mut buf = BytesMut::from(message);
    let frame = split_frame(&mut buf, max_frame_size)
        .map_err(|e| Error::Protocol(e.to_string()))?
        .filter(|_| buf.is_empty())
        .ok_or_else(|| Error::Protocol("a WebSocket message must hold exactly one frame".into()))?;
    Frame::decode(frame).map_err(|e| Error::Protocol(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        let tcp: Endpoint = "tcp://localhost:7400".parse().unwrap();
        assert_eq!(
            (tcp.scheme, tcp.host.as_str(), tcp.port),
            (Scheme::Tcp, "localhost", 7400)
        );
        let v6: Endpoint = "tls://[::1]:9000".parse().unwrap();
        assert_eq!(
            (v6.scheme, v6.host.as_str(), v6.port),
            (Scheme::Tls, "::1", 9000)
        );
        let ws: Endpoint = "wss://chat.example.com/natter/ws".parse().unwrap();
        assert_eq!((ws.port, ws.path.as_str()), (443, "/natter/ws"));
        assert_eq!(ws.to_string(), "wss://chat.example.com:443/natter/ws");
        for bad in ["localhost:7400", "http://x", "tcp://:1", "tcp://x:port"] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn websocket_messages_hold_one_frame() {
        let ping = Frame::from(natter_codec::frame::Ping { nonce: 7 });
        let bytes = ping.to_bytes().unwrap();
        assert_eq!(one_frame(&bytes, 1024).unwrap(), ping);
        let doubled = [&bytes[..], &bytes[..]].concat();
        assert!(one_frame(&doubled, 1024).is_err());
        assert!(one_frame(&bytes[..2], 1024).is_err());
    }
}
