//! The field vocabulary: how each data type of spec section 2 is read and written.
//!
//! Every frame payload is a sequence of fields, so one small trait covers all of them. Decoding
//! reads from a `Bytes` that holds exactly one frame, which makes every `Bytes` and `Text` field
//! a zero-copy slice of the received buffer.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::{DecodeError, EncodeError, varint};

/// UTF-8 text that shares the buffer it was decoded from.
pub type Text = ByteString;

/// A value with a wire encoding.
pub trait Field: Sized {
    /// Reads the value from the front of `buf`, which holds the rest of one frame.
    fn decode(buf: &mut Bytes) -> Result<Self, DecodeError>;
    /// Appends the value's encoding.
    fn encode(&self, buf: &mut BytesMut) -> Result<(), EncodeError>;
    /// The number of bytes [`Field::encode`] appends.
    fn encoded_len(&self) -> usize;
}

/// `(i)`: a varint.
impl Field for u64 {
    #[inline]
    fn decode(buf: &mut Bytes) -> Result<Self, DecodeError> {
        varint::decode(buf)
    }
    #[inline]
    fn encode(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        varint::encode(*self, buf)
    }
    #[inline]
    fn encoded_len(&self) -> usize {
        varint::len(*self)
    }
}

/// `(8)`: one byte.
impl Field for u8 {
    #[inline]
    fn decode(buf: &mut Bytes) -> Result<Self, DecodeError> {
        if !buf.has_remaining() {
            return Err(DecodeError::Truncated);
        }
        Ok(buf.get_u8())
    }
    #[inline]
    fn encode(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        buf.put_u8(*self);
        Ok(())
    }
    #[inline]
    fn encoded_len(&self) -> usize {
        1
    }
}

/// `Flag (8)`: one byte that is 0x00 or 0x01; any other value is malformed (`[NWP-2.2-4]`).
impl Field for bool {
    #[inline]
    fn decode(buf: &mut Bytes) -> Result<Self, DecodeError> {
        match u8::decode(buf)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::InvalidFlag),
        }
    }
    #[inline]
    fn encode(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        u8::from(*self).encode(buf)
    }
    #[inline]
    fn encoded_len(&self) -> usize {
        1
    }
}

/// `Bytes (b)`: a varint length, then that many bytes.
impl Field for Bytes {
    #[inline]
    fn decode(buf: &mut Bytes) -> Result<Self, DecodeError> {
        let len = varint::decode(buf)?;
        if len > buf.len() as u64 {
            return Err(DecodeError::Truncated);
        }
        Ok(buf.split_to(len as usize))
    }
    #[inline]
    fn encode(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        varint::encode(self.len() as u64, buf)?;
        buf.put_slice(self);
        Ok(())
    }
    #[inline]
    fn encoded_len(&self) -> usize {
        varint::len(self.len() as u64) + self.len()
    }
}

/// `String (s)`: like `Bytes (b)`, and the bytes MUST be valid UTF-8 (`[NWP-2.2-3]`).
impl Field for Text {
    #[inline]
    fn decode(buf: &mut Bytes) -> Result<Self, DecodeError> {
        ByteString::try_from(Bytes::decode(buf)?).map_err(|_| DecodeError::InvalidUtf8)
    }
    #[inline]
    fn encode(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        self.as_bytes().encode(buf)
    }
    #[inline]
    fn encoded_len(&self) -> usize {
        self.as_bytes().encoded_len()
    }
}

/// `List<T>`: a varint count, then that many values.
impl<T: Field> Field for Vec<T> {
    #[inline]
    fn decode(buf: &mut Bytes) -> Result<Self, DecodeError> {
        let count = varint::decode(buf)?;
        // Every element takes at least one byte, so a count above what is left cannot be
        // honest; checking first keeps a hostile count from reserving memory.
        if count > buf.len() as u64 {
            return Err(DecodeError::Truncated);
        }
        (0..count).map(|_| T::decode(buf)).collect()
    }
    #[inline]
    fn encode(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        varint::encode(self.len() as u64, buf)?;
        self.iter().try_for_each(|item| item.encode(buf))
    }
    #[inline]
    fn encoded_len(&self) -> usize {
        varint::len(self.len() as u64) + self.iter().map(Field::encoded_len).sum::<usize>()
    }
}
