//! The few MQTT 3.1.1 packets the comparison needs, from the OASIS specification: CONNECT,
//! SUBSCRIBE, PUBLISH and PUBACK at QoS 1, PINGREQ. Enough to drive a broker, nothing more.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// An incoming packet: the first byte of the fixed header and the rest after the length.
pub struct Packet {
    pub header: u8,
    pub body: Vec<u8>,
}

impl Packet {
    /// The packet type, the high nibble of the first byte.
    pub fn kind(&self) -> u8 {
        self.header >> 4
    }
}

pub const PUBLISH: u8 = 3;
pub const PUBACK: u8 = 4;

/// A connected MQTT session.
pub struct Connection {
    pub reader: BufReader<OwnedReadHalf>,
    pub writer: OwnedWriteHalf,
}

fn packet(header: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![header];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// Connects with a clean session and waits for CONNACK.
pub async fn connect(addr: &str, client_id: &str) -> io::Result<Connection> {
    connect_as(addr, client_id, None).await
}

/// Connects with a clean session and, when given, a user name and password (natter takes a
/// token as the password), and waits for CONNACK.
pub async fn connect_as(
    addr: &str,
    client_id: &str,
    login: Option<(&str, &str)>,
) -> io::Result<Connection> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (reader, writer) = stream.into_split();
    let mut conn = Connection {
        reader: BufReader::new(reader),
        writer,
    };
    let mut body = Vec::new();
    string(&mut body, b"MQTT");
    // Level 4, clean session (plus user name and password when given), keep-alive 60 s.
    let flags = if login.is_some() { 0xc2 } else { 0x02 };
    body.extend_from_slice(&[4, flags, 0, 60]);
    string(&mut body, client_id.as_bytes());
    if let Some((user, password)) = login {
        string(&mut body, user.as_bytes());
        string(&mut body, password.as_bytes());
    }
    conn.writer.write_all(&packet(0x10, &body)).await?;
    let connack = read(&mut conn.reader).await?;
    if connack.kind() != 2 || connack.body.get(1) != Some(&0) {
        return Err(io::Error::other("CONNACK refused"));
    }
    Ok(conn)
}

/// Subscribes to `topic` at QoS 1 and waits for SUBACK.
pub async fn subscribe(conn: &mut Connection, topic: &str) -> io::Result<()> {
    let mut body = vec![0, 1];
    string(&mut body, topic.as_bytes());
    body.push(1);
    conn.writer.write_all(&packet(0x82, &body)).await?;
    let suback = read(&mut conn.reader).await?;
    if suback.kind() != 9 {
        return Err(io::Error::other("expected SUBACK"));
    }
    Ok(())
}

/// A PUBLISH at QoS 1.
pub fn publish(topic: &str, packet_id: u16, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(topic.len() + payload.len() + 4);
    string(&mut body, topic.as_bytes());
    body.extend_from_slice(&packet_id.to_be_bytes());
    body.extend_from_slice(payload);
    packet(0x32, &body)
}

/// A PUBACK.
pub fn puback(packet_id: u16) -> Vec<u8> {
    packet(0x40, &packet_id.to_be_bytes())
}

/// A PINGREQ.
pub fn pingreq() -> Vec<u8> {
    packet(0xc0, &[])
}

/// For an incoming PUBLISH at QoS 1: its packet id and payload.
pub fn parse_publish(packet: &Packet) -> Option<(u16, &[u8])> {
    let topic_len = u16::from_be_bytes([*packet.body.first()?, *packet.body.get(1)?]) as usize;
    let id_at = 2 + topic_len;
    let id = u16::from_be_bytes([*packet.body.get(id_at)?, *packet.body.get(id_at + 1)?]);
    Some((id, packet.body.get(id_at + 2..)?))
}

/// Reads one packet.
pub async fn read(reader: &mut BufReader<OwnedReadHalf>) -> io::Result<Packet> {
    let header = reader.read_u8().await?;
    let mut len = 0usize;
    for shift in 0..4 {
        let byte = reader.read_u8().await?;
        len |= usize::from(byte & 0x7f) << (7 * shift);
        if byte & 0x80 == 0 {
            let mut body = vec![0; len];
            reader.read_exact(&mut body).await?;
            return Ok(Packet { header, body });
        }
    }
    Err(io::Error::other("remaining length longer than 4 bytes"))
}
