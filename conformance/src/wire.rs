//! A raw protocol connection for scenarios: frames in, frames out, nothing hidden.
//!
//! The runner checks a server rule by rule, so it must see every frame the server sends and
//! send frames no well-behaved client would (oversized, out of order, from the wrong side).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use natter_codec::frame::{Hello, Ready, Resume, Synced};
use natter_codec::types::Features;
use natter_codec::{DEFAULT_MAX_FRAME_SIZE, ErrorCode, Frame, MAX_FRAME_SIZE_CAP, VERSION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Failure;

/// How long a scenario waits for an answer before it fails.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// One connection to the server under test.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    /// The READY, once the handshake is done.
    pub ready: Option<Ready>,
}

impl Conn {
    /// Opens a TCP connection.
    pub async fn open(addr: &str) -> Result<Self, Failure> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| Failure::new(format!("connect {addr}: {e}")))?;
        stream.set_nodelay(true).ok();
        Ok(Self {
            stream,
            buf: BytesMut::new(),
            ready: None,
        })
    }

    /// Opens a connection and completes HELLO/READY with `token` and `features`.
    pub async fn ready(addr: &str, token: &str, features: Features) -> Result<Self, Failure> {
        let mut conn = Self::open(addr).await?;
        conn.send(hello(token, features)).await?;
        match conn.recv().await? {
            Frame::Ready(ready) => conn.ready = Some(ready),
            other => return Err(Failure::new(format!("expected READY, got {other:?}"))),
        }
        Ok(conn)
    }

    /// Like [`Conn::ready`], then RESUME from the inbox head, waiting for SYNCED.
    pub async fn live(addr: &str, token: &str, features: Features) -> Result<Self, Failure> {
        let mut conn = Self::ready(addr, token, features).await?;
        let after = conn.inbox_head();
        conn.send(Resume { request: 1, after }.into()).await?;
        conn.expect(
            |f| matches!(f, Frame::Synced(Synced { request: 1, .. })),
            "SYNCED",
        )
        .await?;
        Ok(conn)
    }

    /// The inbox head READY announced.
    pub fn inbox_head(&self) -> u64 {
        self.ready.as_ref().map_or(0, |ready| ready.inbox_head)
    }

    /// Writes one frame.
    pub async fn send(&mut self, frame: Frame) -> Result<(), Failure> {
        let bytes = frame
            .to_bytes()
            .map_err(|e| Failure::new(format!("encode: {e}")))?;
        self.send_raw(&bytes).await
    }

    /// Writes bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|e| Failure::new(format!("write: {e}")))
    }

    /// Reads the next frame, failing after [`ANSWER_TIMEOUT`] or at the end of the stream.
    pub async fn recv(&mut self) -> Result<Frame, Failure> {
        match tokio::time::timeout(ANSWER_TIMEOUT, self.read_frame()).await {
            Ok(Ok(Some(frame))) => Ok(frame),
            Ok(Ok(None)) => Err(Failure::new("the server closed the connection")),
            Ok(Err(failure)) => Err(failure),
            Err(_) => Err(Failure::new("no frame within the answer timeout")),
        }
    }

    async fn read_frame(&mut self) -> Result<Option<Frame>, Failure> {
        loop {
            let limit = MAX_FRAME_SIZE_CAP;
            match natter_codec::decode_frame(&mut self.buf, limit) {
                Ok(Some(frame)) => return Ok(Some(frame)),
                Ok(None) => {}
                Err(e) => {
                    return Err(Failure::new(format!(
                        "the server sent a malformed frame: {e}"
                    )));
                }
            }
            let read = self.stream.read_buf(&mut self.buf).await;
            match read {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) => return Err(Failure::new(format!("read: {e}"))),
            }
        }
    }

    /// Reads frames until one matches, answering server PINGs and skipping the rest
    /// (pushes such as PRESENCE may interleave with any answer).
    pub async fn expect(
        &mut self,
        wanted: impl Fn(&Frame) -> bool,
        what: &str,
    ) -> Result<Frame, Failure> {
        loop {
            let frame = self
                .recv()
                .await
                .map_err(|f| f.context(&format!("waiting for {what}")))?;
            if wanted(&frame) {
                return Ok(frame);
            }
            if let Frame::Ping(ping) = &frame {
                self.send(natter_codec::frame::Pong { nonce: ping.nonce }.into())
                    .await?;
            }
        }
    }

    /// Expects a connection error with `code`, then the end of the stream ([NWP-5.5-1]).
    pub async fn expect_close(&mut self, code: ErrorCode) -> Result<(), Failure> {
        let frame = self
            .expect(|f| matches!(f, Frame::Error(_)), "a closing ERROR")
            .await?;
        if let Frame::Error(error) = frame {
            if error.code != code {
                return Err(Failure::new(format!(
                    "expected ERROR {code:?}, got {:?}",
                    error.code
                )));
            }
        }
        match tokio::time::timeout(ANSWER_TIMEOUT, self.read_frame()).await {
            Ok(Ok(None)) | Ok(Err(_)) => Ok(()),
            Ok(Ok(Some(frame))) => Err(Failure::new(format!(
                "the connection stayed open after a closing ERROR and sent {:?}",
                frame.frame_type()
            ))),
            Err(_) => Err(Failure::new(
                "the connection stayed open after a closing ERROR",
            )),
        }
    }

    /// Expects the answer to `request`: the frame if it is not an ERROR.
    pub async fn answer(&mut self, request: u64) -> Result<Frame, Failure> {
        let frame = self
            .expect(
                |f| f.request() == Some(request),
                &format!("the answer to request {request}"),
            )
            .await?;
        if let Frame::Error(error) = &frame {
            return Err(Failure::new(format!(
                "request {request} failed: {:?} {}",
                error.code, error.message
            )));
        }
        Ok(frame)
    }

    /// Expects an ERROR with `code` answering `request`, and the connection to stay usable.
    pub async fn answer_error(&mut self, request: u64, code: ErrorCode) -> Result<(), Failure> {
        let frame = self
            .expect(
                |f| f.request() == Some(request),
                &format!("the answer to request {request}"),
            )
            .await?;
        match frame {
            Frame::Error(error) if error.code == code => Ok(()),
            other => Err(Failure::new(format!(
                "expected ERROR {code:?}, got {other:?}"
            ))),
        }
    }
}

/// A HELLO for protocol v1.
pub fn hello(token: &str, features: Features) -> Frame {
    Hello {
        min_version: VERSION,
        max_version: VERSION,
        features,
        max_frame_size: DEFAULT_MAX_FRAME_SIZE,
        token: Bytes::copy_from_slice(token.as_bytes()),
        agent: "natter-conformance".into(),
    }
    .into()
}
