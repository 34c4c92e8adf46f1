//! A minimal WebSocket (RFC 6455) client and server, enough to check how a peer frames NWP on
//! it.
//!
//! They are written out rather than taken from a library because the scenarios must send what
//! a good peer never would (two frames in one message, half a frame, a text message) and see
//! every message the peer sends, unassembled and unfiltered. The client side drives a server
//! under test; the server side ([`WsServerConn`]) plays the server towards a client under test.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::Failure;
use crate::wire::ANSWER_TIMEOUT;

/// One WebSocket message from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A binary message: its payload.
    Binary(Vec<u8>),
    /// A text message.
    Text(Vec<u8>),
    /// A close message, or the end of the TCP stream.
    Close,
}

/// A WebSocket connection to the server under test.
#[derive(Debug)]
pub struct WsConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xa;

impl WsConn {
    /// Connects to `addr` and upgrades `path` to a WebSocket.
    pub async fn open(addr: &str, path: &str) -> Result<Self, Failure> {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| Failure::new(format!("connect {addr}: {e}")))?;
        stream.set_nodelay(true).ok();
        let key = base64(&rand::random::<[u8; 16]>());
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| Failure::new(format!("write: {e}")))?;
        let mut buf = Vec::new();
        let end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 1024];
            let read = tokio::time::timeout(ANSWER_TIMEOUT, stream.read(&mut chunk))
                .await
                .map_err(|_| Failure::new("no WebSocket handshake answer"))?
                .map_err(|e| Failure::new(format!("read: {e}")))?;
            if read == 0 {
                return Err(Failure::new(
                    "the server closed during the WebSocket handshake",
                ));
            }
            buf.extend_from_slice(&chunk[..read]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        if !head.starts_with("HTTP/1.1 101") {
            let status = head.lines().next().unwrap_or_default().to_owned();
            return Err(Failure::new(format!(
                "WebSocket upgrade of {addr}{path} refused: {status}"
            )));
        }
        buf.drain(..end);
        Ok(Self { stream, buf })
    }

    /// Sends one binary message.
    pub async fn send_binary(&mut self, payload: &[u8]) -> Result<(), Failure> {
        self.send_message(BINARY, payload).await
    }

    /// Sends one text message.
    pub async fn send_text(&mut self, text: &str) -> Result<(), Failure> {
        self.send_message(TEXT, text.as_bytes()).await
    }

    async fn send_message(&mut self, opcode: u8, payload: &[u8]) -> Result<(), Failure> {
        let mut frame = vec![0x80 | opcode];
        let len = payload.len();
        if len < 126 {
            frame.push(0x80 | len as u8);
        } else if len <= 0xffff {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
        // Clients mask every frame (RFC 6455 5.3).
        let mask: [u8; 4] = rand::random();
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream
            .write_all(&frame)
            .await
            .map_err(|e| Failure::new(format!("write: {e}")))
    }

    /// The next data or close message, within [`ANSWER_TIMEOUT`]; WebSocket pings are
    /// answered and pongs skipped.
    pub async fn recv(&mut self) -> Result<Message, Failure> {
        tokio::time::timeout(ANSWER_TIMEOUT, self.read_message())
            .await
            .map_err(|_| Failure::new("no WebSocket message within the answer timeout"))?
    }

    /// Like [`WsConn::recv`], waiting at most `wait`; `None` if nothing came.
    pub async fn recv_within(&mut self, wait: Duration) -> Result<Option<Message>, Failure> {
        match tokio::time::timeout(wait, self.read_message()).await {
            Ok(message) => message.map(Some),
            Err(_) => Ok(None),
        }
    }

    async fn read_message(&mut self) -> Result<Message, Failure> {
        let mut data = Vec::new();
        let mut kind = None;
        loop {
            let Some((fin, opcode, payload)) = self.read_frame().await? else {
                return Ok(Message::Close);
            };
            match opcode {
                CLOSE => return Ok(Message::Close),
                PING => self.send_message(PONG, &payload).await?,
                PONG => {}
                0 | TEXT | BINARY => {
                    if opcode != 0 {
                        kind = Some(opcode);
                    }
                    data.extend_from_slice(&payload);
                    if fin {
                        return Ok(match kind {
                            Some(TEXT) => Message::Text(data),
                            _ => Message::Binary(data),
                        });
                    }
                }
                other => {
                    return Err(Failure::new(format!(
                        "the server sent WebSocket opcode {other:#x}"
                    )));
                }
            }
        }
    }

    /// One WebSocket frame: (fin, opcode, payload); `None` at the end of the stream.
    async fn read_frame(&mut self) -> Result<Option<(bool, u8, Vec<u8>)>, Failure> {
        loop {
            if let Some((header, len)) = parse_header(&self.buf) {
                if self.buf.len() >= header + len {
                    let fin = self.buf[0] & 0x80 != 0;
                    let opcode = self.buf[0] & 0x0f;
                    let payload = self.buf[header..header + len].to_vec();
                    self.buf.drain(..header + len);
                    return Ok(Some((fin, opcode, payload)));
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk).await {
                Ok(0) => return Ok(None),
                Ok(read) => self.buf.extend_from_slice(&chunk[..read]),
                // A reset after the server's close is the end of the connection.
                Err(_) => return Ok(None),
            }
        }
    }
}

/// The accepting side of a WebSocket, for a client under test.
///
/// Reading is cancel-safe (a message half read stays buffered), so it can sit in a `select!`.
#[derive(Debug)]
pub struct WsServerConn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// A fragmented message being assembled: its opcode and the payload so far.
    partial: Option<(u8, Vec<u8>)>,
}

/// The GUID of RFC 6455 section 1.3, hashed with the client's key.
const HANDSHAKE_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

impl WsServerConn {
    /// Reads the client's upgrade request on `stream` and accepts it, whatever its path.
    pub async fn accept(mut stream: TcpStream, wait: Duration) -> Result<Self, Failure> {
        stream.set_nodelay(true).ok();
        let deadline = Instant::now() + wait;
        let mut buf = Vec::new();
        let end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            if buf.len() > 16 * 1024 {
                return Err(Failure::new("a WebSocket upgrade request above 16 KiB"));
            }
            let mut chunk = [0u8; 1024];
            let read = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
                .await
                .map_err(|_| Failure::new("no WebSocket upgrade request in time"))?
                .map_err(|e| Failure::new(format!("read: {e}")))?;
            if read == 0 {
                return Err(Failure::new(
                    "the client closed before its WebSocket upgrade request ended",
                ));
            }
            buf.extend_from_slice(&chunk[..read]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        let key = head
            .lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-key"))
            .map(|(_, value)| value.trim().to_owned())
            .ok_or_else(|| Failure::new(format!("not a WebSocket upgrade: {head:?}")))?;
        let accept = base64(&sha1(format!("{key}{HANDSHAKE_GUID}").as_bytes()));
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        stream
            .write_all(response.as_bytes())
            .await
            .map_err(|e| Failure::new(format!("write: {e}")))?;
        buf.drain(..end);
        Ok(Self {
            stream,
            buf,
            partial: None,
        })
    }

    /// Sends one binary message (servers do not mask, RFC 6455 5.1).
    pub async fn send_binary(&mut self, payload: &[u8]) -> Result<(), Failure> {
        self.send_message(BINARY, payload).await
    }

    /// Sends one text message.
    pub async fn send_text(&mut self, text: &str) -> Result<(), Failure> {
        self.send_message(TEXT, text.as_bytes()).await
    }

    async fn send_message(&mut self, opcode: u8, payload: &[u8]) -> Result<(), Failure> {
        let mut frame = vec![0x80 | opcode];
        let len = payload.len();
        if len < 126 {
            frame.push(len as u8);
        } else if len <= 0xffff {
            frame.push(126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            frame.push(127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
        frame.extend_from_slice(payload);
        self.stream
            .write_all(&frame)
            .await
            .map_err(|e| Failure::new(format!("write: {e}")))
    }

    /// The next data or close message; pings are answered and pongs skipped. A client frame
    /// without a mask is refused (RFC 6455 5.1).
    pub async fn recv(&mut self) -> Result<Message, Failure> {
        loop {
            let Some((fin, opcode, masked, payload)) = self.next_frame().await? else {
                return Ok(Message::Close);
            };
            if !masked {
                return Err(Failure::new(
                    "the client sent an unmasked WebSocket frame (RFC 6455 5.1)",
                ));
            }
            match opcode {
                CLOSE => return Ok(Message::Close),
                PING => self.send_message(PONG, &payload).await?,
                PONG => {}
                TEXT | BINARY => {
                    if fin {
                        return Ok(message(opcode, payload));
                    }
                    self.partial = Some((opcode, payload));
                }
                0 => {
                    let Some((kind, mut data)) = self.partial.take() else {
                        return Err(Failure::new("a WebSocket continuation without a start"));
                    };
                    data.extend_from_slice(&payload);
                    if fin {
                        return Ok(message(kind, data));
                    }
                    self.partial = Some((kind, data));
                }
                other => {
                    return Err(Failure::new(format!(
                        "the client sent WebSocket opcode {other:#x}"
                    )));
                }
            }
        }
    }

    /// One WebSocket frame, unmasked: (fin, opcode, masked, payload); `None` at the end of the
    /// stream. Bytes stay in the buffer until a whole frame is there, so this is cancel-safe.
    async fn next_frame(&mut self) -> Result<Option<(bool, u8, bool, Vec<u8>)>, Failure> {
        loop {
            if let Some((header, len)) = parse_header(&self.buf) {
                if self.buf.len() >= header + len {
                    let fin = self.buf[0] & 0x80 != 0;
                    let opcode = self.buf[0] & 0x0f;
                    let masked = self.buf[1] & 0x80 != 0;
                    let mut payload = self.buf[header..header + len].to_vec();
                    if masked {
                        let key = [
                            self.buf[header - 4],
                            self.buf[header - 3],
                            self.buf[header - 2],
                            self.buf[header - 1],
                        ];
                        for (i, byte) in payload.iter_mut().enumerate() {
                            *byte ^= key[i % 4];
                        }
                    }
                    self.buf.drain(..header + len);
                    return Ok(Some((fin, opcode, masked, payload)));
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return Ok(None),
                Ok(read) => self.buf.extend_from_slice(&chunk[..read]),
            }
        }
    }
}

fn message(opcode: u8, data: Vec<u8>) -> Message {
    if opcode == TEXT {
        Message::Text(data)
    } else {
        Message::Binary(data)
    }
}

/// SHA-1 (FIPS 180-4), for the handshake's `Sec-WebSocket-Accept` and nothing else.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xefcd_ab89,
        0x98ba_dcfe,
        0x1032_5476,
        0xc3d2_e1f0,
    ];
    let mut message = data.to_vec();
    let bits = (data.len() as u64).wrapping_mul(8);
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&bits.to_be_bytes());
    for block in message.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, word) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5a82_7999),
                20..=39 => (b ^ c ^ d, 0x6ed9_eba1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8f1b_bcdc),
                _ => (b ^ c ^ d, 0xca62_c1d6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*word);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (state, value) in h.iter_mut().zip([a, b, c, d, e]) {
            *state = state.wrapping_add(value);
        }
    }
    let mut out = [0u8; 20];
    for (chunk, word) in out.chunks_mut(4).zip(h) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// The header length and payload length of the frame at the start of `buf`, once known.
fn parse_header(buf: &[u8]) -> Option<(usize, usize)> {
    let second = *buf.get(1)?;
    let masked = second & 0x80 != 0;
    let (mut header, len) = match second & 0x7f {
        126 => (
            4,
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
        ),
        127 => (
            10,
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
        ),
        short => (2, short as usize),
    };
    if masked {
        // Clients mask every frame; a server that masks is wrong, but read past the key.
        header += 4;
    }
    Some((header, len))
}

/// Standard base64 with padding, for the handshake key.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn sha1_matches_fips_180_and_the_rfc_6455_handshake() {
        let hex =
            |bytes: [u8; 20]| -> String { bytes.iter().map(|b| format!("{b:02x}")).collect() };
        assert_eq!(
            hex(sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(hex(sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        let long = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        assert_eq!(hex(sha1(long)), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let accept = base64(&sha1(format!("{key}{HANDSHAKE_GUID}").as_bytes()));
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }
}
