//! The record format every backend stores: `value || crc32c(key || value)`.
//!
//! The checksum is four little-endian bytes appended to the value. It covers the key too, so
//! a value written under the wrong key (a misdirected write) fails verification like a flipped
//! bit does. Appending keeps the value a prefix of the record, so verifying costs no copy.

use bytes::Bytes;

use super::StorageError;

/// Bytes the checksum adds to every value.
pub const CHECKSUM_LEN: usize = 4;

fn checksum(key: &[u8], value: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(key), value)
}

/// The record to store for `key = value`.
pub fn seal(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(value.len() + CHECKSUM_LEN);
    record.extend_from_slice(value);
    record.extend_from_slice(&checksum(key, value).to_le_bytes());
    record
}

/// The value inside a stored record, or [`StorageError::Corrupt`] if its checksum fails.
pub fn open(key: &[u8], mut record: Bytes) -> Result<Bytes, StorageError> {
    let corrupt = || StorageError::Corrupt { key: key.to_vec() };
    let value_len = record.len().checked_sub(CHECKSUM_LEN).ok_or_else(corrupt)?;
    let stored = record.split_off(value_len);
    let stored = u32::from_le_bytes([stored[0], stored[1], stored[2], stored[3]]);
    if stored == checksum(key, &record) {
        Ok(record)
    } else {
        Err(corrupt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let record = seal(b"k", b"value");
        assert_eq!(record.len(), 5 + CHECKSUM_LEN);
        assert_eq!(
            open(b"k", record.into()).ok(),
            Some(Bytes::from_static(b"value"))
        );
        assert!(open(b"k", seal(b"k", b"").into()).is_ok_and(|v| v.is_empty()));
    }

    #[test]
    fn detects_flipped_bits_wrong_keys_and_truncation() {
        let record = seal(b"k", b"value");
        for i in 0..record.len() {
            let mut bad = record.clone();
            bad[i] ^= 0x10;
            assert!(matches!(
                open(b"k", bad.into()),
                Err(StorageError::Corrupt { .. })
            ));
        }
        assert!(open(b"other", record.clone().into()).is_err());
        assert!(open(b"k", Bytes::copy_from_slice(&record[..3])).is_err());
        assert!(open(b"k", Bytes::from_static(b"value")).is_err());
    }
}
