//! A tokio-util [`Decoder`]/[`Encoder`] pair for the crates that do I/O.

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::{DecodeError, EncodeError, Frame, split_frame};

/// Frames a byte stream into [`Frame`]s; [`RawFrameCodec`] yields whole encoded frames instead,
/// as [`Bytes`] for relays that forward them unparsed.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_frame_size: u64,
}

impl FrameCodec {
    /// A codec that rejects incoming frames longer than `max_frame_size`.
    pub fn new(max_frame_size: u64) -> Self {
        Self { max_frame_size }
    }

    /// The current limit on incoming frames.
    pub fn max_frame_size(&self) -> u64 {
        self.max_frame_size
    }

    /// Changes the limit, for example once READY has been exchanged.
    pub fn set_max_frame_size(&mut self, max_frame_size: u64) {
        self.max_frame_size = max_frame_size;
    }
}

/// Everything that can go wrong reading or writing frames on a stream.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The stream failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The peer sent an invalid frame.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A frame could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        Ok(crate::decode_frame(src, self.max_frame_size)?)
    }
}

impl Encoder<&Frame> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        Ok(frame.encode(dst)?)
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        Ok(frame.encode(dst)?)
    }
}

/// Like [`FrameCodec`] but yields and takes whole encoded frames, for forwarding.
#[derive(Debug, Clone)]
pub struct RawFrameCodec {
    max_frame_size: u64,
}

impl RawFrameCodec {
    /// A codec that rejects incoming frames longer than `max_frame_size`.
    pub fn new(max_frame_size: u64) -> Self {
        Self { max_frame_size }
    }

    /// Changes the limit, for example once READY has been exchanged.
    pub fn set_max_frame_size(&mut self, max_frame_size: u64) {
        self.max_frame_size = max_frame_size;
    }
}

impl Decoder for RawFrameCodec {
    type Item = Bytes;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, CodecError> {
        Ok(split_frame(src, self.max_frame_size)?)
    }
}

impl Encoder<Bytes> for RawFrameCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: Bytes, dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.extend_from_slice(&frame);
        Ok(())
    }
}
