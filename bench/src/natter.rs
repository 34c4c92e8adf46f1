//! natter connections for the load generator, spoken with the codec directly.
//!
//! A load generator needs none of the SDK's reconnect and retry machinery, and must not hide
//! what it measures behind it: one connection is HELLO, READY, RESUME, then frames.

use std::io;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use natter_codec::frame::{Ack, Hello, Ping, Resume};
use natter_codec::types::Features;
use natter_codec::{DEFAULT_MAX_FRAME_SIZE, Frame, FrameCodec, VERSION};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::codec::{FramedRead, FramedWrite};

/// RESUME's request id, far above any SEND's (which count from 1): a request id must be
/// unique among a connection's outstanding requests.
const RESUME_REQUEST: u64 = 1 << 40;

/// The receiving half of a connection.
pub type Reader = FramedRead<OwnedReadHalf, FrameCodec>;
/// The sending half of a connection.
pub type Writer = FramedWrite<OwnedWriteHalf, FrameCodec>;

/// An authenticated connection whose inbox is streaming.
pub struct Connection {
    pub reader: Reader,
    pub writer: Writer,
    /// The server's heartbeat interval.
    pub heartbeat_ms: u64,
}

fn other(message: String) -> io::Error {
    io::Error::other(message)
}

/// Connects, authenticates with `token` and resumes from the inbox head, so only new traffic
/// arrives.
pub async fn connect(addr: &str, token: &str) -> io::Result<Connection> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (read, write) = stream.into_split();
    let mut reader = FramedRead::new(read, FrameCodec::new(DEFAULT_MAX_FRAME_SIZE));
    let mut writer = FramedWrite::new(write, FrameCodec::new(DEFAULT_MAX_FRAME_SIZE));
    let hello = Hello {
        min_version: VERSION,
        max_version: VERSION,
        features: Features::NONE,
        max_frame_size: DEFAULT_MAX_FRAME_SIZE,
        token: Bytes::copy_from_slice(token.as_bytes()),
        agent: "natter-bench".into(),
    };
    send(&mut writer, hello.into()).await?;
    let ready = match next(&mut reader).await? {
        Frame::Ready(ready) => ready,
        Frame::Error(error) => {
            return Err(other(format!(
                "refused: {:?} {}",
                error.code, error.message
            )));
        }
        frame => {
            return Err(other(format!(
                "expected READY, got {:?}",
                frame.frame_type()
            )));
        }
    };
    send(
        &mut writer,
        Resume {
            request: RESUME_REQUEST,
            after: ready.inbox_head,
        }
        .into(),
    )
    .await?;
    Ok(Connection {
        reader,
        writer,
        heartbeat_ms: ready.heartbeat_ms,
    })
}

/// Writes one frame.
pub async fn send(writer: &mut Writer, frame: Frame) -> io::Result<()> {
    writer.send(frame).await.map_err(|e| other(e.to_string()))
}

/// Reads one frame; the end of the stream is an error.
pub async fn next(reader: &mut Reader) -> io::Result<Frame> {
    match reader.next().await {
        Some(frame) => frame.map_err(|e| other(e.to_string())),
        None => Err(other("connection closed".into())),
    }
}

/// A heartbeat.
pub fn ping() -> Frame {
    Ping { nonce: 0 }.into()
}

/// A cumulative inbox ack.
pub fn ack(inbox_seq: u64) -> Frame {
    Ack { inbox_seq }.into()
}
