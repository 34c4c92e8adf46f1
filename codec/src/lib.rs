//! natter wire protocol v1: frames, their encoding, and the limits that protect a receiver.
//!
//! This crate is sans-IO, like quinn-proto and rustls: it reads and writes byte buffers and
//! never touches a socket, a clock or a runtime, so every implementation detail of the wire is
//! testable with byte arrays. `spec/PROTOCOL.md` is normative; section numbers and rule ids in
//! these docs refer to it.
//!
//! Reading a stream is a loop: [`split_frame`] (or [`decode_frame`]) returns `Ok(None)` until a
//! whole frame is buffered, then the frame; any error is a connection error whose wire code is
//! [`DecodeError::code`].
//!
//! Features: `tokio` (default) adds [`FrameCodec`]; `serde` serializes frames in the JSON form
//! of `spec/vectors`; `proptest` provides `any::<Frame>()` for property tests.
//!
//! ```
//! use bytes::BytesMut;
//! use natter_codec::{Frame, frame::Ping, decode_frame, DEFAULT_MAX_FRAME_SIZE};
//!
//! let mut wire = BytesMut::new();
//! Frame::from(Ping { nonce: 7 }).encode(&mut wire)?;
//! assert_eq!(&wire[..], [0x02, 0x03, 0x07]);
//! let frame = decode_frame(&mut wire, DEFAULT_MAX_FRAME_SIZE)?;
//! assert_eq!(frame, Some(Frame::Ping(Ping { nonce: 7 })));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "proptest")]
mod arbitrary;
mod error;
pub mod field;
pub mod frame;
mod framing;
pub mod ids;
mod open_enum;
pub mod ring;
#[cfg(feature = "serde")]
mod serde_form;
#[cfg(feature = "tokio")]
mod tokio_codec;
pub mod types;
pub mod varint;

pub use error::{DecodeError, EncodeError, ErrorCode};
pub use field::Text;
pub use frame::{Frame, FrameType};
pub use framing::{DEFAULT_MAX_FRAME_SIZE, MAX_FRAME_SIZE_CAP, decode_frame, split_frame};
#[cfg(feature = "tokio")]
pub use tokio_codec::{CodecError, FrameCodec, RawFrameCodec};

/// The protocol version this crate speaks.
pub const VERSION: u64 = 1;
