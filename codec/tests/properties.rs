//! Property tests: every frame round-trips, and no input panics the decoder.

use bytes::{Bytes, BytesMut};
use natter_codec::{
    DecodeError, Frame, FrameType, MAX_FRAME_SIZE_CAP, decode_frame, frame, split_frame,
};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn every_frame_round_trips(frame in any::<Frame>()) {
        let encoded = frame.to_bytes().unwrap();
        prop_assert_eq!(encoded.len(), frame.encoded_len());
        prop_assert_eq!(Frame::decode(encoded.clone()).unwrap(), frame.clone());

        let mut stream = BytesMut::from(&encoded[..]);
        stream.extend_from_slice(&encoded);
        for _ in 0..2 {
            let decoded = decode_frame(&mut stream, MAX_FRAME_SIZE_CAP).unwrap();
            prop_assert_eq!(decoded.as_ref(), Some(&frame));
        }
        prop_assert!(stream.is_empty());
    }

    #[test]
    fn nested_frames_round_trip(inner in any::<Frame>(), session in any::<u32>()) {
        let routed = Frame::from(frame::Routed {
            session: session.into(),
            user: "alice".into(),
            device: "phone".into(),
            frame: inner.to_bytes().unwrap(),
        });
        let Frame::Routed(decoded) = Frame::decode(routed.to_bytes().unwrap()).unwrap() else {
            panic!("not ROUTED");
        };
        prop_assert_eq!(Frame::decode(decoded.frame).unwrap(), inner);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut stream = BytesMut::from(&bytes[..]);
        while let Ok(Some(frame)) = decode_frame(&mut stream, 1024) {
            // Whatever decodes re-encodes to something that decodes to the same frame.
            prop_assert_eq!(Frame::decode(frame.to_bytes().unwrap()).unwrap(), frame);
        }
        let _ = Frame::decode(Bytes::from(bytes));
    }

    /// Payloads of random bytes under every known type: mostly malformed, never a panic.
    #[test]
    fn arbitrary_payloads_never_panic(
        index in 0..FrameType::KNOWN.len(),
        payload in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        let frame_type = FrameType::KNOWN[index];
        let mut wire = BytesMut::new();
        let unknown = Frame::Unknown(frame::UnknownFrame {
            frame_type,
            payload: Bytes::from(payload),
        });
        unknown.encode(&mut wire).unwrap();
        if let Ok(frame) = Frame::decode(wire.freeze()) {
            prop_assert_eq!(frame.frame_type(), frame_type);
            prop_assert_eq!(Frame::decode(frame.to_bytes().unwrap()).unwrap(), frame);
        }
    }

    /// The limit is enforced from the length prefix, whatever follows it.
    #[test]
    fn oversized_lengths_are_rejected_before_the_body(len in 1025u64..(1 << 62)) {
        let mut buf = BytesMut::new();
        natter_codec::varint::encode(len, &mut buf).unwrap();
        let capacity = buf.capacity();
        prop_assert_eq!(
            split_frame(&mut buf, 1024),
            Err(DecodeError::FrameTooLarge { len, max: 1024 })
        );
        prop_assert_eq!(buf.capacity(), capacity);
    }
}
