//! A raw protocol connection for scenarios: frames in, frames out, nothing hidden.
//!
//! The runner checks a server rule by rule, so it must see every frame the server sends and
//! send frames no well-behaved client would (oversized, out of order, from the wrong side).
//! Every frame the server sends is also checked against the rules that hold for all of them,
//! whatever the scenario: it fits the `max_frame_size` this side announced, it is in its one
//! canonical encoding, it belongs to a granted feature, it respects RESUME, and so on (see
//! [`Conn::observe`]). A scenario that passes therefore also vouches for those rules on every
//! frame it saw.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use natter_codec::frame::{Hello, Ping, Pong, Ready, Resume, Synced};
use natter_codec::types::Features;
use natter_codec::{DEFAULT_MAX_FRAME_SIZE, DecodeError, ErrorCode, Frame, VERSION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

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
    /// The largest frame this side accepts: what its HELLO announced ([NWP-3-3]).
    max_frame_size: u64,
    /// RESUMEs sent so far; DELIVER and inbox GAPs may only follow one ([NWP-6.2.9-4]).
    resumes: u32,
    /// The inbox_seq of the last DELIVER, while the order of DELIVERs is checkable.
    last_inbox_seq: Option<u64>,
    nonce: u64,
    /// Frames received but passed over by [`Conn::expect`], oldest first: a later `expect`
    /// finds them there, so that a frame arriving while the scenario waited for another
    /// (a DELIVER before a SEND_ACK, say) is not lost.
    backlog: VecDeque<Frame>,
    /// Whether a server PING is answered as soon as it is read.
    auto_pong: bool,
}

/// The most frames a connection keeps in its backlog; older ones are dropped.
const BACKLOG: usize = 10_000;

impl Conn {
    /// Opens a TCP connection.
    pub async fn open(addr: &str) -> Result<Self, Failure> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| Failure::new(format!("connect {addr}: {e}")))?;
        Ok(Self::over(stream))
    }

    /// Opens a TCP connection whose receive buffer is small, so that a client that stops
    /// reading makes the server's queue towards it fill up soon.
    pub async fn open_with_small_buffer(addr: &str) -> Result<Self, Failure> {
        let target = tokio::net::lookup_host(addr)
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| Failure::new(format!("resolve {addr}")))?;
        let socket = if target.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| Failure::new(format!("socket: {e}")))?;
        socket.set_recv_buffer_size(4096).ok();
        let stream = socket
            .connect(target)
            .await
            .map_err(|e| Failure::new(format!("connect {addr}: {e}")))?;
        Ok(Self::over(stream))
    }

    fn over(stream: TcpStream) -> Self {
        stream.set_nodelay(true).ok();
        Self {
            stream,
            buf: BytesMut::new(),
            ready: None,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            resumes: 0,
            last_inbox_seq: None,
            nonce: 1 << 32,
            backlog: VecDeque::new(),
            auto_pong: true,
        }
    }

    /// Opens a connection and completes HELLO/READY with `token` and `features`.
    pub async fn ready(addr: &str, token: &str, features: Features) -> Result<Self, Failure> {
        Self::ready_with(addr, hello_frame(token, features)).await
    }

    /// Opens a connection and completes the handshake with this HELLO.
    pub async fn ready_with(addr: &str, hello: Hello) -> Result<Self, Failure> {
        let mut conn = Self::open(addr).await?;
        conn.handshake(hello).await?;
        Ok(conn)
    }

    /// Sends HELLO and waits for READY.
    pub async fn handshake(&mut self, hello: Hello) -> Result<(), Failure> {
        self.send(hello.into()).await?;
        match self.recv().await? {
            Frame::Ready(ready) => self.ready = Some(ready),
            other => return Err(Failure::new(format!("expected READY, got {other:?}"))),
        }
        Ok(())
    }

    /// Like [`Conn::ready`], then RESUME from the inbox head, waiting for SYNCED.
    pub async fn live(addr: &str, token: &str, features: Features) -> Result<Self, Failure> {
        let mut conn = Self::ready(addr, token, features).await?;
        conn.resume_from_head().await?;
        Ok(conn)
    }

    /// RESUME from READY's inbox head with request 1, waiting for SYNCED.
    pub async fn resume_from_head(&mut self) -> Result<(), Failure> {
        let after = self.inbox_head();
        self.send(Resume { request: 1, after }.into()).await?;
        self.expect(
            |f| matches!(f, Frame::Synced(Synced { request: 1, .. })),
            "SYNCED",
        )
        .await
        .map(drop)
    }

    /// The inbox head READY announced.
    pub fn inbox_head(&self) -> u64 {
        self.ready.as_ref().map_or(0, |ready| ready.inbox_head)
    }

    /// The features READY granted.
    pub fn granted(&self) -> Features {
        self.ready
            .as_ref()
            .map_or(Features::NONE, |ready| ready.features)
    }

    /// Writes one frame.
    pub async fn send(&mut self, frame: Frame) -> Result<(), Failure> {
        match &frame {
            Frame::Hello(hello) => self.max_frame_size = hello.max_frame_size,
            Frame::Resume(_) => {
                self.resumes += 1;
                // A second RESUME restarts the replay: frames already on their way keep their
                // inbox_seqs, so the order is only checked on a connection's first replay.
                self.last_inbox_seq = None;
            }
            _ => {}
        }
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
        match self.recv_within(ANSWER_TIMEOUT).await? {
            Some(frame) => Ok(frame),
            None => Err(Failure::new("no frame within the answer timeout")),
        }
    }

    /// The next frame: the oldest of the backlog, else one that arrives within `wait`;
    /// `None` if none does.
    pub async fn recv_within(&mut self, wait: Duration) -> Result<Option<Frame>, Failure> {
        if let Some(frame) = self.backlog.pop_front() {
            return Ok(Some(frame));
        }
        self.read_within(wait).await
    }

    /// Stops answering server PINGs, for a scenario that must stay silent.
    pub fn never_pong(&mut self) {
        self.auto_pong = false;
    }

    /// A frame from the socket (not the backlog) within `wait`; PINGs are answered.
    async fn read_within(&mut self, wait: Duration) -> Result<Option<Frame>, Failure> {
        let frame = match tokio::time::timeout(wait, self.read_frame()).await {
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => return Err(Failure::new("the server closed the connection")),
            Ok(Err(failure)) => return Err(failure),
            Err(_) => return Ok(None),
        };
        if let Frame::Ping(ping) = &frame
            && self.auto_pong
        {
            self.send(Pong { nonce: ping.nonce }.into()).await?;
        }
        Ok(Some(frame))
    }

    fn stash(&mut self, frame: Frame) {
        if self.backlog.len() >= BACKLOG {
            self.backlog.pop_front();
        }
        self.backlog.push_back(frame);
    }

    async fn read_frame(&mut self) -> Result<Option<Frame>, Failure> {
        loop {
            match natter_codec::split_frame(&mut self.buf, self.max_frame_size) {
                Ok(Some(raw)) => {
                    let frame = Frame::decode(raw.clone()).map_err(|e| {
                        Failure::new(format!("the server sent a malformed frame: {e}"))
                    })?;
                    self.observe(&frame, &raw)?;
                    return Ok(Some(frame));
                }
                Ok(None) => {}
                Err(DecodeError::FrameTooLarge { len, max }) => {
                    return Err(Failure::new(format!(
                        "the server sent a frame of Length {len}, above the max_frame_size {max} \
                         this client announced (NWP-3-3, NWP-7.12-3)"
                    )));
                }
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

    /// Checks a frame from the server against the rules every server frame obeys.
    fn observe(&mut self, frame: &Frame, raw: &Bytes) -> Result<(), Failure> {
        let broken = |rule: &str, what: String| Err(Failure::new(format!("{what} ({rule})")));
        // One encoding per frame: shortest varints, no bytes after the known fields
        // ([NWP-2.2-2], [NWP-2.2-6], [NWP-11-2]).
        let canonical = frame.to_bytes().map(|bytes| bytes == *raw);
        if canonical != Ok(true) {
            return broken(
                "NWP-2.2-2, NWP-11-2",
                format!(
                    "the server sent {:?} in a form that is not its canonical encoding: {}",
                    frame.frame_type(),
                    hex(raw)
                ),
            );
        }
        let granted = self.granted();
        let feature = match frame {
            Frame::Receipt(_) => Some(Features::RECEIPTS),
            Frame::TypingUpdate(_) => Some(Features::TYPING),
            Frame::Presence(_) => Some(Features::PRESENCE),
            _ => None,
        };
        if let Some(feature) = feature
            && !granted.contains(feature)
        {
            return broken(
                "NWP-5.1-4",
                format!("the server sent {frame:?} without granting its feature"),
            );
        }
        match frame {
            Frame::Deliver(deliver) => {
                if self.resumes == 0 {
                    return broken("NWP-6.2.3-1", format!("DELIVER before RESUME: {deliver:?}"));
                }
                if deliver.inbox_seq != 0 {
                    if let Some(last) = self.last_inbox_seq
                        && self.resumes == 1
                        && deliver.inbox_seq != last + 1
                    {
                        return broken(
                            "NWP-6.2.3-2",
                            format!(
                                "DELIVER inbox_seq {} after {last}, with no GAP between",
                                deliver.inbox_seq
                            ),
                        );
                    }
                    self.last_inbox_seq = Some(deliver.inbox_seq);
                }
            }
            Frame::Gap(gap) => {
                if gap.from > gap.to {
                    return broken("NWP-6.2.11-1", format!("GAP from above to: {gap:?}"));
                }
                if gap.conversation.is_empty() && self.resumes == 0 {
                    return broken("NWP-6.2.9-4", format!("inbox GAP before RESUME: {gap:?}"));
                }
                // A GAP stands in for entries: the next DELIVER may skip them.
                self.last_inbox_seq = None;
            }
            Frame::Error(error) if !error.code.closes_connection() && error.request == 0 => {
                return broken(
                    "NWP-6.1.6-2",
                    format!("a request error with request id 0: {error:?}"),
                );
            }
            _ => {}
        }
        Ok(())
    }

    /// The first frame that matches, from the backlog or from the socket; the others are
    /// kept in the backlog (pushes such as PRESENCE may interleave with any answer).
    pub async fn expect(
        &mut self,
        wanted: impl Fn(&Frame) -> bool,
        what: &str,
    ) -> Result<Frame, Failure> {
        self.expect_within(wanted, what, ANSWER_TIMEOUT).await
    }

    /// Like [`Conn::expect`], waiting at most `wait` in all.
    pub async fn expect_within(
        &mut self,
        wanted: impl Fn(&Frame) -> bool,
        what: &str,
        wait: Duration,
    ) -> Result<Frame, Failure> {
        if let Some(index) = self.backlog.iter().position(&wanted) {
            if let Some(frame) = self.backlog.remove(index) {
                return Ok(frame);
            }
        }
        let deadline = tokio::time::Instant::now() + wait;
        // What went by instead, for the failure message.
        let mut skipped: Vec<String> = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self
                .read_within(left)
                .await
                .map_err(|f| f.context(&format!("waiting for {what}")))?
                .ok_or_else(|| {
                    let seen = if skipped.is_empty() {
                        "nothing else arrived".to_owned()
                    } else {
                        format!("received only {}", skipped.join(", "))
                    };
                    Failure::new(format!("no {what} within {wait:?}; {seen}"))
                })?;
            if wanted(&frame) {
                return Ok(frame);
            }
            if skipped.len() < 12 {
                skipped.push(brief(&frame));
            }
            self.stash(frame);
        }
    }

    /// Like [`Conn::expect`] for an answer that may take long (up to `wait`): meanwhile a
    /// PING goes out every second, so the connection is not idle ([NWP-5.2-1]).
    pub async fn expect_patiently(
        &mut self,
        wanted: impl Fn(&Frame) -> bool,
        what: &str,
        wait: Duration,
    ) -> Result<Frame, Failure> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match self
                .expect_within(&wanted, what, Duration::from_secs(1))
                .await
            {
                Ok(frame) => return Ok(frame),
                Err(failure) if tokio::time::Instant::now() >= deadline => return Err(failure),
                Err(_) => {
                    self.nonce += 1;
                    self.send(Ping { nonce: self.nonce }.into()).await?;
                }
            }
        }
    }

    /// Sends a PING and reads until its PONG; returns every other frame received and not
    /// yet consumed, the backlog first. The server processes frames in order ([NWP-3-8]), so
    /// whatever it did because of earlier frames of this connection, it has done once the
    /// PONG arrives.
    pub async fn barrier(&mut self) -> Result<Vec<Frame>, Failure> {
        self.nonce += 1;
        let nonce = self.nonce;
        self.send(Ping { nonce }.into()).await?;
        let mut before: Vec<Frame> = self.backlog.drain(..).collect();
        loop {
            let frame = self
                .read_within(ANSWER_TIMEOUT)
                .await?
                .ok_or_else(|| Failure::new("no PONG for the PING of a barrier"))?;
            match frame {
                Frame::Pong(pong) if pong.nonce == nonce => return Ok(before),
                other => before.push(other),
            }
        }
    }

    /// Reads for `wait` and fails if a frame matching `unwanted` is in the backlog or
    /// arrives meanwhile.
    pub async fn quiet(
        &mut self,
        wait: Duration,
        unwanted: impl Fn(&Frame) -> bool,
        what: &str,
    ) -> Result<(), Failure> {
        if let Some(frame) = self.backlog.iter().find(|f| unwanted(f)) {
            return Err(Failure::new(format!("{what}: {}", brief(frame))));
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            match self.read_within(left).await? {
                None => return Ok(()),
                Some(frame) if unwanted(&frame) => {
                    return Err(Failure::new(format!("{what}: {}", brief(&frame))));
                }
                Some(frame) => self.stash(frame),
            }
        }
    }

    /// Expects a connection error with `code` and request id 0 (the scenarios provoke them
    /// with frames that are not requests, [NWP-6.1.6-1]), then the end of the stream
    /// ([NWP-5.5-1]).
    pub async fn expect_close(&mut self, code: ErrorCode) -> Result<(), Failure> {
        self.expect_close_within(code, ANSWER_TIMEOUT).await
    }

    /// Like [`Conn::expect_close`], waiting up to `wait` for the ERROR.
    pub async fn expect_close_within(
        &mut self,
        code: ErrorCode,
        wait: Duration,
    ) -> Result<(), Failure> {
        let frame = self
            .expect_within(|f| matches!(f, Frame::Error(_)), "a closing ERROR", wait)
            .await?;
        if let Frame::Error(error) = frame {
            if error.code != code {
                return Err(Failure::new(format!(
                    "expected ERROR {code:?}, got {:?} {:?}",
                    error.code, error.message
                )));
            }
            // The scenarios provoke connection errors with frames that are not requests.
            if error.request != 0 {
                return Err(Failure::new(format!(
                    "a connection error names request {} (NWP-6.1.6-1)",
                    error.request
                )));
            }
        }
        self.expect_end().await
    }

    /// Expects the server to close the connection, with nothing more sent ([NWP-5.5-1]).
    pub async fn expect_end(&mut self) -> Result<(), Failure> {
        match tokio::time::timeout(ANSWER_TIMEOUT, self.read_frame()).await {
            Ok(Ok(None)) | Ok(Err(_)) => Ok(()),
            Ok(Ok(Some(frame))) => Err(Failure::new(format!(
                "the connection stayed open after a closing ERROR and sent {:?} (NWP-5.5-1)",
                frame.frame_type()
            ))),
            Err(_) => Err(Failure::new(
                "the connection stayed open after a closing ERROR (NWP-5.5-1)",
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

    /// Expects an ERROR with `code` answering `request`, and the connection to stay usable
    /// ([NWP-6.1.6-2]); returns the ERROR's message.
    pub async fn answer_error(&mut self, request: u64, code: ErrorCode) -> Result<String, Failure> {
        let frame = self
            .expect(
                |f| f.request() == Some(request),
                &format!("the answer to request {request}"),
            )
            .await?;
        match frame {
            Frame::Error(error) if error.code == code => {
                let pending = self
                    .barrier()
                    .await
                    .map_err(|f| f.context(&format!("after ERROR {code:?}")))?;
                self.backlog.extend(pending);
                Ok(error.message.to_string())
            }
            other => Err(Failure::new(format!(
                "request {request}: expected ERROR {code:?}, got {other:?}"
            ))),
        }
    }
}

/// A HELLO for protocol v1.
pub fn hello(token: &str, features: Features) -> Frame {
    hello_frame(token, features).into()
}

/// The HELLO of [`hello`], as a struct to adjust.
pub fn hello_frame(token: &str, features: Features) -> Hello {
    Hello {
        min_version: VERSION,
        max_version: VERSION,
        features,
        max_frame_size: DEFAULT_MAX_FRAME_SIZE,
        token: Bytes::copy_from_slice(token.as_bytes()),
        agent: "natter-conformance".into(),
    }
}

/// A frame in a few words, for failure messages.
pub fn brief(frame: &Frame) -> String {
    match frame {
        Frame::Deliver(d) => format!(
            "DELIVER(inbox {} {} seq {} {:?})",
            d.inbox_seq, d.conversation, d.event.seq, d.event.kind
        ),
        Frame::Gap(g) => format!("GAP({:?} {}..={})", g.conversation, g.from, g.to),
        Frame::Error(e) => format!("ERROR({} {:?} {:?})", e.request, e.code, e.message),
        Frame::Presence(p) => format!("PRESENCE({} {:?})", p.user, p.status),
        Frame::Receipt(r) => format!(
            "RECEIPT({} {} delivered {} read {})",
            r.conversation, r.user, r.delivered, r.read
        ),
        other => match other.request() {
            Some(request) => format!("{:?}({request})", other.frame_type()),
            None => format!("{:?}", other.frame_type()),
        },
    }
}

/// Lower-case hex, for messages.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
