//! Runs every vector of spec/vectors against the codec.

mod support;

use std::collections::BTreeSet;

use bytes::{Bytes, BytesMut};
use natter_codec::{DecodeError, Frame, FrameType, MAX_FRAME_SIZE_CAP, decode_frame, split_frame};
use serde_json::Value;
use support::{Expect, Mode, Vector, load_all, vectors_dir};

/// Every decode error, by its vector name; a new variant must be added here and get a vector.
const DECODE_ERRORS: [DecodeError; 7] = [
    DecodeError::FrameTooLarge { len: 0, max: 0 },
    DecodeError::EmptyFrame,
    DecodeError::Truncated,
    DecodeError::NonMinimalVarint,
    DecodeError::InvalidUtf8,
    DecodeError::InvalidFlag,
    DecodeError::TrailingData,
];

/// Errors of a transport message rather than of the bytes of a frame: they have no
/// [`DecodeError`], and a new one must be added here and get a vector.
const MESSAGE_ERRORS: [&str; 1] = ["not_one_frame"];

/// Why decoding a vector failed: a decode error, or a message that is not one frame.
#[derive(Debug, Clone, PartialEq)]
enum Failure {
    Decode(DecodeError),
    /// `[NWP-5.6-2]`: a WebSocket message holding less or more than one frame.
    NotOneFrame,
}

impl Failure {
    fn name(&self) -> &'static str {
        match self {
            Self::Decode(error) => error.vector_name(),
            Self::NotOneFrame => MESSAGE_ERRORS[0],
        }
    }
}

impl From<DecodeError> for Failure {
    fn from(error: DecodeError) -> Self {
        Self::Decode(error)
    }
}

/// Decodes a vector's whole input the way its mode says; for a stream, also returns what is
/// left in the buffer.
fn decode(vector: &Vector) -> (Result<Option<Frame>, Failure>, usize) {
    match vector.mode {
        Mode::Stream => {
            let mut buf = BytesMut::from(&vector.bytes[..]);
            let result = decode_frame(&mut buf, vector.max_frame_size).map_err(Failure::from);
            (result, buf.len())
        }
        Mode::Nested => (
            Frame::decode(Bytes::copy_from_slice(&vector.bytes))
                .map(Some)
                .map_err(Failure::from),
            0,
        ),
        Mode::Message => (decode_message(&vector.bytes, vector.max_frame_size), 0),
    }
}

/// Decodes one WebSocket message the way `[NWP-5.6-2]` says: exactly one whole frame.
fn decode_message(message: &[u8], max_frame_size: u64) -> Result<Option<Frame>, Failure> {
    let mut buf = BytesMut::from(message);
    match split_frame(&mut buf, max_frame_size)? {
        Some(frame) if buf.is_empty() => Ok(Some(Frame::decode(frame)?)),
        _ => Err(Failure::NotOneFrame),
    }
}

#[test]
fn valid_vectors_decode_to_their_value_and_reencode_to_their_bytes() {
    let mut checked = 0;
    for vector in load_all() {
        let Expect::Frame(expected) = &vector.expect else {
            continue;
        };
        let (result, left) = decode(&vector);
        let frame = result
            .unwrap_or_else(|e| panic!("{}: {e:?}", vector.id()))
            .unwrap_or_else(|| panic!("{}: incomplete", vector.id()));
        let value: Value = serde_json::to_value(&frame).unwrap();
        assert_eq!(&value, expected, "{}", vector.id());
        assert_eq!(left, vector.trailing, "{}: bytes left", vector.id());

        // The stream decoder and the exact-frame decoder agree.
        let exact = Frame::decode(Bytes::copy_from_slice(vector.frame_bytes())).unwrap();
        assert_eq!(exact, frame, "{}", vector.id());

        let encoded = frame.to_bytes().unwrap();
        assert_eq!(encoded.len(), frame.encoded_len(), "{}", vector.id());
        if vector.roundtrip {
            assert_eq!(
                hex::encode(&encoded),
                hex::encode(vector.frame_bytes()),
                "{}",
                vector.id()
            );
        } else {
            // Extension bytes are dropped, and what is left decodes to the same frame.
            assert!(
                encoded.len() < vector.frame_bytes().len(),
                "{}",
                vector.id()
            );
            assert_eq!(Frame::decode(encoded).unwrap(), frame, "{}", vector.id());
        }
        checked += 1;
    }
    assert!(checked > 40, "only {checked} valid vectors");
}

#[test]
fn valid_vectors_decode_when_split_at_every_byte_boundary() {
    for vector in load_all() {
        if vector.mode != Mode::Stream || !matches!(vector.expect, Expect::Frame(_)) {
            continue;
        }
        let frame_len = vector.frame_bytes().len();
        let expected = decode_frame(
            &mut BytesMut::from(&vector.bytes[..]),
            vector.max_frame_size,
        )
        .unwrap()
        .unwrap();

        // Two pieces, split at every boundary.
        for split in 1..vector.bytes.len() {
            let mut buf = BytesMut::from(&vector.bytes[..split]);
            let early = split_frame(&mut buf, vector.max_frame_size).unwrap();
            let frame = match early {
                Some(frame) => {
                    assert!(split >= frame_len, "{} split {split}", vector.id());
                    buf.extend_from_slice(&vector.bytes[split..]);
                    frame
                }
                None => {
                    assert!(split < frame_len, "{} split {split}", vector.id());
                    buf.extend_from_slice(&vector.bytes[split..]);
                    split_frame(&mut buf, vector.max_frame_size)
                        .unwrap()
                        .unwrap()
                }
            };
            assert_eq!(
                &frame[..],
                vector.frame_bytes(),
                "{} split {split}",
                vector.id()
            );
            assert_eq!(Frame::decode(frame).unwrap(), expected, "{}", vector.id());
            assert_eq!(buf.len(), vector.trailing, "{} split {split}", vector.id());
        }

        // One byte at a time: nothing until the frame's last byte, then the frame.
        let mut buf = BytesMut::new();
        for (index, &byte) in vector.bytes[..frame_len].iter().enumerate() {
            buf.extend_from_slice(&[byte]);
            let decoded = decode_frame(&mut buf, vector.max_frame_size).unwrap();
            if index + 1 < frame_len {
                assert_eq!(decoded, None, "{} byte {index}", vector.id());
            } else {
                assert_eq!(decoded.as_ref(), Some(&expected), "{}", vector.id());
                assert!(buf.is_empty(), "{}", vector.id());
            }
        }
    }
}

#[test]
fn message_vectors_hold_one_frame_or_fail_as_a_stream_would_not() {
    // [NWP-5.6-2]: a message that is not one frame would be fine on a stream (two frames, or
    // an incomplete one); the message mode is what refuses it.
    let mut checked = 0;
    for vector in load_all() {
        if vector.mode != Mode::Message {
            continue;
        }
        assert!(
            vector.expect != Expect::Incomplete && vector.trailing == 0,
            "{}: a message is never incomplete and has no trailing bytes",
            vector.id()
        );
        if vector.expect == Expect::Error("not_one_frame".into()) {
            let mut buf = BytesMut::from(&vector.bytes[..]);
            let stream = decode_frame(&mut buf, vector.max_frame_size);
            assert!(
                matches!(stream, Ok(None)) || (matches!(stream, Ok(Some(_))) && !buf.is_empty()),
                "{}: as a stream this is {stream:?}",
                vector.id()
            );
        }
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} message vectors");
}

#[test]
fn incomplete_vectors_ask_for_more() {
    for vector in load_all()
        .into_iter()
        .filter(|v| v.expect == Expect::Incomplete)
    {
        assert_eq!(vector.mode, Mode::Stream, "{}", vector.id());
        let (result, left) = decode(&vector);
        assert_eq!(result, Ok(None), "{}", vector.id());
        assert_eq!(left, vector.bytes.len(), "{}: consumed input", vector.id());
    }
}

#[test]
fn invalid_vectors_give_the_named_error() {
    for vector in load_all() {
        let Expect::Error(name) = &vector.expect else {
            continue;
        };
        let (result, _) = decode(&vector);
        let error = result.expect_err(&vector.id());
        assert_eq!(error.name(), name, "{}: {error:?}", vector.id());
    }
}

#[test]
fn oversized_frames_are_rejected_from_the_length_alone() {
    for vector in load_all() {
        if vector.expect != Expect::Error("frame_too_large".into()) {
            continue;
        }
        let (_, prefix) = natter_codec::varint::peek(&vector.bytes).unwrap().unwrap();
        let mut buf = BytesMut::from(&vector.bytes[..prefix]);
        let error = split_frame(&mut buf, vector.max_frame_size).unwrap_err();
        assert_eq!(error.vector_name(), "frame_too_large", "{}", vector.id());
        assert!(
            vector.max_frame_size <= MAX_FRAME_SIZE_CAP,
            "{}",
            vector.id()
        );
    }
}

#[test]
fn vectors_cover_every_frame_type_and_every_decode_error() {
    let vectors = load_all();
    let mut names = BTreeSet::new();
    for vector in &vectors {
        assert!(
            names.insert(&vector.name),
            "duplicate vector {}",
            vector.id()
        );
    }

    let valid_types: BTreeSet<String> = vectors
        .iter()
        .filter_map(|v| match &v.expect {
            Expect::Frame(value) => Some(value["type"].as_str().unwrap().to_owned()),
            _ => None,
        })
        .collect();
    for frame_type in FrameType::KNOWN {
        let name = frame_type.name().unwrap();
        assert!(valid_types.contains(name), "no valid vector for {name}");
    }
    assert!(
        valid_types.contains("UNKNOWN"),
        "no vector for an unknown type"
    );

    let errors: BTreeSet<&str> = vectors
        .iter()
        .filter_map(|v| match &v.expect {
            Expect::Error(name) => Some(name.as_str()),
            _ => None,
        })
        .collect();
    let known: BTreeSet<&str> = DECODE_ERRORS
        .iter()
        .map(|e| e.vector_name())
        .chain(MESSAGE_ERRORS)
        .collect();
    assert_eq!(errors, known);
    for mode in [Mode::Stream, Mode::Nested, Mode::Message] {
        assert!(
            vectors.iter().any(|v| v.mode == mode),
            "no vector of mode {mode:?}"
        );
    }

    assert!(
        vectors
            .iter()
            .any(|v| v.trailing > 0 && matches!(v.expect, Expect::Frame(_))),
        "no vector proves the decoder stops at the frame's end"
    );
}

#[test]
fn every_example_in_the_spec_is_a_vector() {
    let doc = std::fs::read_to_string(vectors_dir().join("../PROTOCOL.md")).unwrap();
    let vectors = load_all();
    let mut examples = 0;
    for block in doc.split("```\n").skip(1).step_by(2) {
        let lines: Vec<&str> = block.lines().collect();
        let annotated = lines.iter().all(|line| {
            line.starts_with("  ") && line.split('#').next().unwrap().trim().len() % 3 != 1
        }) && lines.iter().any(|line| line.contains("# Length (i)"));
        if !annotated {
            continue;
        }
        let hex: String = lines
            .iter()
            .flat_map(|line| line.split('#').next().unwrap().split_whitespace())
            .collect();
        let bytes = hex::decode(hex).unwrap();
        assert!(
            vectors.iter().any(|vector| vector.bytes == bytes),
            "an example in PROTOCOL.md is no vector:\n{block}"
        );
        examples += 1;
    }
    // One example per frame type of Table 2, and a few more.
    assert!(
        examples >= FrameType::KNOWN.len(),
        "only {examples} examples"
    );
}
