//! Decode and encode throughput for SEND and DELIVER with a 100-byte body, and the bytes each
//! frame adds to its body compared with an MQTT PUBLISH (QoS 1) of the same body.
//!
//! `cargo bench -p natter-codec` prints the overhead table first, then criterion's timings;
//! frames per second per core is 1 / (time per iteration).

// A benchmark is test code: a frame that fails to encode or decode must stop it loudly.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use natter_codec::types::{Event, EventFlags, EventKind};
use natter_codec::{DEFAULT_MAX_FRAME_SIZE, Frame, decode_frame, frame};

const BODY_LEN: usize = 100;
const CONVERSATION: &str = "d/alice/bob";

fn send() -> Frame {
    Frame::from(frame::Send {
        request: 1_000,
        conversation: CONVERSATION.into(),
        client_msg_id: 1_700_000_000_123,
        kind: EventKind::MESSAGE,
        target: 0,
        content_type: "".into(),
        body: Bytes::from(vec![b'x'; BODY_LEN]),
    })
}

fn deliver() -> Frame {
    Frame::from(frame::Deliver {
        inbox_seq: 123_456,
        conversation: CONVERSATION.into(),
        event: Event {
            seq: 98_765,
            kind: EventKind::MESSAGE,
            target: 0,
            flags: EventFlags::NONE,
            timestamp: 1_767_225_600_000,
            sender: "alice".into(),
            device: "phone".into(),
            client_msg_id: 1_700_000_000_123,
            content_type: "".into(),
            body: Bytes::from(vec![b'x'; BODY_LEN]),
        },
    })
}

/// Bytes an MQTT variable byte integer (the Remaining Length) takes: MQTT 3.1.1 section 2.2.3.
fn mqtt_varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// An MQTT PUBLISH with QoS 1: fixed header (1 byte + Remaining Length), topic name (2-byte
/// length + bytes), packet identifier (2 bytes), in MQTT 5 a property length (1 byte for no
/// properties), then the payload (MQTT 3.1.1 section 3.3, MQTT 5.0 section 3.3).
fn mqtt_publish_qos1_len(topic: &str, body: usize, mqtt5: bool) -> usize {
    let remaining = 2 + topic.len() + 2 + usize::from(mqtt5) + body;
    1 + mqtt_varint_len(remaining) + remaining
}

fn print_overhead() {
    let send = send().encoded_len() - BODY_LEN;
    let deliver = deliver().encoded_len() - BODY_LEN;
    let mqtt311 = mqtt_publish_qos1_len(CONVERSATION, BODY_LEN, false) - BODY_LEN;
    let mqtt5 = mqtt_publish_qos1_len(CONVERSATION, BODY_LEN, true) - BODY_LEN;
    println!(
        "bytes of overhead around a {BODY_LEN}-byte body, conversation/topic {CONVERSATION:?}:"
    );
    println!("  natter SEND                                      {send:>3}");
    println!("  natter DELIVER (seq, timestamp, sender, device)  {deliver:>3}");
    println!("  MQTT 3.1.1 PUBLISH QoS 1                         {mqtt311:>3}");
    println!("  MQTT 5.0 PUBLISH QoS 1, no properties            {mqtt5:>3}");
    println!("  (MQTT PUBACK: 4 bytes; natter SEND_ACK ~13 bytes, ACK 2-5 bytes)");
}

fn bench_frame(c: &mut Criterion, name: &str, frame: &Frame) {
    let wire = frame.to_bytes().unwrap();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(1));

    group.bench_function("decode", |b| {
        b.iter(|| Frame::decode(black_box(wire.clone())).unwrap());
    });
    group.bench_function("decode_stream", |b| {
        let mut buf = BytesMut::with_capacity(wire.len());
        b.iter(|| {
            buf.extend_from_slice(&wire);
            decode_frame(black_box(&mut buf), DEFAULT_MAX_FRAME_SIZE)
                .unwrap()
                .unwrap()
        });
    });
    group.bench_function("encode", |b| {
        let mut buf = BytesMut::with_capacity(wire.len());
        b.iter(|| {
            buf.clear();
            black_box(frame).encode(&mut buf).unwrap();
            black_box(buf.len())
        });
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    print_overhead();
    bench_frame(c, "send_100b", &send());
    bench_frame(c, "deliver_100b", &deliver());
}

criterion_group!(codec, benches);
criterion_main!(codec);
