//! The MQTT 3.1.1 and 5.0 packets a server reads and writes, for the edge's MQTT binding.
//!
//! Only the server's side is here: [`split_packet`] frames the stream, [`Packet::decode`]
//! reads what a client may send (and refuses, without panicking, what only a server sends),
//! and the `encode_*` functions write what the edge answers. Every error names the MQTT 5
//! reason code the spec asks for (`[NWP-14-13]`); a 3.1.1 connection closes instead.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The protocol level of MQTT 3.1.1.
pub const V311: u8 = 4;
/// The protocol level of MQTT 5.0.
pub const V5: u8 = 5;

/// A reason code of MQTT 5 (also written as a 3.1.1 CONNACK return code where one fits).
pub type Reason = u8;

/// MQTT 5 reason codes the edge uses.
pub mod reason {
    use super::Reason;
    /// Success, granted QoS 0, normal disconnection.
    pub const SUCCESS: Reason = 0x00;
    /// Granted QoS 1.
    pub const GRANTED_QOS_1: Reason = 0x01;
    /// Unspecified error.
    pub const UNSPECIFIED: Reason = 0x80;
    /// Malformed packet.
    pub const MALFORMED: Reason = 0x81;
    /// Protocol error.
    pub const PROTOCOL_ERROR: Reason = 0x82;
    /// Implementation specific error.
    pub const IMPLEMENTATION_SPECIFIC: Reason = 0x83;
    /// Unsupported protocol version.
    pub const UNSUPPORTED_VERSION: Reason = 0x84;
    /// Client identifier not valid.
    pub const CLIENT_ID_NOT_VALID: Reason = 0x85;
    /// Bad user name or password.
    pub const BAD_CREDENTIALS: Reason = 0x86;
    /// Not authorized.
    pub const NOT_AUTHORIZED: Reason = 0x87;
    /// Server unavailable.
    pub const SERVER_UNAVAILABLE: Reason = 0x88;
    /// Server busy.
    pub const SERVER_BUSY: Reason = 0x89;
    /// Bad authentication method.
    pub const BAD_AUTH_METHOD: Reason = 0x8C;
    /// Server shutting down.
    pub const SHUTTING_DOWN: Reason = 0x8B;
    /// Keep alive timeout.
    pub const KEEP_ALIVE_TIMEOUT: Reason = 0x8D;
    /// Session taken over.
    pub const SESSION_TAKEN_OVER: Reason = 0x8E;
    /// Topic filter invalid.
    pub const TOPIC_FILTER_INVALID: Reason = 0x8F;
    /// Topic name invalid.
    pub const TOPIC_NAME_INVALID: Reason = 0x90;
    /// Receive maximum exceeded.
    pub const RECEIVE_MAXIMUM_EXCEEDED: Reason = 0x93;
    /// Topic alias invalid.
    pub const TOPIC_ALIAS_INVALID: Reason = 0x94;
    /// Packet too large.
    pub const PACKET_TOO_LARGE: Reason = 0x95;
    /// Quota exceeded.
    pub const QUOTA_EXCEEDED: Reason = 0x97;
    /// Payload format invalid.
    pub const PAYLOAD_FORMAT_INVALID: Reason = 0x99;
    /// Retain not supported.
    pub const RETAIN_NOT_SUPPORTED: Reason = 0x9A;
    /// QoS not supported.
    pub const QOS_NOT_SUPPORTED: Reason = 0x9B;
    /// Shared subscriptions not supported.
    pub const SHARED_NOT_SUPPORTED: Reason = 0x9E;
    /// Subscription identifiers not supported.
    pub const SUBSCRIPTION_IDS_NOT_SUPPORTED: Reason = 0xA1;
}

/// Why bytes from a client are not a packet the edge accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError {
    /// The MQTT 5 reason code that names the problem.
    pub reason: Reason,
    /// What is wrong, for logs.
    pub what: &'static str,
}

impl DecodeError {
    fn malformed(what: &'static str) -> Self {
        Self {
            reason: reason::MALFORMED,
            what,
        }
    }

    fn protocol(what: &'static str) -> Self {
        Self {
            reason: reason::PROTOCOL_ERROR,
            what,
        }
    }
}

type Result<T> = std::result::Result<T, DecodeError>;

/// Takes one whole packet off the front of `buf`: its first byte and its body. `Ok(None)`
/// means more bytes are needed. A Remaining Length above `max_packet` is refused as soon as
/// it is read, before its body is buffered (`[NWP-14-11]`).
pub fn split_packet(buf: &mut BytesMut, max_packet: usize) -> Result<Option<(u8, Bytes)>> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let mut length: usize = 0;
    let mut header = 1;
    loop {
        let Some(&byte) = buf.get(header) else {
            return Ok(None);
        };
        length |= usize::from(byte & 0x7f) << (7 * (header - 1));
        header += 1;
        if byte & 0x80 == 0 {
            break;
        }
        if header == 5 {
            return Err(DecodeError::malformed(
                "remaining length longer than 4 bytes",
            ));
        }
    }
    if header + length > max_packet {
        return Err(DecodeError {
            reason: reason::PACKET_TOO_LARGE,
            what: "packet larger than the maximum packet size",
        });
    }
    if buf.len() < header + length {
        buf.reserve(header + length - buf.len());
        return Ok(None);
    }
    buf.advance(header);
    Ok(Some((first, buf.split_to(length).freeze())))
}

/// The MQTT 5 properties the edge reads, from any packet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    /// Payload Format Indicator (0x01): 1 says the payload is UTF-8.
    pub payload_utf8: bool,
    /// Content Type (0x03).
    pub content_type: Option<String>,
    /// Topic Alias (0x23).
    pub topic_alias: Option<u16>,
    /// Subscription Identifier (0x0B).
    pub subscription_id: Option<u32>,
    /// Session Expiry Interval (0x11), seconds.
    pub session_expiry: Option<u32>,
    /// Receive Maximum (0x21).
    pub receive_maximum: Option<u16>,
    /// Maximum Packet Size (0x27).
    pub maximum_packet_size: Option<u32>,
    /// Authentication Method (0x15).
    pub auth_method: Option<String>,
    /// User Property (0x26) pairs, in order.
    pub user: Vec<(String, String)>,
}

/// Where a property list sits; each allows its own identifiers (MQTT 5 table 2-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Connect,
    Will,
    Publish,
    Puback,
    Subscribe,
    Unsubscribe,
    Disconnect,
}

fn allowed(place: Place, id: u8) -> bool {
    match id {
        0x26 => true,
        0x1f => matches!(place, Place::Puback | Place::Disconnect),
        0x01 | 0x02 | 0x03 | 0x08 | 0x09 => matches!(place, Place::Publish | Place::Will),
        0x0b => matches!(place, Place::Publish | Place::Subscribe),
        0x11 => matches!(place, Place::Connect | Place::Disconnect),
        0x15 | 0x16 | 0x17 | 0x19 | 0x21 | 0x22 | 0x27 => place == Place::Connect,
        0x18 => place == Place::Will,
        0x1c => place == Place::Disconnect,
        0x23 => place == Place::Publish,
        _ => false,
    }
}

/// Reads a property list: its length, then properties up to it. An identifier the packet does
/// not allow, or a value that runs past the list, is malformed; a repeated single property
/// is a protocol error.
fn properties(body: &mut Bytes, place: Place) -> Result<Properties> {
    let length = varint(body)? as usize;
    if length > body.len() {
        return Err(DecodeError::malformed("property length past the packet"));
    }
    let mut list = body.split_to(length);
    let mut props = Properties::default();
    let mut seen = [false; 64];
    while list.has_remaining() {
        let id = list.get_u8();
        if !allowed(place, id) {
            return Err(DecodeError::malformed(
                "property not allowed in this packet",
            ));
        }
        if id != 0x26 {
            let slot = &mut seen[usize::from(id & 0x3f)];
            if *slot {
                return Err(DecodeError::protocol("property repeated"));
            }
            *slot = true;
        }
        match id {
            0x01 | 0x17 | 0x19 => {
                let value = byte(&mut list)?;
                if value > 1 {
                    return Err(DecodeError::protocol("flag property not 0 or 1"));
                }
                if id == 0x01 {
                    props.payload_utf8 = value == 1;
                }
            }
            0x02 | 0x18 => {
                u32_(&mut list)?;
            }
            0x11 => props.session_expiry = Some(u32_(&mut list)?),
            0x27 => {
                let max = u32_(&mut list)?;
                if max == 0 {
                    return Err(DecodeError::protocol("maximum packet size 0"));
                }
                props.maximum_packet_size = Some(max);
            }
            0x03 => props.content_type = Some(string(&mut list)?),
            0x08 | 0x1c | 0x1f => {
                string(&mut list)?;
            }
            0x15 => props.auth_method = Some(string(&mut list)?),
            0x09 | 0x16 => {
                binary(&mut list)?;
            }
            0x0b => {
                let id = varint(&mut list)?;
                if id == 0 {
                    return Err(DecodeError::protocol("subscription identifier 0"));
                }
                props.subscription_id = Some(id);
            }
            0x21 => {
                let max = u16_(&mut list)?;
                if max == 0 {
                    return Err(DecodeError::protocol("receive maximum 0"));
                }
                props.receive_maximum = Some(max);
            }
            0x22 => {
                u16_(&mut list)?;
            }
            0x23 => props.topic_alias = Some(u16_(&mut list)?),
            0x26 => {
                let key = string(&mut list)?;
                let value = string(&mut list)?;
                props.user.push((key, value));
            }
            _ => return Err(DecodeError::malformed("unknown property")),
        }
    }
    Ok(props)
}

/// A will message; the edge reads it and does not publish it (`[NWP-14-10]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// The will topic.
    pub topic: String,
    /// The will payload.
    pub payload: Bytes,
}

/// CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// [`V311`] or [`V5`].
    pub level: u8,
    /// Clean Session (3.1.1) or Clean Start (5).
    pub clean: bool,
    /// Keep Alive, seconds; 0 turns it off.
    pub keep_alive: u16,
    /// The client identifier.
    pub client_id: String,
    /// The user name.
    pub username: Option<String>,
    /// The password: a natter token.
    pub password: Option<Bytes>,
    /// The will, if any.
    pub will: Option<Will>,
    /// MQTT 5 properties.
    pub properties: Properties,
}

/// PUBLISH from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// The DUP flag.
    pub dup: bool,
    /// 0, 1 or 2.
    pub qos: u8,
    /// The RETAIN flag.
    pub retain: bool,
    /// The topic name.
    pub topic: String,
    /// The packet identifier; 0 for QoS 0.
    pub packet_id: u16,
    /// MQTT 5 properties.
    pub properties: Properties,
    /// The application message.
    pub payload: Bytes,
}

/// One topic filter of a SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The filter.
    pub filter: String,
    /// The maximum QoS asked for.
    pub qos: u8,
    /// MQTT 5 No Local: the device's own messages are not sent back.
    pub no_local: bool,
}

/// A packet a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT (1).
    Connect(Connect),
    /// PUBLISH (3).
    Publish(Publish),
    /// PUBACK (4): the packet identifier.
    Puback(u16),
    /// SUBSCRIBE (8).
    Subscribe {
        /// Packet identifier.
        packet_id: u16,
        /// Subscription Identifier (MQTT 5).
        subscription_id: Option<u32>,
        /// The filters.
        filters: Vec<Filter>,
    },
    /// UNSUBSCRIBE (10).
    Unsubscribe {
        /// Packet identifier.
        packet_id: u16,
        /// The filters.
        filters: Vec<String>,
    },
    /// PINGREQ (12).
    Pingreq,
    /// DISCONNECT (14): the reason code (0 in 3.1.1).
    Disconnect(Reason),
}

impl Packet {
    /// Decodes the packet of fixed-header byte `first` and body `body`, on a connection of
    /// protocol `level` (0 before CONNECT).
    pub fn decode(first: u8, mut body: Bytes, level: u8) -> Result<Self> {
        let kind = first >> 4;
        let flags = first & 0x0f;
        let v5 = level == V5;
        let fixed = |expected: u8| {
            if flags == expected {
                Ok(())
            } else {
                Err(DecodeError::malformed("reserved header flags"))
            }
        };
        let packet = match kind {
            1 => {
                fixed(0)?;
                Packet::Connect(connect(&mut body)?)
            }
            3 => Packet::Publish(publish(flags, &mut body, v5)?),
            4 => {
                fixed(0)?;
                let id = u16_(&mut body)?;
                if v5 && body.has_remaining() {
                    byte(&mut body)?;
                    if body.has_remaining() {
                        properties(&mut body, Place::Puback)?;
                    }
                }
                Packet::Puback(id)
            }
            8 => {
                fixed(2)?;
                let packet_id = nonzero_id(&mut body)?;
                let props = if v5 {
                    properties(&mut body, Place::Subscribe)?
                } else {
                    Properties::default()
                };
                let mut filters = Vec::new();
                while body.has_remaining() {
                    let filter = string(&mut body)?;
                    let options = byte(&mut body)?;
                    let reserved = if v5 { 0xc0 } else { 0xfc };
                    if options & reserved != 0 || options & 0x03 == 3 || options & 0x30 == 0x30 {
                        return Err(DecodeError::malformed("subscription options"));
                    }
                    filters.push(Filter {
                        filter,
                        qos: options & 0x03,
                        no_local: v5 && options & 0x04 != 0,
                    });
                }
                if filters.is_empty() {
                    return Err(DecodeError::protocol("SUBSCRIBE without a filter"));
                }
                Packet::Subscribe {
                    packet_id,
                    subscription_id: props.subscription_id,
                    filters,
                }
            }
            10 => {
                fixed(2)?;
                let packet_id = nonzero_id(&mut body)?;
                if v5 {
                    properties(&mut body, Place::Unsubscribe)?;
                }
                let mut filters = Vec::new();
                while body.has_remaining() {
                    filters.push(string(&mut body)?);
                }
                if filters.is_empty() {
                    return Err(DecodeError::protocol("UNSUBSCRIBE without a filter"));
                }
                Packet::Unsubscribe { packet_id, filters }
            }
            12 => {
                fixed(0)?;
                Packet::Pingreq
            }
            14 => {
                fixed(0)?;
                let mut code = 0;
                if v5 && body.has_remaining() {
                    code = byte(&mut body)?;
                    if body.has_remaining() {
                        properties(&mut body, Place::Disconnect)?;
                    }
                }
                Packet::Disconnect(code)
            }
            // PUBREC, PUBREL, PUBCOMP: the edge never takes part in a QoS 2 exchange.
            5..=7 => return Err(DecodeError::protocol("QoS 2 is not supported")),
            // AUTH: no authentication method is supported.
            15 if v5 => {
                return Err(DecodeError {
                    reason: reason::BAD_AUTH_METHOD,
                    what: "AUTH is not supported",
                });
            }
            // CONNACK, SUBACK, UNSUBACK, PINGRESP only flow from a server; 0 and 15 are
            // reserved in 3.1.1.
            _ => return Err(DecodeError::protocol("packet type not sent by a client")),
        };
        if body.has_remaining() {
            return Err(DecodeError::malformed(
                "bytes after the packet's last field",
            ));
        }
        Ok(packet)
    }
}

fn connect(body: &mut Bytes) -> Result<Connect> {
    let name = string(body)?;
    let level = byte(body)?;
    if name != "MQTT" {
        // MQIsdp (3.1) and anything else: not a protocol this edge speaks.
        return Err(DecodeError {
            reason: reason::UNSUPPORTED_VERSION,
            what: "protocol name is not MQTT",
        });
    }
    if level != V311 && level != V5 {
        return Err(DecodeError {
            reason: reason::UNSUPPORTED_VERSION,
            what: "protocol level is neither 4 nor 5",
        });
    }
    let flags = byte(body)?;
    if flags & 0x01 != 0 {
        return Err(DecodeError::malformed("reserved CONNECT flag"));
    }
    let will_flag = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 0x03;
    let will_retain = flags & 0x20 != 0;
    if !will_flag && (will_qos != 0 || will_retain) || will_qos == 3 {
        return Err(DecodeError::malformed("will flags"));
    }
    let has_user = flags & 0x80 != 0;
    let has_password = flags & 0x40 != 0;
    if level == V311 && has_password && !has_user {
        return Err(DecodeError::malformed("password without user name"));
    }
    let keep_alive = u16_(body)?;
    let props = if level == V5 {
        properties(body, Place::Connect)?
    } else {
        Properties::default()
    };
    let client_id = string(body)?;
    let will = if will_flag {
        if level == V5 {
            properties(body, Place::Will)?;
        }
        let topic = string(body)?;
        let payload = binary(body)?;
        Some(Will { topic, payload })
    } else {
        None
    };
    let username = has_user.then(|| string(body)).transpose()?;
    let password = has_password.then(|| binary(body)).transpose()?;
    Ok(Connect {
        level,
        clean: flags & 0x02 != 0,
        keep_alive,
        client_id,
        username,
        password,
        will,
        properties: props,
    })
}

fn publish(flags: u8, body: &mut Bytes, v5: bool) -> Result<Publish> {
    let qos = (flags >> 1) & 0x03;
    if qos == 3 {
        return Err(DecodeError::malformed("QoS 3"));
    }
    let dup = flags & 0x08 != 0;
    if qos == 0 && dup {
        return Err(DecodeError::malformed("DUP set on QoS 0"));
    }
    let topic = string(body)?;
    let packet_id = if qos > 0 { nonzero_id(body)? } else { 0 };
    let props = if v5 {
        properties(body, Place::Publish)?
    } else {
        Properties::default()
    };
    Ok(Publish {
        dup,
        qos,
        retain: flags & 0x01 != 0,
        topic,
        packet_id,
        properties: props,
        payload: std::mem::take(body),
    })
}

fn byte(body: &mut Bytes) -> Result<u8> {
    if body.has_remaining() {
        Ok(body.get_u8())
    } else {
        Err(DecodeError::malformed("truncated"))
    }
}

fn u16_(body: &mut Bytes) -> Result<u16> {
    if body.remaining() >= 2 {
        Ok(body.get_u16())
    } else {
        Err(DecodeError::malformed("truncated"))
    }
}

fn u32_(body: &mut Bytes) -> Result<u32> {
    if body.remaining() >= 4 {
        Ok(body.get_u32())
    } else {
        Err(DecodeError::malformed("truncated"))
    }
}

fn nonzero_id(body: &mut Bytes) -> Result<u16> {
    match u16_(body)? {
        0 => Err(DecodeError::protocol("packet identifier 0")),
        id => Ok(id),
    }
}

/// A Variable Byte Integer of at most 4 bytes.
fn varint(body: &mut Bytes) -> Result<u32> {
    let mut value = 0u32;
    for shift in 0..4 {
        let b = byte(body)?;
        value |= u32::from(b & 0x7f) << (7 * shift);
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(DecodeError::malformed(
        "variable byte integer longer than 4 bytes",
    ))
}

fn binary(body: &mut Bytes) -> Result<Bytes> {
    let length = usize::from(u16_(body)?);
    if body.remaining() < length {
        return Err(DecodeError::malformed("truncated"));
    }
    Ok(body.split_to(length))
}

/// A UTF-8 Encoded String: valid UTF-8 without U+0000 ([MQTT-1.5.4-1], [MQTT-1.5.4-2]).
fn string(body: &mut Bytes) -> Result<String> {
    let raw = binary(body)?;
    let text = std::str::from_utf8(&raw).map_err(|_| DecodeError::malformed("invalid UTF-8"))?;
    if text.contains('\0') {
        return Err(DecodeError::malformed("U+0000 in a string"));
    }
    Ok(text.to_string())
}

fn put_varint(out: &mut BytesMut, mut value: usize) {
    loop {
        let mut b = (value & 0x7f) as u8;
        value >>= 7;
        if value > 0 {
            b |= 0x80;
        }
        out.put_u8(b);
        if value == 0 {
            break;
        }
    }
}

fn put_string(out: &mut BytesMut, text: &str) {
    let bytes = &text.as_bytes()[..text.len().min(u16::MAX as usize)];
    out.put_u16(bytes.len() as u16);
    out.put_slice(bytes);
}

/// Frames a body behind its fixed header.
fn frame(first: u8, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(body.len() + 5);
    out.put_u8(first);
    put_varint(&mut out, body.len());
    out.put_slice(body);
    out.freeze()
}

/// Properties the edge writes.
#[derive(Debug, Clone, Default)]
pub struct OutProperties {
    /// (identifier, value) pairs of one-byte properties.
    pub bytes: Vec<(u8, u8)>,
    /// Two-byte properties.
    pub shorts: Vec<(u8, u16)>,
    /// Four-byte properties.
    pub words: Vec<(u8, u32)>,
    /// String properties (Content Type, Reason String, Assigned Client Identifier).
    pub strings: Vec<(u8, String)>,
    /// User properties.
    pub user: Vec<(String, String)>,
}

impl OutProperties {
    fn write(&self, out: &mut BytesMut) {
        let mut list = BytesMut::new();
        for (id, value) in &self.bytes {
            list.put_u8(*id);
            list.put_u8(*value);
        }
        for (id, value) in &self.shorts {
            list.put_u8(*id);
            list.put_u16(*value);
        }
        for (id, value) in &self.words {
            list.put_u8(*id);
            list.put_u32(*value);
        }
        for (id, value) in &self.strings {
            list.put_u8(*id);
            put_string(&mut list, value);
        }
        for (key, value) in &self.user {
            list.put_u8(0x26);
            put_string(&mut list, key);
            put_string(&mut list, value);
        }
        put_varint(out, list.len());
        out.put_slice(&list);
    }
}

/// CONNACK: in 3.1.1 `code` is the return code, in 5 the reason code.
pub fn encode_connack(level: u8, session_present: bool, code: u8, props: &OutProperties) -> Bytes {
    let mut body = BytesMut::new();
    body.put_u8(u8::from(session_present));
    body.put_u8(code);
    if level == V5 {
        props.write(&mut body);
    }
    frame(0x20, &body)
}

/// PUBLISH from the edge.
pub fn encode_publish(
    level: u8,
    qos: u8,
    topic: &str,
    packet_id: u16,
    props: &OutProperties,
    payload: &[u8],
) -> Bytes {
    let mut body = BytesMut::with_capacity(payload.len() + topic.len() + 64);
    put_string(&mut body, topic);
    if qos > 0 {
        body.put_u16(packet_id);
    }
    if level == V5 {
        props.write(&mut body);
    }
    body.put_slice(payload);
    frame(0x30 | (qos << 1), &body)
}

/// PUBACK; a v5 PUBACK with a reason other than success carries it.
pub fn encode_puback(level: u8, packet_id: u16, code: Reason) -> Bytes {
    let mut body = BytesMut::new();
    body.put_u16(packet_id);
    if level == V5 && code != reason::SUCCESS {
        body.put_u8(code);
    }
    frame(0x40, &body)
}

/// SUBACK with one code per filter.
pub fn encode_suback(level: u8, packet_id: u16, codes: &[u8]) -> Bytes {
    let mut body = BytesMut::new();
    body.put_u16(packet_id);
    if level == V5 {
        body.put_u8(0);
    }
    body.put_slice(codes);
    frame(0x90, &body)
}

/// UNSUBACK; v5 carries one reason code per filter.
pub fn encode_unsuback(level: u8, packet_id: u16, codes: &[u8]) -> Bytes {
    let mut body = BytesMut::new();
    body.put_u16(packet_id);
    if level == V5 {
        body.put_u8(0);
        body.put_slice(codes);
    }
    frame(0xb0, &body)
}

/// PINGRESP.
pub fn encode_pingresp() -> Bytes {
    Bytes::from_static(&[0xd0, 0x00])
}

/// DISCONNECT from the server (MQTT 5 only).
pub fn encode_disconnect(code: Reason) -> Bytes {
    frame(0xe0, &[code, 0x00])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8], level: u8) -> Result<Packet> {
        let mut buf = BytesMut::from(bytes);
        let (first, body) = split_packet(&mut buf, 1 << 20)?.expect("a whole packet");
        Packet::decode(first, body, level)
    }

    #[test]
    fn a_v311_connect_with_a_token() {
        let bytes = [
            0x10, 0x16, // CONNECT, remaining length 22
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
            0x04, // level 4
            0xc2, // user name, password, clean session
            0x00, 0x3c, // keep alive 60
            0x00, 0x02, b'p', b'h', // client id "ph"
            0x00, 0x01, b'a', // user name "a"
            0x00, 0x03, b't', b'o', b'k', // password "tok"
            0xff, // one byte past the packet: left in the buffer
        ];
        let mut buf = BytesMut::from(&bytes[..]);
        let (first, body) = split_packet(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(buf.as_ref(), &[0xff]);
        let Packet::Connect(connect) = Packet::decode(first, body, 0).unwrap() else {
            panic!("not CONNECT");
        };
        assert_eq!(connect.level, V311);
        assert!(connect.clean);
        assert_eq!(connect.keep_alive, 60);
        assert_eq!(connect.client_id, "ph");
        assert_eq!(connect.username.as_deref(), Some("a"));
        assert_eq!(connect.password.as_deref(), Some(&b"tok"[..]));
    }

    #[test]
    fn a_v5_publish_with_properties() {
        let bytes = [
            0x32, 0x18, // PUBLISH QoS 1, remaining length 24
            0x00, 0x03, b'a', b'/', b'b', // topic "a/b"
            0x00, 0x07, // packet id 7
            0x0e, // properties length 14
            0x03, 0x00, 0x02, b't', b'x', // content type "tx"
            0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property k=v
            0x01, 0x01, // payload is UTF-8
            b'h', b'i', // payload
        ];
        let Packet::Publish(publish) = decode(&bytes, V5).unwrap() else {
            panic!("not PUBLISH");
        };
        assert_eq!((publish.qos, publish.packet_id), (1, 7));
        assert_eq!(publish.properties.content_type.as_deref(), Some("tx"));
        assert_eq!(publish.properties.user, vec![("k".into(), "v".into())]);
        assert!(publish.properties.payload_utf8);
        assert_eq!(publish.payload.as_ref(), b"hi");
    }

    #[test]
    fn hostile_bytes_name_their_reason() {
        let cases: &[(&[u8], u8, Reason)] = &[
            // Remaining length of five bytes.
            (&[0x30, 0xff, 0xff, 0xff, 0xff, 0x7f], V5, reason::MALFORMED),
            // PUBLISH QoS 3.
            (&[0x36, 0x03, 0x00, 0x01, b'a'], V5, reason::MALFORMED),
            // Invalid UTF-8 topic.
            (&[0x30, 0x04, 0x00, 0x01, 0xff, 0x00], V5, reason::MALFORMED),
            // A property a PUBLISH may not carry (Session Expiry Interval).
            (
                &[0x30, 0x09, 0x00, 0x01, b'a', 0x05, 0x11, 0, 0, 0, 1],
                V5,
                reason::MALFORMED,
            ),
            // Content Type twice.
            (
                &[0x30, 0x0a, 0x00, 0x01, b'a', 0x06, 0x03, 0, 0, 0x03, 0, 0],
                V5,
                reason::PROTOCOL_ERROR,
            ),
            // Property list longer than the packet.
            (&[0x30, 0x04, 0x00, 0x01, b'a', 0x09], V5, reason::MALFORMED),
            // CONNACK from a client.
            (&[0x20, 0x02, 0x00, 0x00], V311, reason::PROTOCOL_ERROR),
            // SUBSCRIBE with wrong reserved flags.
            (&[0x80, 0x06, 0, 1, 0, 1, b'a', 0], V311, reason::MALFORMED),
            // QoS 1 PUBLISH with packet id 0.
            (
                &[0x32, 0x05, 0x00, 0x01, b'a', 0, 0],
                V311,
                reason::PROTOCOL_ERROR,
            ),
            // PUBREL.
            (&[0x62, 0x02, 0x00, 0x01], V311, reason::PROTOCOL_ERROR),
        ];
        for (bytes, level, expected) in cases {
            let got = decode(bytes, *level).map(|_| ()).unwrap_err();
            assert_eq!(got.reason, *expected, "{bytes:02x?}: {}", got.what);
        }
    }

    #[test]
    fn an_oversized_packet_is_refused_before_its_body_arrives() {
        let mut buf = BytesMut::from(&[0x30, 0x80, 0x80, 0x04][..]);
        let error = split_packet(&mut buf, 1024).unwrap_err();
        assert_eq!(error.reason, reason::PACKET_TOO_LARGE);
    }

    #[test]
    fn every_split_of_a_packet_waits_for_the_rest() {
        let packet = encode_publish(
            V311,
            1,
            "natter/in/g/x",
            9,
            &OutProperties::default(),
            b"hi",
        );
        for cut in 0..packet.len() {
            let mut buf = BytesMut::from(&packet[..cut]);
            assert_eq!(split_packet(&mut buf, 1024).unwrap(), None, "cut at {cut}");
        }
    }

    #[test]
    fn what_the_edge_writes() {
        assert_eq!(
            encode_connack(V311, false, 0x04, &OutProperties::default()).as_ref(),
            &[0x20, 0x02, 0x00, 0x04]
        );
        assert_eq!(
            encode_connack(V5, true, 0, &OutProperties::default()).as_ref(),
            &[0x20, 0x03, 0x01, 0x00, 0x00]
        );
        assert_eq!(
            encode_puback(V311, 0x0102, 0).as_ref(),
            &[0x40, 0x02, 0x01, 0x02]
        );
        assert_eq!(
            encode_puback(V5, 1, reason::NOT_AUTHORIZED).as_ref(),
            &[0x40, 0x03, 0x00, 0x01, 0x87]
        );
        assert_eq!(
            encode_suback(V311, 2, &[1, 0x80]).as_ref(),
            &[0x90, 0x04, 0, 2, 1, 0x80]
        );
        assert_eq!(encode_disconnect(0x95).as_ref(), &[0xe0, 0x02, 0x95, 0x00]);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut bytes = Vec::new();
            for _ in 0..(state % 40) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                bytes.push(state as u8);
            }
            for level in [0, V311, V5] {
                let mut buf = BytesMut::from(&bytes[..]);
                while let Ok(Some((first, body))) = split_packet(&mut buf, 256) {
                    let _ = Packet::decode(first, body, level);
                }
            }
        }
    }
}
