//! The async client against a scripted fake server on a real TCP socket: a connection dropped
//! mid-send is resumed, and unacknowledged sends are repeated with the same client_msg_id.

#![allow(clippy::unwrap_used, reason = "a test: a failed step should panic")]

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use natter_client::{
    Client, Config, ConnectionState, Event, MemoryCursorStore, OutgoingMessage, Request,
};
use natter_codec::frame::{Deliver, Ready, SendAck, Synced};
use natter_codec::types::{Event as WireEvent, EventKind};
use natter_codec::{DEFAULT_MAX_FRAME_SIZE, Frame, FrameCodec};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_util::codec::Framed;

const CONV: &str = "d/alice/bob";

/// One scripted server connection.
struct Peer(Framed<TcpStream, FrameCodec>);

impl Peer {
    async fn accept(listener: &TcpListener) -> Self {
        let (stream, _) = listener.accept().await.unwrap();
        Self(Framed::new(stream, FrameCodec::new(DEFAULT_MAX_FRAME_SIZE)))
    }

    /// The next frame that is not a heartbeat or an ACK.
    async fn recv(&mut self) -> Frame {
        loop {
            match self.0.next().await.unwrap().unwrap() {
                Frame::Ping(_) | Frame::Ack(_) => {}
                frame => return frame,
            }
        }
    }

    async fn send(&mut self, frame: impl Into<Frame>) {
        self.0.send(frame.into()).await.unwrap();
    }

    /// HELLO, READY, RESUME: returns the RESUME's request id and `after`.
    async fn handshake(&mut self, inbox_head: u64) -> (u64, u64) {
        assert!(matches!(self.recv().await, Frame::Hello(_)));
        self.send(Ready {
            version: 1,
            max_frame_size: 65_536,
            heartbeat_ms: 30_000,
            user: "alice".into(),
            device: "laptop".into(),
            inbox_head,
            ..Ready::default()
        })
        .await;
        match self.recv().await {
            Frame::Resume(resume) => (resume.request, resume.after),
            other => panic!("expected RESUME, got {other:?}"),
        }
    }

    /// The next SEND's request id and client_msg_id.
    async fn recv_send(&mut self) -> (u64, u64) {
        match self.recv().await {
            Frame::Send(send) => (send.request, send.client_msg_id),
            other => panic!("expected SEND, got {other:?}"),
        }
    }
}

fn ack(request: u64, seq: u64, duplicate: bool) -> SendAck {
    SendAck {
        request,
        seq,
        timestamp: 1,
        duplicate,
    }
}

#[tokio::test]
async fn a_dropped_connection_is_resumed_and_sends_are_repeated_with_the_same_id() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("tcp://{}", listener.local_addr().unwrap());
    let store = MemoryCursorStore::default();
    let mut config = Config::new(&url, "token")
        .unwrap()
        .with_cursor_store(store.clone());
    config.backoff_initial = Duration::from_millis(10);

    let server = tokio::spawn(async move {
        let mut first = Peer::accept(&listener).await;
        let (resume, after) = first.handshake(0).await;
        assert_eq!(after, 0);
        first
            .send(Synced {
                request: resume,
                inbox_head: 0,
            })
            .await;
        let sends = [
            first.recv_send().await,
            first.recv_send().await,
            first.recv_send().await,
        ];
        first.send(ack(sends[0].0, 1, false)).await;
        first
            .send(Deliver {
                inbox_seq: 1,
                conversation: CONV.into(),
                event: WireEvent {
                    seq: 1,
                    kind: EventKind::MESSAGE,
                    sender: "alice".into(),
                    client_msg_id: sends[0].1,
                    body: Bytes::from_static(b"one"),
                    ..WireEvent::default()
                },
            })
            .await;
        drop(first); // the connection dies with two sends unanswered

        let mut second = Peer::accept(&listener).await;
        let (resume, after) = second.handshake(1).await;
        assert_eq!(after, 1, "resumes after the delivery it processed");
        let again = [second.recv_send().await, second.recv_send().await];
        assert_eq!(
            again.map(|s| s.1),
            [sends[1].1, sends[2].1],
            "same ids, same order"
        );
        // The first attempt had reached the server: a duplicate, with its original seq.
        second.send(ack(again[0].0, 2, true)).await;
        second.send(ack(again[1].0, 3, false)).await;
        second
            .send(Synced {
                request: resume,
                inbox_head: 1,
            })
            .await;
        // Keep the connection open until the client is done.
        while second.0.next().await.is_some() {}
    });

    let (client, mut events) = timeout(Duration::from_secs(10), Client::connect(config))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(client.user(), "alice");
    let mut pending = Vec::new();
    for text in ["one", "two", "three"] {
        let message = OutgoingMessage::text(CONV, text);
        pending.push(client.enqueue(Request::Send(message)).await.unwrap());
    }
    let mut seqs = Vec::new();
    for reply in pending {
        let sent = timeout(Duration::from_secs(10), reply.sent())
            .await
            .unwrap()
            .unwrap();
        seqs.push(sent.seq);
    }
    assert_eq!(seqs, [1, 2, 3]);

    let mut saw = Vec::new();
    while let Ok(Some(event)) = timeout(Duration::from_secs(10), events.next()).await {
        match event {
            Event::Message(message) => saw.push(message.text().unwrap().to_owned()),
            Event::Connection(ConnectionState::Synced { .. }) if saw.len() == 1 => break,
            _ => {}
        }
    }
    assert_eq!(saw, ["one"]);
    client.close().await;
    assert_eq!(natter_client::CursorStore::load(&store).inbox, Some(1));
    server.await.unwrap();
}

#[tokio::test]
async fn a_refused_token_fails_connect_with_its_code() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("tcp://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut peer = Peer::accept(&listener).await;
        assert!(matches!(peer.recv().await, Frame::Hello(_)));
        let refusal = natter_codec::frame::Error::new(
            0,
            natter_codec::ErrorCode::UNAUTHENTICATED,
            "bad token",
        );
        peer.send(refusal).await;
    });
    let error = Client::connect(Config::new(&url, "nope").unwrap())
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(natter_codec::ErrorCode::UNAUTHENTICATED));
}
