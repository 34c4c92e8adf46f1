//! Values shared by several frames (spec section 4): enums, flag sets and records.

use bytes::{Bytes, BytesMut};

use crate::field::{Field, Text};
use crate::open_enum::open_enum;
use crate::{DecodeError, EncodeError};

/// Declares a struct whose encoding is its fields in order, with no framing of its own.
macro_rules! record {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        #[cfg(feature = "serde")]
        impl $crate::serde_form::VectorForm for $name {
            fn serialize_vector<S: ::serde::Serializer>(&self, serializer: S)
                -> Result<S::Ok, S::Error>
            {
                use ::serde::ser::SerializeMap;
                let mut map = serializer.serialize_map(None)?;
                $( map.serialize_entry(
                    stringify!($field),
                    &$crate::serde_form::AsVector(&self.$field),
                )?; )*
                map.end()
            }
        }

        #[cfg(feature = "serde")]
        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                $crate::serde_form::VectorForm::serialize_vector(self, serializer)
            }
        }

        #[cfg(feature = "proptest")]
        impl $crate::arbitrary::ArbitraryField for $name {
            fn field_strategy() -> ::proptest::strategy::BoxedStrategy<Self> {
                use ::proptest::strategy::Strategy;
                ( $( <$ty as $crate::arbitrary::ArbitraryField>::field_strategy(), )* )
                    .prop_map(|( $($field,)* )| Self { $($field,)* })
                    .boxed()
            }
        }

        #[cfg(feature = "proptest")]
        impl ::proptest::arbitrary::Arbitrary for $name {
            type Parameters = ();
            type Strategy = ::proptest::strategy::BoxedStrategy<Self>;
            fn arbitrary_with((): ()) -> Self::Strategy {
                <Self as $crate::arbitrary::ArbitraryField>::field_strategy()
            }
        }

        impl $crate::field::Field for $name {
            #[allow(unused_variables)]
            fn decode(buf: &mut ::bytes::Bytes) -> Result<Self, $crate::DecodeError> {
                Ok(Self { $( $field: $crate::field::Field::decode(buf)?, )* })
            }
            #[allow(unused_variables)]
            fn encode(&self, buf: &mut ::bytes::BytesMut) -> Result<(), $crate::EncodeError> {
                $( $crate::field::Field::encode(&self.$field, buf)?; )*
                Ok(())
            }
            fn encoded_len(&self) -> usize {
                0 $( + $crate::field::Field::encoded_len(&self.$field) )*
            }
        }
    };
}
pub(crate) use record;

open_enum! {
    /// What a conversation event is (spec 4.1).
    pub struct EventKind(u64) {
        /// A message with a body.
        MESSAGE = 0x00,
        /// Replaces the body of the message at `target`.
        EDIT = 0x01,
        /// Deletes the message at `target`, which becomes a tombstone.
        DELETE = 0x02,
        /// A member joined a group; the body is a [`MemberChange`].
        MEMBER_ADDED = 0x03,
        /// A member left or was removed; the body is a [`MemberChange`].
        MEMBER_REMOVED = 0x04,
        /// A member's role changed; the body is a [`MemberChange`].
        ROLE_CHANGED = 0x05,
        /// The first event of a group; the body is its title in UTF-8.
        GROUP_CREATED = 0x06,
    }
}

impl EventKind {
    /// Whether the kind names another event in `target` (edit and delete).
    pub fn has_target(self) -> bool {
        matches!(self, Self::EDIT | Self::DELETE)
    }

    /// Whether the kind changes group membership (its body is a [`MemberChange`]).
    pub fn is_membership(self) -> bool {
        matches!(
            self,
            Self::MEMBER_ADDED | Self::MEMBER_REMOVED | Self::ROLE_CHANGED
        )
    }
}

open_enum! {
    /// A member's role in a group (spec 4.2).
    pub struct Role(u64) {
        /// May send and read.
        MEMBER = 0x00,
        /// May also add and remove members.
        ADMIN = 0x01,
        /// Created the group; may also change roles.
        OWNER = 0x02,
    }
}

open_enum! {
    /// Which way a HISTORY page reads from its anchor.
    pub struct Direction(u64) {
        /// Events before the anchor (older).
        BACKWARD = 0x00,
        /// Events after the anchor (newer).
        FORWARD = 0x01,
    }
}

open_enum! {
    /// Which receipt pointer a MARK moves.
    pub struct Marker(u64) {
        /// The user's devices have received up to this seq.
        DELIVERED = 0x01,
        /// The user has read up to this seq.
        READ = 0x02,
    }
}

open_enum! {
    /// A user's presence.
    pub struct Status(u64) {
        /// Not visible to the subscriber, or no such user (the two look alike on purpose).
        UNKNOWN = 0x00,
        /// No device holds a session.
        OFFLINE = 0x01,
        /// At least one device holds a session.
        ONLINE = 0x02,
    }
}

open_enum! {
    /// What a GROUP_UPDATE does.
    pub struct GroupOp(u64) {
        /// Adds `user` with `role`.
        ADD = 0x01,
        /// Removes `user`; removing oneself is leaving.
        REMOVE = 0x02,
        /// Gives `user` the role `role`.
        SET_ROLE = 0x03,
    }
}

open_enum! {
    /// What a conversation is.
    pub struct ConversationKind(u64) {
        /// Two users; the id is derived from theirs.
        DIRECT = 0x01,
        /// A group with a server-assigned id.
        GROUP = 0x02,
    }
}

open_enum! {
    /// What a node on a cluster link is.
    pub struct NodeRole(u64) {
        /// Holds client connections.
        EDGE = 0x01,
        /// Owns conversations and inboxes.
        BROKER = 0x02,
    }
}

/// Declares a set of bit flags over an integer with a [`Field`] encoding.
macro_rules! flags {
    (
        $(#[$meta:meta])*
        pub struct $name:ident($repr:ty) {
            $( $(#[$vmeta:meta])* $flag:ident = $bit:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct $name(pub $repr);

        impl $name {
            $( $(#[$vmeta])* pub const $flag: Self = Self($bit); )*

            /// No flag set.
            pub const NONE: Self = Self(0);

            /// Whether every flag of `other` is set.
            pub fn contains(self, other: Self) -> bool {
                self.0 & other.0 == other.0
            }
        }

        impl ::core::ops::BitOr for $name {
            type Output = Self;
            fn bitor(self, other: Self) -> Self {
                Self(self.0 | other.0)
            }
        }

        impl ::core::ops::BitAnd for $name {
            type Output = Self;
            fn bitand(self, other: Self) -> Self {
                Self(self.0 & other.0)
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
                <$repr as $crate::arbitrary::ArbitraryField>::field_strategy().prop_map(Self).boxed()
            }
        }

        impl Field for $name {
            fn decode(buf: &mut Bytes) -> Result<Self, DecodeError> {
                <$repr as Field>::decode(buf).map(Self)
            }
            fn encode(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
                self.0.encode(buf)
            }
            fn encoded_len(&self) -> usize {
                self.0.encoded_len()
            }
        }
    };
}

flags! {
    /// Optional parts of the protocol, negotiated in HELLO and READY (spec 5.1).
    ///
    /// A server sends no frame of a feature the client did not ask for, which is how a minimal
    /// client avoids frames it would have to parse and ignore.
    pub struct Features(u64) {
        /// RECEIPT frames.
        RECEIPTS = 0x01,
        /// TYPING_UPDATE frames.
        TYPING = 0x02,
        /// PRESENCE frames.
        PRESENCE = 0x04,
    }
}

impl Features {
    /// Every feature this version defines.
    pub const ALL: Self = Self(0x07);
}

flags! {
    /// State of a stored event that history shows.
    pub struct EventFlags(u8) {
        /// The event was deleted: its body and content type are empty.
        DELETED = 0x01,
        /// A later EDIT event names this event.
        EDITED = 0x02,
        /// The body and content type were left out: the event alone does not fit the
        /// receiver's maximum frame size (`[NWP-4.1-4]`).
        OMITTED = 0x04,
    }
}

record! {
    /// One event of a conversation log (spec 4.1).
    pub struct Event {
        /// Position in the conversation, from 1, gapless.
        pub seq: u64,
        /// What the event is.
        pub kind: EventKind,
        /// The seq an EDIT or DELETE names; 0 otherwise.
        pub target: u64,
        /// Tombstone and edit state.
        pub flags: EventFlags,
        /// Server time of acceptance, in milliseconds since the Unix epoch.
        pub timestamp: u64,
        /// The user who caused the event.
        pub sender: Text,
        /// The device it came from (empty for server-made events).
        pub device: Text,
        /// The sender's client message id (0 for server-made events).
        pub client_msg_id: u64,
        /// The body's media type; empty means `text/plain; charset=utf-8`.
        pub content_type: Text,
        /// Opaque to the server.
        pub body: Bytes,
    }
}

record! {
    /// A group member and role.
    pub struct Member {
        /// The member's user id.
        pub user: Text,
        /// The member's role.
        pub role: Role,
    }
}

record! {
    /// The body of MEMBER_ADDED, MEMBER_REMOVED and ROLE_CHANGED events.
    pub struct MemberChange {
        /// The member concerned.
        pub user: Text,
        /// The member's role after the change.
        pub role: Role,
    }
}

impl MemberChange {
    /// Encodes the change as an event body.
    pub fn to_body(&self) -> Result<Bytes, EncodeError> {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut buf)?;
        Ok(buf.freeze())
    }

    /// Decodes an event body; trailing bytes are ignored as in frames.
    pub fn from_body(mut body: Bytes) -> Result<Self, DecodeError> {
        Self::decode(&mut body)
    }
}

record! {
    /// One entry of a CONVERSATION_LIST.
    pub struct Summary {
        /// The conversation id.
        pub conversation: Text,
        /// Direct or group.
        pub kind: ConversationKind,
        /// The group title; empty for direct conversations.
        pub title: Text,
        /// The newest seq.
        pub last_seq: u64,
        /// When the newest event was accepted, in milliseconds since the Unix epoch.
        pub last_timestamp: u64,
        /// The user's read pointer.
        pub read_seq: u64,
        /// Messages from others after the read pointer.
        pub unread: u64,
    }
}
