//! The values stored under each key, encoded with the codec's own field encoding.
//!
//! Events and conversation summaries are stored as the wire records they are served as
//! (`types::Event`, `types::Summary`); the rest are small records declared here. Checksums
//! are the storage layer's job; a record that passes its checksum but does not decode is
//! still reported as corrupt.

use std::hash::Hasher;

use bytes::{Bytes, BytesMut};
use natter_codec::field::{Field, Text};
use natter_codec::types::{ConversationKind, EventKind, Role};
use siphasher::sip::SipHasher13;

/// A stored record does not decode: the disk or a bug corrupted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Corrupt;

/// Encodes a record for storage.
pub(crate) fn encode<T: Field>(record: &T) -> Vec<u8> {
    let mut buf = BytesMut::with_capacity(record.encoded_len());
    // Stored integers are seqs, counts and times, far below the varint maximum. A value above
    // it would be a bug; the record is then stored empty, which reads back as corrupt (an
    // error for that request) instead of as wrong data.
    if record.encode(&mut buf).is_err() {
        buf.clear();
    }
    buf.to_vec()
}

/// Decodes a stored record.
pub(crate) fn decode<T: Field>(mut value: Bytes) -> Result<T, Corrupt> {
    T::decode(&mut value).map_err(|_| Corrupt)
}

macro_rules! stored {
    (
        $(#[$meta:meta])*
        struct $name:ident { $( $(#[$fmeta:meta])* $field:ident : $ty:ty, )* }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub(crate) struct $name { $( $(#[$fmeta])* pub(crate) $field: $ty, )* }

        impl Field for $name {
            fn decode(buf: &mut Bytes) -> Result<Self, natter_codec::DecodeError> {
                Ok(Self { $( $field: Field::decode(buf)?, )* })
            }
            fn encode(&self, buf: &mut BytesMut) -> Result<(), natter_codec::EncodeError> {
                $( self.$field.encode(buf)?; )*
                Ok(())
            }
            fn encoded_len(&self) -> usize {
                0 $( + self.$field.encoded_len() )*
            }
        }
    };
}

stored! {
    /// A conversation owned by this broker.
    struct ConvMeta {
        /// Direct or group.
        kind: ConversationKind,
        /// The newest seq.
        head: u64,
        /// A group's title.
        title: Text,
        /// How many members a group has now.
        members: u64,
    }
}

stored! {
    /// What a client message id was used for, so a retry gets the original answer.
    struct Dedup {
        /// The event it created.
        seq: u64,
        /// When it was accepted.
        timestamp: u64,
        /// [`request_digest`] of the request.
        digest: u64,
    }
}

stored! {
    /// A group member, or a former one: removed members keep their record so that events
    /// from their time in the group still reach them when fan-out is re-sent.
    struct MemberRecord {
        /// The member's role.
        role: Role,
        /// The first seq the member receives (1 for the founding members).
        joined: u64,
        /// The seq of the member's removal (the last one it receives); 0 while a member.
        left: u64,
    }
}

stored! {
    /// A member's receipt pointers in a conversation.
    struct ReceiptRecord {
        /// Received up to here.
        delivered: u64,
        /// Read up to here.
        read: u64,
    }
}

stored! {
    /// A user's inbox bounds.
    struct InboxMeta {
        /// The newest inbox_seq.
        head: u64,
        /// Entries below this inbox_seq were pruned.
        first: u64,
    }
}

stored! {
    /// One inbox entry: a reference to an event, not a copy of it.
    struct InboxEntry {
        /// The event's conversation.
        conversation: Text,
        /// The event's seq.
        seq: u64,
        /// The event's kind.
        kind: EventKind,
        /// When the entry was added.
        added: u64,
    }
}

stored! {
    /// A device's cumulative ack.
    struct DeviceAck {
        /// Everything up to here was processed.
        acked: u64,
        /// When the device last acked or resumed.
        seen: u64,
    }
}

stored! {
    /// An offline notification waiting for the webhook.
    struct Notification {
        /// Inbox entries added since the last successful post.
        count: u64,
        /// The newest entry's conversation.
        conversation: Text,
        /// The newest entry's seq.
        seq: u64,
        /// The newest entry's inbox_seq.
        inbox_seq: u64,
    }
}

/// A 62-bit digest of what a SEND asked for, compared when its client message id comes again.
pub(crate) fn request_digest(kind: EventKind, target: u64, content_type: &str, body: &[u8]) -> u64 {
    // Fixed keys: the digest is stored, so it must not change between runs or versions.
    let mut hasher = SipHasher13::new_with_keys(0x6e61_7474_6572_2d64, 0x6564_7570_2d76_3031);
    hasher.write_u64(kind.0);
    hasher.write_u64(target);
    hasher.write_u64(content_type.len() as u64);
    hasher.write(content_type.as_bytes());
    hasher.write(body);
    hasher.finish() & natter_codec::varint::MAX
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_garbage_is_corrupt() {
        let entry = InboxEntry {
            conversation: "d/a/b".into(),
            seq: 7,
            kind: EventKind::EDIT,
            added: 1_700_000_000_000,
        };
        assert_eq!(decode::<InboxEntry>(encode(&entry).into()), Ok(entry));
        assert_eq!(
            decode::<InboxEntry>(Bytes::from_static(&[0x05, b'a'])),
            Err(Corrupt)
        );
    }

    #[test]
    fn digests_tell_requests_apart() {
        let base = request_digest(EventKind::MESSAGE, 0, "", b"hi");
        assert_eq!(base, request_digest(EventKind::MESSAGE, 0, "", b"hi"));
        assert_ne!(base, request_digest(EventKind::MESSAGE, 0, "", b"ho"));
        assert_ne!(base, request_digest(EventKind::EDIT, 0, "", b"hi"));
        assert_ne!(
            request_digest(EventKind::MESSAGE, 0, "a", b"b"),
            request_digest(EventKind::MESSAGE, 0, "", b"ab")
        );
    }
}
