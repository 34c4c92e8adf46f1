//! Variable-length integers, encoded as in RFC 9000 section 16.
//!
//! The two most significant bits of the first byte give the length (1, 2, 4 or 8 bytes); the
//! rest is the value in network byte order. natter requires the shortest encoding
//! (`[NWP-2.2-2]`), so every value has exactly one encoding and decode/encode round-trips.

use bytes::{Buf, BufMut};

use crate::{DecodeError, EncodeError};

/// The largest value a varint can carry: 2^62 - 1.
pub const MAX: u64 = (1 << 62) - 1;

/// The number of bytes the shortest encoding of `value` takes (8 for values above [`MAX`]).
#[inline]
pub const fn len(value: u64) -> usize {
    if value < 1 << 6 {
        1
    } else if value < 1 << 14 {
        2
    } else if value < 1 << 30 {
        4
    } else {
        8
    }
}

/// Writes the shortest encoding of `value`.
#[inline]
pub fn encode(value: u64, buf: &mut impl BufMut) -> Result<(), EncodeError> {
    match len(value) {
        1 => buf.put_u8(value as u8),
        2 => buf.put_u16(0x4000 | value as u16),
        4 => buf.put_u32(0x8000_0000 | value as u32),
        _ if value <= MAX => buf.put_u64(0xc000_0000_0000_0000 | value),
        _ => return Err(EncodeError::VarintOverflow(value)),
    }
    Ok(())
}

/// Reads a varint from the front of `bytes` without consuming it.
///
/// Returns `Ok(None)` when `bytes` holds only part of it, and the value with its encoded
/// length otherwise.
#[inline]
pub fn peek(bytes: &[u8]) -> Result<Option<(u64, usize)>, DecodeError> {
    let Some(&first) = bytes.first() else {
        return Ok(None);
    };
    // Most varints on the wire are one byte, and a one-byte encoding is always the shortest.
    if first < 0x40 {
        return Ok(Some((u64::from(first), 1)));
    }
    let (value, size) = match first >> 6 {
        1 => match bytes.get(..2) {
            Some(&[a, b]) => (u64::from(u16::from_be_bytes([a, b]) & 0x3fff), 2),
            _ => return Ok(None),
        },
        2 => match bytes.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()) {
            Some(b) => (u64::from(u32::from_be_bytes(b) & 0x3fff_ffff), 4),
            None => return Ok(None),
        },
        _ => match bytes.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
            Some(b) => (u64::from_be_bytes(b) & MAX, 8),
            None => return Ok(None),
        },
    };
    if len(value) != size {
        return Err(DecodeError::NonMinimalVarint);
    }
    Ok(Some((value, size)))
}

/// Reads and consumes a varint; a buffer that ends inside it is [`DecodeError::Truncated`].
#[inline]
pub fn decode(buf: &mut impl Buf) -> Result<u64, DecodeError> {
    let (value, size) = peek(buf.chunk())?.ok_or(DecodeError::Truncated)?;
    buf.advance(size);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked examples of RFC 9000 appendix A.1, which natter's varints share.
    #[test]
    fn rfc9000_examples() {
        let cases: [(&str, u64); 4] = [
            ("c2197c5eff14e88c", 151_288_809_941_952_652),
            ("9d7f3e7d", 494_878_333),
            ("7bbd", 15_293),
            ("25", 37),
        ];
        for (hex, value) in cases {
            let bytes = hex::decode(hex).unwrap();
            assert_eq!(peek(&bytes).unwrap(), Some((value, bytes.len())));
            let mut out = Vec::new();
            encode(value, &mut out).unwrap();
            assert_eq!(out, bytes);
        }
    }

    #[test]
    fn non_minimal_is_rejected() {
        // 37 in two bytes: legal in QUIC, not in natter.
        assert_eq!(peek(&[0x40, 0x25]), Err(DecodeError::NonMinimalVarint));
    }

    #[test]
    fn incomplete_is_none() {
        assert_eq!(peek(&[]), Ok(None));
        assert_eq!(peek(&[0x9d, 0x7f, 0x3e]), Ok(None));
    }

    #[test]
    fn overflow_is_an_error() {
        let mut out = Vec::new();
        assert_eq!(
            encode(MAX + 1, &mut out),
            Err(EncodeError::VarintOverflow(MAX + 1))
        );
        assert!(out.is_empty());
    }
}
