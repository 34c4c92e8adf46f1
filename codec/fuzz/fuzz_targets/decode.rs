//! Feeds arbitrary bytes to the stream decoder: it must never panic, and every frame it
//! returns must re-encode to bytes that decode to the same frame.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use natter_codec::{Frame, split_frame};

/// A small limit, so the fuzzer also reaches the oversized-frame path.
const MAX_FRAME_SIZE: u64 = 4096;

fuzz_target!(|data: &[u8]| {
    let mut stream = BytesMut::from(data);
    while let Ok(Some(bytes)) = split_frame(&mut stream, MAX_FRAME_SIZE) {
        let Ok(frame) = Frame::decode(bytes.clone()) else {
            break;
        };
        let encoded = frame.to_bytes().expect("a decoded frame encodes");
        assert!(encoded.len() <= bytes.len(), "re-encoding grew the frame");
        let again = Frame::decode(encoded.clone()).expect("a re-encoded frame decodes");
        assert_eq!(again, frame);
        assert_eq!(again.to_bytes().expect("encodes"), encoded);
        // Nested frames must themselves be safe to decode.
        let nested = match &frame {
            Frame::Routed(routed) => Some(routed.frame.clone()),
            Frame::Push(push) => Some(push.frame.clone()),
            _ => None,
        };
        if let Some(nested) = nested {
            let _ = Frame::decode(nested);
        }
    }
});
