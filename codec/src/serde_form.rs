//! `serde::Serialize` for frames in the JSON form of `spec/vectors` (feature `serde`).
//!
//! Byte strings are hex, enums and flags their numbers, and integers above 2^53 - 1 decimal
//! strings, so the output compares directly with a vector's `decoded` line.

use std::fmt::Write;

use bytes::Bytes;
use serde::ser::{Serialize, SerializeSeq, Serializer};

use crate::field::Text;

/// The largest integer a JSON parser with double-precision numbers reads exactly.
const MAX_EXACT_JSON_INTEGER: u64 = (1 << 53) - 1;

/// A value with a JSON form in `spec/vectors`.
pub(crate) trait VectorForm {
    fn serialize_vector<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error>;
}

/// Serializes the wrapped value in its vector form.
pub(crate) struct AsVector<'a, T>(pub(crate) &'a T);

impl<T: VectorForm> Serialize for AsVector<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_vector(serializer)
    }
}

impl VectorForm for u64 {
    fn serialize_vector<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if *self > MAX_EXACT_JSON_INTEGER {
            serializer.collect_str(self)
        } else {
            serializer.serialize_u64(*self)
        }
    }
}

impl VectorForm for u8 {
    fn serialize_vector<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(*self)
    }
}

impl VectorForm for bool {
    fn serialize_vector<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bool(*self)
    }
}

impl VectorForm for Text {
    fn serialize_vector<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self)
    }
}

impl VectorForm for Bytes {
    fn serialize_vector<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut hex = String::with_capacity(self.len() * 2);
        for byte in self.iter() {
            // Writing to a String cannot fail.
            let _ = write!(hex, "{byte:02x}");
        }
        serializer.serialize_str(&hex)
    }
}

impl<T: VectorForm> VectorForm for Vec<T> {
    fn serialize_vector<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for item in self {
            seq.serialize_element(&AsVector(item))?;
        }
        seq.end()
    }
}
