//! Cluster links on a byte stream: the LINK_HELLO / LINK_READY handshake (both sides) and
//! the frame pump between a stream and the shard task.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use natter_codec::frame::{Error, LinkHello, LinkReady};
use natter_codec::types::NodeRole;
use natter_codec::{CodecError, ErrorCode, Frame, FrameCodec};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::codec::Framed;

use crate::server::Input;
use crate::shard::{LinkId, Peer};

/// How long a peer has to complete the handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a link ended or never started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The stream failed or carried an invalid frame.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The peer broke the link protocol, or was refused with this code.
    #[error("link refused: {0:?}: {1}")]
    Refused(ErrorCode, String),
    /// The peer did not finish the handshake in time.
    #[error("link handshake timed out")]
    Timeout,
    /// The broker is shutting down.
    #[error("broker shutting down")]
    ShuttingDown,
}

/// A framed link stream.
pub(crate) type LinkStream<S> = Framed<S, FrameCodec>;

/// What both ends of a link must agree on.
#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    pub(crate) node: String,
    pub(crate) ring_version: u64,
    pub(crate) secret: String,
}

/// Runs the accepting side of the handshake; on success the peer is known and READY sent.
pub(crate) async fn accept<S>(
    stream: &mut LinkStream<S>,
    us: &Credentials,
) -> Result<Peer, LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let first = tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.next())
        .await
        .map_err(|_| LinkError::Timeout)?;
    let hello = match first {
        Some(Ok(Frame::LinkHello(hello))) => hello,
        Some(Ok(other)) => {
            let message = format!("{:?} before LINK_HELLO", other.frame_type());
            return refuse(stream, ErrorCode::PROTOCOL_VIOLATION, message).await;
        }
        Some(Err(error)) => return Err(error.into()),
        None => {
            return Err(LinkError::Refused(
                ErrorCode::PROTOCOL_VIOLATION,
                "closed".into(),
            ));
        }
    };
    if hello.version != natter_codec::VERSION {
        return refuse(
            stream,
            ErrorCode::UNSUPPORTED_VERSION,
            "link version".into(),
        )
        .await;
    }
    if hello.secret != us.secret.as_bytes() {
        return refuse(
            stream,
            ErrorCode::UNAUTHENTICATED,
            "wrong cluster secret".into(),
        )
        .await;
    }
    if hello.ring_version != us.ring_version {
        let message = format!(
            "ring version {} here, {} there",
            us.ring_version, hello.ring_version
        );
        return refuse(stream, ErrorCode::RING_MISMATCH, message).await;
    }
    if !matches!(hello.role, NodeRole::EDGE | NodeRole::BROKER) || hello.node.is_empty() {
        return refuse(
            stream,
            ErrorCode::PROTOCOL_VIOLATION,
            "bad node or role".into(),
        )
        .await;
    }
    let ready = LinkReady {
        node: us.node.as_str().into(),
        ring_version: us.ring_version,
    };
    stream.send(Frame::from(ready)).await?;
    Ok(Peer {
        node: hello.node.to_string(),
        role: hello.role,
        dialed: false,
    })
}

/// Runs the dialing side of the handshake towards broker `expected`.
pub(crate) async fn dial<S>(
    stream: &mut LinkStream<S>,
    us: &Credentials,
    expected: &str,
) -> Result<Peer, LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let hello = LinkHello {
        version: natter_codec::VERSION,
        node: us.node.as_str().into(),
        role: NodeRole::BROKER,
        ring_version: us.ring_version,
        secret: us.secret.clone().into_bytes().into(),
    };
    stream.send(Frame::from(hello)).await?;
    let answer = tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.next())
        .await
        .map_err(|_| LinkError::Timeout)?;
    match answer {
        Some(Ok(Frame::LinkReady(ready)))
            if ready.ring_version == us.ring_version && ready.node == expected =>
        {
            Ok(Peer {
                node: expected.to_string(),
                role: NodeRole::BROKER,
                dialed: true,
            })
        }
        Some(Ok(Frame::LinkReady(ready))) => Err(LinkError::Refused(
            ErrorCode::RING_MISMATCH,
            format!("{} at ring version {}", ready.node, ready.ring_version),
        )),
        Some(Ok(Frame::Error(error))) => {
            Err(LinkError::Refused(error.code, error.message.to_string()))
        }
        Some(Ok(other)) => Err(LinkError::Refused(
            ErrorCode::PROTOCOL_VIOLATION,
            format!("{:?} instead of LINK_READY", other.frame_type()),
        )),
        Some(Err(error)) => Err(error.into()),
        None => Err(LinkError::Refused(
            ErrorCode::PROTOCOL_VIOLATION,
            "closed".into(),
        )),
    }
}

async fn refuse<S>(
    stream: &mut LinkStream<S>,
    code: ErrorCode,
    message: String,
) -> Result<Peer, LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // The peer may already be gone; the refusal stands either way.
    let _ = stream
        .send(Frame::from(Error::new(0, code, message.clone())))
        .await;
    Err(LinkError::Refused(code, message))
}

/// Moves frames between an established link and the shard task: incoming frames go to
/// `inputs`, frames from `outbound` are written. Ends when either side closes; the shard
/// closes a link by dropping its sender after the last frame.
pub(crate) async fn pump<S>(
    stream: LinkStream<S>,
    link: LinkId,
    mut outbound: mpsc::Receiver<Frame>,
    inputs: &mpsc::Sender<Input>,
) -> Result<(), LinkError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sink, mut source) = stream.split();
    let mut writer = tokio::spawn(async move {
        while let Some(frame) = outbound.recv().await {
            sink.send(frame).await?;
        }
        sink.close().await
    });
    let result = loop {
        tokio::select! {
            next = source.next() => match next {
                Some(Ok(frame)) => {
                    if inputs.send(Input::Frame { link, frame }).await.is_err() {
                        break Err(LinkError::ShuttingDown);
                    }
                }
                Some(Err(error)) => break Err(error.into()),
                None => break Ok(()),
            },
            _ = &mut writer => break Ok(()),
        }
    };
    writer.abort();
    result
}
