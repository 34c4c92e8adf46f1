//! The async driver over real TCP sockets: the link handshake, requests through ROUTED, and
//! a restart that finds what was acknowledged.

// Test code: a panic is a failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use natter_broker::{Backend, BrokerConfig, ClusterConfig};
use natter_codec::frame::{History, LinkHello, Resume, Routed, Send, SessionOpen};
use natter_codec::types::{Direction, EventKind, NodeRole};
use natter_codec::{ErrorCode, Frame, FrameCodec, ids};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_util::codec::Framed;

type Link = Framed<TcpStream, FrameCodec>;

fn config(dir: &std::path::Path, backend: Backend) -> BrokerConfig {
    BrokerConfig {
        node: "b1".into(),
        data_dir: dir.to_path_buf(),
        backend,
        cluster: ClusterConfig {
            ring_version: 4,
            secret: "s3cret".into(),
            ..ClusterConfig::default()
        },
        ..BrokerConfig::default()
    }
}

async fn start(
    config: BrokerConfig,
) -> (
    std::net::SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        natter_broker::run(config, listener, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (addr, stop, task)
}

async fn next(link: &mut Link) -> Option<Frame> {
    tokio::time::timeout(Duration::from_secs(10), link.next())
        .await
        .expect("no frame within 10 s")
        .map(|f| f.unwrap())
}

async fn hello(
    addr: std::net::SocketAddr,
    secret: &str,
    ring_version: u64,
) -> (Link, Option<Frame>) {
    let socket = TcpStream::connect(addr).await.unwrap();
    let mut link = Framed::new(socket, FrameCodec::new(1 << 20));
    let hello = LinkHello {
        version: 1,
        node: "e1".into(),
        role: NodeRole::EDGE,
        ring_version,
        secret: Bytes::copy_from_slice(secret.as_bytes()),
    };
    link.send(Frame::from(hello)).await.unwrap();
    let answer = next(&mut link).await;
    (link, answer)
}

/// Sends a client frame for session 1 of alice/phone and returns the first answer.
async fn call(link: &mut Link, frame: Frame) -> Frame {
    let routed = Routed {
        session: 1,
        user: "alice".into(),
        device: "phone".into(),
        frame: frame.to_bytes().unwrap(),
    };
    link.send(Frame::from(routed)).await.unwrap();
    loop {
        match next(link).await {
            Some(Frame::Routed(routed)) => {
                let inner = Frame::decode(routed.frame).unwrap();
                // Pushes have no request id; SYNCED 0 answers SESSION_OPEN.
                if inner.request().is_some_and(|r| r != 0) {
                    return inner;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn message(request: u64, client_msg_id: u64) -> Frame {
    Send {
        request,
        conversation: ids::direct_conversation("alice", "bob").into(),
        client_msg_id,
        kind: EventKind::MESSAGE,
        target: 0,
        content_type: "".into(),
        body: Bytes::from_static(b"hello over tcp"),
    }
    .into()
}

#[tokio::test]
async fn the_handshake_checks_secret_and_ring_version() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, stop, task) = start(config(dir.path(), Backend::Redb)).await;
    let (mut link, answer) = hello(addr, "wrong", 4).await;
    assert!(matches!(answer, Some(Frame::Error(e)) if e.code == ErrorCode::UNAUTHENTICATED));
    assert!(next(&mut link).await.is_none(), "closed after the refusal");
    let (_, answer) = hello(addr, "s3cret", 3).await;
    assert!(matches!(answer, Some(Frame::Error(e)) if e.code == ErrorCode::RING_MISMATCH));
    let (_, answer) = hello(addr, "s3cret", 4).await;
    assert!(matches!(answer, Some(Frame::LinkReady(r)) if r.node == "b1" && r.ring_version == 4));
    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn acknowledged_messages_survive_a_restart() {
    for backend in [Backend::Redb, Backend::Sled] {
        let dir = tempfile::tempdir().unwrap();
        let (addr, stop, task) = start(config(dir.path(), backend)).await;
        let (mut link, _) = hello(addr, "s3cret", 4).await;
        let open = SessionOpen {
            session: 1,
            user: "alice".into(),
            device: "phone".into(),
            lease_ms: 30_000,
        };
        link.send(Frame::from(open)).await.unwrap();
        let synced = call(
            &mut link,
            Resume {
                request: 1,
                after: 0,
            }
            .into(),
        )
        .await;
        assert!(matches!(&synced, Frame::Synced(_)), "{synced:?}");
        for i in 1..=3 {
            let ack = call(&mut link, message(10 + i, i)).await;
            assert!(
                matches!(&ack, Frame::SendAck(a) if a.seq == i && !a.duplicate),
                "{ack:?}"
            );
        }
        drop(link);
        stop.send(()).unwrap();
        task.await.unwrap();

        let (addr, stop, task) = start(config(dir.path(), backend)).await;
        let (mut link, _) = hello(addr, "s3cret", 4).await;
        let retry = call(&mut link, message(20, 2)).await;
        assert!(
            matches!(&retry, Frame::SendAck(a) if a.seq == 2 && a.duplicate),
            "{retry:?}"
        );
        let history = History {
            request: 21,
            conversation: ids::direct_conversation("alice", "bob").into(),
            anchor: 0,
            direction: Direction::FORWARD,
            limit: 10,
        };
        let Frame::HistoryPage(page) = call(&mut link, history.into()).await else {
            panic!("no history page")
        };
        let seqs: Vec<u64> = page.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2, 3], "{backend:?}");
        stop.send(()).unwrap();
        task.await.unwrap();
    }
}

/// How `natter serve` joins edge and broker: one half of an in-memory duplex stream.
#[tokio::test]
async fn a_duplex_stream_is_a_link_too() {
    let storage = std::sync::Arc::new(natter_broker::storage::MemoryStorage::new());
    let dir = tempfile::tempdir().unwrap();
    let broker =
        natter_broker::Broker::with_storage(config(dir.path(), Backend::Redb), storage).unwrap();
    let (edge_side, broker_side) = tokio::io::duplex(64 * 1024);
    let serving = tokio::spawn({
        let broker = broker.clone();
        async move { broker.serve_link(broker_side).await }
    });
    let mut link = Framed::new(edge_side, FrameCodec::new(1 << 20));
    let hello = LinkHello {
        version: 1,
        node: "e1".into(),
        role: NodeRole::EDGE,
        ring_version: 4,
        secret: Bytes::from_static(b"s3cret"),
    };
    link.send(Frame::from(hello)).await.unwrap();
    let ready = tokio::time::timeout(Duration::from_secs(10), link.next())
        .await
        .unwrap();
    assert!(matches!(ready, Some(Ok(Frame::LinkReady(_)))), "{ready:?}");
    let routed = Routed {
        session: 1,
        user: "alice".into(),
        device: "phone".into(),
        frame: message(1, 1).to_bytes().unwrap(),
    };
    link.send(Frame::from(routed)).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), link.next())
        .await
        .unwrap();
    let Some(Ok(Frame::Routed(answer))) = answer else {
        panic!("{answer:?}")
    };
    let ack = Frame::decode(answer.frame).unwrap();
    assert!(matches!(&ack, Frame::SendAck(a) if a.seq == 1), "{ack:?}");
    drop(link);
    serving.await.unwrap().unwrap();
    broker.shutdown().await;
}
