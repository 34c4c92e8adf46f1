//! Cutting a byte stream into frames (spec section 3).

use bytes::{Bytes, BytesMut};

use crate::{DecodeError, Frame, varint};

/// The maximum frame size a peer assumes until READY says otherwise: 64 KiB.
pub const DEFAULT_MAX_FRAME_SIZE: u64 = 64 * 1024;

/// No implementation may accept frames longer than this: 16 MiB (`[NWP-3-4]`).
pub const MAX_FRAME_SIZE_CAP: u64 = 16 * 1024 * 1024;

/// Splits the next complete frame off the front of `buf`.
///
/// Returns `Ok(None)` while the frame is incomplete, after reserving room for the rest of it.
/// The length is checked against `max_frame_size` before a byte of the body is buffered
/// (`[NWP-3-3]`), so a hostile length cannot make the caller allocate.
pub fn split_frame(buf: &mut BytesMut, max_frame_size: u64) -> Result<Option<Bytes>, DecodeError> {
    let Some((len, prefix)) = varint::peek(buf)? else {
        return Ok(None);
    };
    if len > max_frame_size {
        return Err(DecodeError::FrameTooLarge {
            len,
            max: max_frame_size,
        });
    }
    if len == 0 {
        return Err(DecodeError::EmptyFrame);
    }
    let total = prefix + len as usize;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    Ok(Some(buf.split_to(total).freeze()))
}

/// Splits and decodes the next complete frame off the front of `buf`.
pub fn decode_frame(buf: &mut BytesMut, max_frame_size: u64) -> Result<Option<Frame>, DecodeError> {
    split_frame(buf, max_frame_size)?
        .map(Frame::decode)
        .transpose()
}
