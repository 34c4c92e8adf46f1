//! Test support: an edge on free ports, fake brokers behind in-process links, and a raw
//! protocol client.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use natter_codec::frame::{
    ConversationList, Done, Hello, HistoryPage, LinkReady, Pong, Presence, Ready, Routed, SendAck,
    Synced,
};
use natter_codec::ring::Ring;
use natter_codec::types::{Features, Status};
use natter_codec::{Frame, FrameCodec, MAX_FRAME_SIZE_CAP, decode_frame};
use natter_edge::{BoxedStream, ConnectFuture, Edge, EdgeConfig, Metrics, TokenKey, TokenKeys};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::codec::FramedRead;

/// Every wait in these tests is bounded by this, so a bug fails a test instead of hanging it.
pub const HANG_GUARD: Duration = Duration::from_secs(20);

pub const SECRET: &str = "test secret";

pub fn keys() -> TokenKeys {
    TokenKeys::new(vec![TokenKey {
        id: "k1".into(),
        secret: SECRET.into(),
    }])
    .unwrap()
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

pub fn token(user: &str, device: &str) -> String {
    keys().mint(user, device, now_ms() + 3_600_000)
}

/// A broker that answers every request at once, from memory.
#[derive(Clone, Default)]
pub struct FakeBroker {
    /// The connector refuses to dial while false.
    pub up: Arc<AtomicBool>,
    /// While set, SEND requests are held until [`FakeBroker::release`].
    pub hold: Arc<AtomicBool>,
    /// While set, the SYNCED answering a RESUME is held until [`FakeBroker::release`], so
    /// that pushes can come before it, as a replay does.
    pub hold_resume: Arc<AtomicBool>,
    held: Arc<Mutex<Vec<Frame>>>,
    links: Arc<Mutex<Vec<mpsc::Sender<Frame>>>>,
    kill: Arc<Notify>,
    seq: Arc<AtomicU64>,
    /// (session, user, device) of every SESSION_OPEN.
    pub opened: Arc<Mutex<Vec<(u64, String, String)>>>,
    /// (user, device) the edge stamped on every ROUTED request.
    pub routed_as: Arc<Mutex<Vec<(String, String)>>>,
}

impl FakeBroker {
    fn new() -> Self {
        let broker = Self::default();
        broker.up.store(true, Ordering::SeqCst);
        broker
    }

    /// Sends a frame to `session` over every current link.
    pub async fn push(&self, session: u64, frame: impl Into<Frame>) {
        let routed = routed(session, frame.into());
        let links = self.links.lock().unwrap().clone();
        for link in links {
            let _ = link.send(routed.clone()).await;
        }
    }

    /// Stops accepting links and cuts the current ones.
    pub fn go_down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.kill.notify_waiters();
    }

    /// Answers the held requests.
    pub async fn release(&self) {
        self.hold.store(false, Ordering::SeqCst);
        self.hold_resume.store(false, Ordering::SeqCst);
        let held: Vec<Frame> = std::mem::take(&mut *self.held.lock().unwrap());
        let links = self.links.lock().unwrap().clone();
        for frame in held {
            for link in &links {
                let _ = link.send(frame.clone()).await;
            }
        }
    }

    async fn serve(self, stream: tokio::io::DuplexStream) {
        let (reader, mut writer) = tokio::io::split(stream);
        let (tx, mut rx) = mpsc::channel::<Frame>(1024);
        self.links.lock().unwrap().push(tx.clone());
        let kill = self.kill.clone();
        let write = tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                let bytes = frame.to_bytes().unwrap();
                if writer.write_all(&bytes).await.is_err() {
                    return;
                }
            }
        });
        let mut frames = FramedRead::new(reader, FrameCodec::new(MAX_FRAME_SIZE_CAP));
        loop {
            let frame = tokio::select! {
                frame = frames.next() => frame,
                _ = kill.notified() => break,
            };
            let Some(Ok(frame)) = frame else { break };
            if let Some(answer) = self.answer(frame) {
                if tx.send(answer).await.is_err() {
                    break;
                }
            }
        }
        self.links
            .lock()
            .unwrap()
            .retain(|link| !link.same_channel(&tx));
        write.abort();
    }

    fn answer(&self, frame: Frame) -> Option<Frame> {
        match frame {
            Frame::LinkHello(hello) => Some(
                LinkReady {
                    node: "fake".into(),
                    ring_version: hello.ring_version,
                }
                .into(),
            ),
            Frame::Ping(ping) => Some(Pong { nonce: ping.nonce }.into()),
            Frame::SessionOpen(open) => {
                let entry = (open.session, open.user.to_string(), open.device.to_string());
                self.opened.lock().unwrap().push(entry);
                None
            }
            Frame::Interest(interest) if interest.ttl_ms > 0 => {
                let presence = Presence {
                    user: interest.users[0].clone(),
                    status: Status::ONLINE,
                    last_seen: 0,
                };
                Some(routed(interest.session, presence.into()))
            }
            Frame::Routed(routed_frame) => {
                let session = routed_frame.session;
                let identity = (
                    routed_frame.user.to_string(),
                    routed_frame.device.to_string(),
                );
                self.routed_as.lock().unwrap().push(identity);
                let answer: Frame = match Frame::decode(routed_frame.frame).ok()? {
                    Frame::Send(send) => {
                        let ack = SendAck {
                            request: send.request,
                            seq: self.seq.fetch_add(1, Ordering::SeqCst) + 1,
                            timestamp: now_ms(),
                            duplicate: false,
                        };
                        if self.hold.load(Ordering::SeqCst) {
                            self.held.lock().unwrap().push(routed(session, ack.into()));
                            return None;
                        }
                        ack.into()
                    }
                    Frame::Resume(resume) => {
                        let synced = Synced {
                            request: resume.request,
                            inbox_head: 0,
                        };
                        if self.hold_resume.load(Ordering::SeqCst) {
                            self.held
                                .lock()
                                .unwrap()
                                .push(routed(session, synced.into()));
                            return None;
                        }
                        synced.into()
                    }
                    Frame::History(history) => HistoryPage {
                        request: history.request,
                        conversation: history.conversation,
                        more: false,
                        events: Vec::new(),
                    }
                    .into(),
                    Frame::Conversations(list) => ConversationList {
                        request: list.request,
                        ..ConversationList::default()
                    }
                    .into(),
                    other => Done {
                        request: other.request()?,
                    }
                    .into(),
                };
                Some(routed(session, answer))
            }
            _ => None,
        }
    }
}

fn routed(session: u64, frame: Frame) -> Frame {
    Routed {
        session,
        user: "".into(),
        device: "".into(),
        frame: frame.to_bytes().unwrap(),
    }
    .into()
}

/// An edge serving on free ports, in front of fake brokers.
pub struct TestEdge {
    pub tcp: SocketAddr,
    pub http: SocketAddr,
    pub tls: Option<SocketAddr>,
    pub metrics: Metrics,
    pub brokers: HashMap<String, FakeBroker>,
    pub ring: Ring,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl TestEdge {
    /// An edge with brokers `ids` (all up), after `tune` adjusted its config.
    pub async fn start(ids: &[&str], tune: impl FnOnce(&mut EdgeConfig)) -> Self {
        let mut config = EdgeConfig {
            tcp: Some("127.0.0.1:0".parse().unwrap()),
            http: Some("127.0.0.1:0".parse().unwrap()),
            token_keys: vec![TokenKey {
                id: "k1".into(),
                secret: SECRET.into(),
            }],
            api_keys: vec!["api-key".into()],
            ..EdgeConfig::default()
        };
        config.cluster.brokers = ids.iter().map(|id| id.to_string()).collect();
        config.timing.link_backoff_min_ms = 10;
        config.timing.link_backoff_max_ms = 50;
        tune(&mut config);
        let ring = Ring::new(
            config.cluster.ring_version,
            config.cluster.brokers.clone(),
            config.cluster.vnodes,
        );
        let brokers: HashMap<String, FakeBroker> = ids
            .iter()
            .map(|id| (id.to_string(), FakeBroker::new()))
            .collect();
        let dial = brokers.clone();
        let connector = move |broker: &str| -> ConnectFuture {
            let fake = dial.get(broker).cloned();
            Box::pin(async move {
                let fake = fake.ok_or_else(|| io::Error::other("unknown broker"))?;
                if !fake.up.load(Ordering::SeqCst) {
                    return Err(io::ErrorKind::ConnectionRefused.into());
                }
                let (ours, theirs) = tokio::io::duplex(64 * 1024);
                tokio::spawn(fake.serve(theirs));
                Ok(Box::new(ours) as BoxedStream)
            })
        };
        let edge = Edge::bind(config, connector).await.unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let test_edge = Self {
            tcp: edge.tcp_addr().unwrap(),
            http: edge.http_addr().unwrap(),
            tls: edge.tls_addr(),
            metrics: edge.metrics().clone(),
            brokers,
            ring,
            stop: Some(stop),
            task: None,
        };
        let task = tokio::spawn(edge.run(async move {
            let _ = stopped.await;
        }));
        let test_edge = Self {
            task: Some(task),
            ..test_edge
        };
        test_edge.wait_links(ids.len() as i64).await;
        test_edge
    }

    /// Waits until `count` links are up.
    pub async fn wait_links(&self, count: i64) {
        self.wait_for(|metrics| {
            let up: i64 = self
                .brokers
                .keys()
                .map(|id| metrics.link_up.with_label_values(&[id]).get())
                .sum();
            up == count
        })
        .await;
    }

    /// Polls the metrics until `check` holds (bounded by the hang guard).
    pub async fn wait_for(&self, check: impl Fn(&Metrics) -> bool) {
        tokio::time::timeout(HANG_GUARD, async {
            while !check(&self.metrics) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("condition never held");
    }

    /// Starts the drain and waits until the edge has stopped.
    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(HANG_GUARD, task)
                .await
                .expect("edge did not stop")
                .unwrap()
                .unwrap();
        }
    }

    /// Starts the drain without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// A user whose home is `broker`.
    pub fn user_on(&self, broker: &str) -> String {
        (0..)
            .map(|i| format!("user{i}"))
            .find(|user| self.ring.home(user) == Some(broker))
            .unwrap()
    }

    /// A direct conversation of `user` owned by `broker`.
    pub fn conversation_on(&self, user: &str, broker: &str) -> String {
        (0..)
            .map(|i| natter_codec::ids::direct_conversation(user, &format!("peer{i}")))
            .find(|c| self.ring.conversation_owner(c) == Some(broker))
            .unwrap()
    }

    pub async fn connect(&self) -> Client<tokio::net::TcpStream> {
        Client::new(tokio::net::TcpStream::connect(self.tcp).await.unwrap())
    }

    /// A connected client past READY.
    pub async fn ready_client(
        &self,
        user: &str,
        device: &str,
    ) -> (Client<tokio::net::TcpStream>, Ready) {
        let mut client = self.connect().await;
        let ready = client.hello(&token(user, device)).await;
        (client, ready)
    }

    /// A client past READY that will never read: its small receive buffer keeps the kernel
    /// from absorbing megabytes of what the edge sends it.
    pub async fn sleeper(&self, user: &str) -> (Client<tokio::net::TcpStream>, Ready) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut client = Client::new(socket.connect(self.tcp).await.unwrap());
        let ready = client.hello(&token(user, "phone")).await;
        (client, ready)
    }
}

/// A DELIVER of inbox entry and seq `seq` with `body`, as a broker pushes it.
pub fn deliver(seq: u64, body: bytes::Bytes) -> natter_codec::frame::Deliver {
    natter_codec::frame::Deliver {
        inbox_seq: seq,
        conversation: "d/other/sleeper".into(),
        event: natter_codec::types::Event {
            seq,
            body,
            ..Default::default()
        },
    }
}

/// A raw protocol client over any byte stream.
pub struct Client<S> {
    pub stream: S,
    buf: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            buf: BytesMut::new(),
        }
    }

    pub async fn send(&mut self, frame: impl Into<Frame>) {
        let bytes = frame.into().to_bytes().unwrap();
        self.send_raw(&bytes).await;
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// The next frame, or `None` once the server closed the connection.
    pub async fn recv(&mut self) -> Option<Frame> {
        tokio::time::timeout(HANG_GUARD, async {
            loop {
                if let Some(frame) = decode_frame(&mut self.buf, MAX_FRAME_SIZE_CAP).unwrap() {
                    return Some(frame);
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("no frame and no close")
    }

    /// Sends HELLO with every feature and expects READY.
    pub async fn hello(&mut self, token: &str) -> Ready {
        self.send(hello(token)).await;
        match self.recv().await {
            Some(Frame::Ready(ready)) => ready,
            other => panic!("expected READY, got {other:?}"),
        }
    }

    /// Expects `ERROR{0, code}` and then the end of the connection.
    pub async fn expect_close(&mut self, code: natter_codec::ErrorCode) {
        match self.recv().await {
            Some(Frame::Error(error)) => {
                assert_eq!((error.request, error.code), (0, code), "{}", error.message)
            }
            other => panic!("expected ERROR {code:?}, got {other:?}"),
        }
        assert_eq!(
            self.recv().await,
            None,
            "the connection stays open after {code:?}"
        );
    }
}

pub fn hello(token: &str) -> Hello {
    Hello {
        min_version: 1,
        max_version: 1,
        features: Features::ALL,
        max_frame_size: 65_536,
        token: Bytes::copy_from_slice(token.as_bytes()),
        agent: "edge-tests".into(),
    }
}

/// Sends a minimal HTTP/1.1 request and returns the status and body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(HANG_GUARD, stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    let response = String::from_utf8_lossy(&response).to_string();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
