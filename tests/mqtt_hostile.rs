//! The MQTT listener against hostile bytes (spec 14.1, 14.4): each row is what a client
//! sends and exactly what the server answers before it closes, against the real binary.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a failed step should panic"
)]

mod support;

use std::time::Duration;

use support::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Guards against a hang; no assertion depends on how fast anything is.
const PATIENCE: Duration = Duration::from_secs(20);

/// An MQTT string: length, then bytes.
fn string(text: &[u8]) -> Vec<u8> {
    let mut out = (text.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(text);
    out
}

/// A packet: the first byte, the Remaining Length, the body.
fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut length = body.len();
    loop {
        let mut byte = (length & 0x7f) as u8;
        length >>= 7;
        if length > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if length == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// CONNECT at `level` (4 or 5), clean, keep alive 60, with a user name and password.
fn connect(level: u8, client_id: &str, password: &str) -> Vec<u8> {
    let mut body = string(b"MQTT");
    body.extend([level, 0xc2, 0x00, 0x3c]);
    if level == 5 {
        body.push(0x00);
    }
    body.extend(string(client_id.as_bytes()));
    body.extend(string(b""));
    body.extend(string(password.as_bytes()));
    packet(0x10, &body)
}

/// Sends `bytes`, then reads until the server closes.
async fn exchange(addr: &str, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("the server closes")
        .ok();
    answer
}

/// Strips the CONNACK of success the answer starts with, checking it is one.
fn after_connack(answer: &[u8]) -> &[u8] {
    assert!(
        answer.len() >= 4 && answer[0] == 0x20,
        "no CONNACK: {answer:02x?}"
    );
    let length = usize::from(answer[1]);
    let reason = answer[3];
    assert_eq!(reason, 0, "CONNACK refused: {answer:02x?}");
    &answer[2 + length..]
}

#[tokio::test]
async fn hostile_mqtt_input_gets_the_exact_reason_or_a_close() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let addr = format!("127.0.0.1:{port}");
    let _server = Server::start(dir.path(), &["--mqtt", &addr]);
    let token = support::token("mallory", "box");

    // Before CONNECT: every bad start closes without a word.
    let before: &[(&str, Vec<u8>, &[u8])] = &[
        (
            "remaining length of 5 bytes",
            vec![0x30, 0xff, 0xff, 0xff, 0xff, 0x7f],
            b"",
        ),
        ("PUBLISH first", packet(0x30, &[0x00, 0x01, b'a']), b""),
        ("PINGREQ first", vec![0xc0, 0x00], b""),
        (
            "protocol name MQIsdp",
            {
                let mut body = string(b"MQIsdp");
                body.extend([3, 0x02, 0, 60]);
                body.extend(string(b"box"));
                packet(0x10, &body)
            },
            &[0x20, 0x02, 0x00, 0x01],
        ),
        (
            "protocol level 6",
            {
                let mut body = string(b"MQTT");
                body.extend([6, 0x02, 0, 60]);
                body.extend(string(b"box"));
                packet(0x10, &body)
            },
            &[0x20, 0x02, 0x00, 0x01],
        ),
        (
            "3.1.1 bad token",
            connect(4, "box", "not-a-token"),
            &[0x20, 0x02, 0x00, 0x04],
        ),
        (
            "5 bad token",
            connect(5, "box", "not-a-token"),
            &[0x20, 0x03, 0x00, 0x86, 0x00],
        ),
        (
            "5 another device's client id",
            connect(5, "other", &token),
            &[0x20, 0x03, 0x00, 0x85, 0x00],
        ),
        (
            "3.1.1 another device's client id",
            connect(4, "other", &token),
            &[0x20, 0x02, 0x00, 0x02],
        ),
        (
            "3.1.1 wrong user name",
            {
                let mut body = string(b"MQTT");
                body.extend([4, 0xc2, 0, 60]);
                body.extend(string(b"box"));
                body.extend(string(b"eve"));
                body.extend(string(token.as_bytes()));
                packet(0x10, &body)
            },
            &[0x20, 0x02, 0x00, 0x04],
        ),
    ];
    for (name, bytes, expected) in before {
        let answer = exchange(&addr, bytes).await;
        assert_eq!(answer, *expected, "{name}");
    }

    // After a good CONNECT: MQTT 5 says why in DISCONNECT, 3.1.1 closes.
    let publish5 = |flags: u8, topic: &[u8], props: &[u8]| {
        let mut body = string(topic);
        if flags & 0x06 != 0 {
            body.extend([0x00, 0x01]);
        }
        body.push(props.len() as u8);
        body.extend_from_slice(props);
        body.extend_from_slice(b"hi");
        packet(0x30 | flags, &body)
    };
    let topic = b"natter/send/d/box/mallory";
    let mut oversized = vec![0x30, 0x80, 0x80, 0x80, 0x01];
    oversized.extend([0u8; 64]);
    let after: &[(&str, u8, Vec<u8>, &[u8])] = &[
        (
            "oversized packet",
            5,
            oversized.clone(),
            &[0xe0, 0x02, 0x95, 0x00],
        ),
        ("oversized packet, 3.1.1", 4, oversized, b""),
        (
            "invalid UTF-8 topic",
            5,
            publish5(0, &[b'a', 0xff], &[]),
            &[0xe0, 0x02, 0x81, 0x00],
        ),
        (
            "U+0000 in a topic",
            5,
            publish5(0, b"a\0b", &[]),
            &[0xe0, 0x02, 0x81, 0x00],
        ),
        (
            "a property PUBLISH may not carry",
            5,
            publish5(0, topic, &[0x11, 0, 0, 0, 1]),
            &[0xe0, 0x02, 0x81, 0x00],
        ),
        (
            "Content Type twice",
            5,
            publish5(0, topic, &[0x03, 0, 0, 0x03, 0, 0]),
            &[0xe0, 0x02, 0x82, 0x00],
        ),
        (
            "property list past the packet",
            5,
            packet(0x30, &[0x00, 0x01, b'a', 0x09]),
            &[0xe0, 0x02, 0x81, 0x00],
        ),
        (
            "unknown property",
            5,
            publish5(0, topic, &[0x7f, 0]),
            &[0xe0, 0x02, 0x81, 0x00],
        ),
        (
            "Topic Alias",
            5,
            publish5(0, topic, &[0x23, 0, 1]),
            &[0xe0, 0x02, 0x94, 0x00],
        ),
        (
            "QoS 2",
            5,
            publish5(0x04, topic, &[]),
            &[0xe0, 0x02, 0x9b, 0x00],
        ),
        (
            "QoS 3",
            5,
            publish5(0x06, topic, &[]),
            &[0xe0, 0x02, 0x81, 0x00],
        ),
        (
            "RETAIN",
            5,
            publish5(0x01, topic, &[]),
            &[0xe0, 0x02, 0x9a, 0x00],
        ),
        (
            "wildcard in a topic name",
            5,
            publish5(0, b"natter/send/#", &[]),
            &[0xe0, 0x02, 0x90, 0x00],
        ),
        (
            "second CONNECT",
            5,
            connect(5, "box", &token),
            &[0xe0, 0x02, 0x82, 0x00],
        ),
        (
            "CONNACK from a client",
            5,
            vec![0x20, 0x02, 0x00, 0x00],
            &[0xe0, 0x02, 0x82, 0x00],
        ),
        (
            "PUBREL",
            5,
            vec![0x62, 0x02, 0x00, 0x01],
            &[0xe0, 0x02, 0x82, 0x00],
        ),
        ("AUTH", 5, vec![0xf0, 0x00], &[0xe0, 0x02, 0x8c, 0x00]),
        (
            "QoS 2, 3.1.1",
            4,
            packet(0x34, &[0x00, 0x01, b'a', 0x00, 0x01]),
            b"",
        ),
        (
            "PUBLISH to $SYS, 3.1.1",
            4,
            packet(0x30, &string(b"$SYS/x")),
            b"",
        ),
        (
            "SUBSCRIBE outside the inbox, then DISCONNECT",
            5,
            {
                let mut body = vec![0x00, 0x07, 0x00];
                for filter in [
                    &b"#"[..],
                    b"$SYS/#",
                    b"natter/in/#",
                    b"$share/g/natter/in/#",
                ] {
                    body.extend(string(filter));
                    body.push(0x02);
                }
                let mut bytes = packet(0x82, &body);
                bytes.extend([0xe0, 0x00]);
                bytes
            },
            &[0x90, 0x07, 0x00, 0x07, 0x00, 0x87, 0x87, 0x01, 0x9e],
        ),
        (
            "SUBSCRIBE outside the inbox, 3.1.1",
            4,
            {
                let mut body = vec![0x00, 0x07];
                for filter in [&b"#"[..], b"$SYS/#", b"natter/in/#"] {
                    body.extend(string(filter));
                    body.push(0x01);
                }
                let mut bytes = packet(0x82, &body);
                bytes.extend([0xe0, 0x00]);
                bytes
            },
            &[0x90, 0x05, 0x00, 0x07, 0x80, 0x80, 0x01],
        ),
    ];
    for (name, level, bytes, expected) in after {
        let mut sent = connect(*level, "box", &token);
        sent.extend_from_slice(bytes);
        let answer = exchange(&addr, &sent).await;
        assert_eq!(after_connack(&answer), *expected, "{name}: {answer:02x?}");
    }
}
