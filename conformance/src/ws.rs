//! A minimal WebSocket client (RFC 6455), enough to check how a server frames NWP on it.
//!
//! It is written out rather than taken from a library because the scenarios must send what a
//! good client never would (two frames in one message, half a frame, a text message) and see
//! every message the server sends, unassembled and unfiltered.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
        // Servers never mask; a masked frame would be their bug, but read past the key.
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
}
