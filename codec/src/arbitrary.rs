//! proptest strategies for every frame (feature `proptest`), for property tests here and in
//! the crates that build on the codec.
//!
//! Values cover the whole wire range, unknown enum values and frame types included, so
//! `decode(encode(frame)) == frame` is checked for everything a peer may legally send.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;

use crate::field::Text;
use crate::varint;

/// A wire field with a strategy that covers its whole range.
pub(crate) trait ArbitraryField: Sized + std::fmt::Debug {
    /// Any value of the field that can be encoded.
    fn field_strategy() -> BoxedStrategy<Self>;
}

impl ArbitraryField for u64 {
    fn field_strategy() -> BoxedStrategy<Self> {
        // Weight the edges of the 1-, 2-, 4- and 8-byte encodings, where codecs go wrong.
        prop_oneof![
            0..64u64,
            prop::sample::select(vec![
                63,
                64,
                (1 << 14) - 1,
                1 << 14,
                (1 << 30) - 1,
                1 << 30,
                varint::MAX
            ]),
            0..=varint::MAX,
        ]
        .boxed()
    }
}

impl ArbitraryField for u8 {
    fn field_strategy() -> BoxedStrategy<Self> {
        any::<u8>().boxed()
    }
}

impl ArbitraryField for bool {
    fn field_strategy() -> BoxedStrategy<Self> {
        any::<bool>().boxed()
    }
}

impl ArbitraryField for Bytes {
    fn field_strategy() -> BoxedStrategy<Self> {
        vec(any::<u8>(), 0..80).prop_map(Bytes::from).boxed()
    }
}

impl ArbitraryField for Text {
    fn field_strategy() -> BoxedStrategy<Self> {
        any::<String>().prop_map(Text::from).boxed()
    }
}

impl<T: ArbitraryField + 'static> ArbitraryField for Vec<T> {
    fn field_strategy() -> BoxedStrategy<Self> {
        vec(T::field_strategy(), 0..4).boxed()
    }
}
