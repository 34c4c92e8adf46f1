//! Feeds arbitrary bytes to the MQTT framing and packet decoder at every protocol level: it
//! must never panic (spec `[NWP-14-13]`), and a PUBLISH it reads must encode back.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use natter_edge::mqtt::codec::{OutProperties, Packet, split_packet, encode_publish};

/// A small limit, so the fuzzer also reaches the oversized-packet path.
const MAX_PACKET: usize = 4096;

fuzz_target!(|data: &[u8]| {
    for level in [0, 4, 5] {
        let mut stream = BytesMut::from(data);
        while let Ok(Some((first, body))) = split_packet(&mut stream, MAX_PACKET) {
            if let Ok(Packet::Publish(publish)) = Packet::decode(first, body, level) {
                let qos = publish.qos.min(1);
                let bytes = encode_publish(
                    level,
                    qos,
                    &publish.topic,
                    publish.packet_id.max(1),
                    &OutProperties::default(),
                    &publish.payload,
                );
                assert!(!bytes.is_empty());
            }
        }
    }
});
