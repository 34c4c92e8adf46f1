//! Open newtypes for wire enums: unknown values stay representable (spec section 11).

/// Declares a newtype over an integer with named constants, a `name()`, a `Debug` that prints
/// the name (or `Type(0x7f)` for an unknown value) and a [`crate::Field`] encoding.
macro_rules! open_enum {
    (
        $(#[$meta:meta])*
        pub struct $name:ident($repr:ty) {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub $repr);

        impl $name {
            $( $(#[$vmeta])* pub const $variant: Self = Self($value); )*

            /// Every value this version of the protocol names.
            pub const KNOWN: &'static [Self] = &[$(Self::$variant),*];

            /// The spec's name for this value, or `None` when this version does not know it.
            pub fn name(self) -> Option<&'static str> {
                match self {
                    $( Self::$variant => Some(stringify!($variant)), )*
                    _ => None,
                }
            }

            /// Looks a value up by the spec's name.
            pub fn from_name(name: &str) -> Option<Self> {
                Self::KNOWN.iter().copied().find(|value| value.name() == Some(name))
            }
        }

        impl ::core::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                match self.name() {
                    Some(name) => f.write_str(name),
                    None => write!(f, concat!(stringify!($name), "({:#x})"), self.0),
                }
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                ::core::fmt::Debug::fmt(self, f)
            }
        }

        #[cfg(feature = "serde")]
        impl $crate::serde_form::VectorForm for $name {
            fn serialize_vector<S: ::serde::Serializer>(&self, serializer: S)
                -> Result<S::Ok, S::Error>
            {
                $crate::serde_form::VectorForm::serialize_vector(&self.0, serializer)
            }
        }

        #[cfg(feature = "proptest")]
        impl $crate::arbitrary::ArbitraryField for $name {
            fn field_strategy() -> ::proptest::strategy::BoxedStrategy<Self> {
                use ::proptest::strategy::Strategy;
                // Known values half the time; any value, mostly unknown ones, otherwise.
                ::proptest::prop_oneof![
                    ::proptest::sample::select(Self::KNOWN),
                    <$repr as $crate::arbitrary::ArbitraryField>::field_strategy().prop_map(Self),
                ]
                .boxed()
            }
        }

        impl $crate::field::Field for $name {
            fn decode(buf: &mut ::bytes::Bytes) -> Result<Self, $crate::DecodeError> {
                <$repr as $crate::field::Field>::decode(buf).map(Self)
            }
            fn encode(&self, buf: &mut ::bytes::BytesMut) -> Result<(), $crate::EncodeError> {
                $crate::field::Field::encode(&self.0, buf)
            }
            fn encoded_len(&self) -> usize {
                $crate::field::Field::encoded_len(&self.0)
            }
        }
    };
}

pub(crate) use open_enum;
