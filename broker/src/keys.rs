//! The key layout of the single ordered key space.
//!
//! A key is a table prefix byte, then its components: strings as a length byte and the bytes
//! (ids are at most 160 bytes), numbers as big-endian u64, so the entries of one conversation
//! or inbox sort by seq and a prefix scan reads exactly one table's entries for one owner.

/// The tables. Values are documented in `records`.
#[derive(Debug, Clone, Copy)]
#[repr(u8)]
enum Table {
    /// conversation -> `ConvMeta`
    Conversation = 0x01,
    /// conversation, seq -> `Event`
    Event = 0x02,
    /// conversation, user, device, client_msg_id -> `Dedup`
    Dedup = 0x03,
    /// conversation, user -> `MemberRecord`
    Member = 0x04,
    /// conversation, user -> `ReceiptRecord`
    Receipt = 0x05,
    /// conversation, home broker -> highest seq acknowledged by FANOUT_ACK (pending only)
    Fanout = 0x06,
    /// user -> `InboxMeta`
    Inbox = 0x10,
    /// user, inbox_seq -> `InboxEntry`
    Entry = 0x11,
    /// user, device -> `DeviceAck`
    Device = 0x12,
    /// user, conversation -> highest seq applied from FANOUT
    Applied = 0x13,
    /// user, conversation -> `Summary`
    Summary = 0x14,
    /// user -> last seen, in milliseconds since the epoch
    LastSeen = 0x15,
    /// user -> `Notification`
    Notify = 0x16,
}

struct Key(Vec<u8>);

impl Key {
    fn new(table: Table) -> Self {
        Self(vec![table as u8])
    }

    fn text(mut self, text: &str) -> Self {
        // Ids are validated to at most 160 bytes long before they reach a key; clamping keeps a
        // longer string from corrupting the layout should one slip through.
        let bytes = &text.as_bytes()[..text.len().min(u8::MAX as usize)];
        self.0.push(bytes.len() as u8);
        self.0.extend_from_slice(bytes);
        self
    }

    fn num(mut self, n: u64) -> Self {
        self.0.extend_from_slice(&n.to_be_bytes());
        self
    }
}

/// The exclusive end of the range of keys that start with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![u8::MAX; prefix.len() + 1]
}

/// A half-open key range.
pub(crate) type Range = (Vec<u8>, Vec<u8>);

fn prefix_range(prefix: Key) -> Range {
    let end = prefix_end(&prefix.0);
    (prefix.0, end)
}

/// A conversation's metadata.
pub(crate) fn conversation(conv: &str) -> Vec<u8> {
    Key::new(Table::Conversation).text(conv).0
}

/// One event of a conversation log.
pub(crate) fn event(conv: &str, seq: u64) -> Vec<u8> {
    Key::new(Table::Event).text(conv).num(seq).0
}

/// The events of a conversation with `from <= seq < to`.
pub(crate) fn events(conv: &str, from: u64, to: u64) -> Range {
    (event(conv, from), event(conv, to))
}

/// The dedup record of a client message id.
pub(crate) fn dedup(conv: &str, user: &str, device: &str, client_msg_id: u64) -> Vec<u8> {
    Key::new(Table::Dedup)
        .text(conv)
        .text(user)
        .text(device)
        .num(client_msg_id)
        .0
}

/// Every dedup record of one user in a conversation: non-empty once the user has sent.
pub(crate) fn dedups_of(conv: &str, user: &str) -> Range {
    prefix_range(Key::new(Table::Dedup).text(conv).text(user))
}

/// A group member.
pub(crate) fn member(conv: &str, user: &str) -> Vec<u8> {
    Key::new(Table::Member).text(conv).text(user).0
}

/// Every member of a group; the user id is the key's suffix after the prefix.
pub(crate) fn members(conv: &str) -> Range {
    prefix_range(Key::new(Table::Member).text(conv))
}

/// The user id at the end of a [`member`] key.
pub(crate) fn member_user(key: &[u8]) -> Option<&str> {
    let conv_len = *key.get(1)? as usize;
    let user = key.get(3 + conv_len..)?;
    std::str::from_utf8(user).ok()
}

/// A member's receipt pointers.
pub(crate) fn receipt(conv: &str, user: &str) -> Vec<u8> {
    Key::new(Table::Receipt).text(conv).text(user).0
}

/// The fan-out cursor of a conversation towards one home broker.
pub(crate) fn fanout(conv: &str, node: &str) -> Vec<u8> {
    Key::new(Table::Fanout).text(conv).text(node).0
}

/// Every pending fan-out cursor.
pub(crate) fn fanouts() -> Range {
    prefix_range(Key::new(Table::Fanout))
}

/// The conversation and node of a [`fanout`] key.
pub(crate) fn fanout_parts(key: &[u8]) -> Option<(&str, &str)> {
    let conv_len = *key.get(1)? as usize;
    let conv = key.get(2..2 + conv_len)?;
    let node = key.get(3 + conv_len..)?;
    Some((
        std::str::from_utf8(conv).ok()?,
        std::str::from_utf8(node).ok()?,
    ))
}

/// A user's inbox head and low-water mark.
pub(crate) fn inbox(user: &str) -> Vec<u8> {
    Key::new(Table::Inbox).text(user).0
}

/// One inbox entry.
pub(crate) fn entry(user: &str, inbox_seq: u64) -> Vec<u8> {
    Key::new(Table::Entry).text(user).num(inbox_seq).0
}

/// The inbox entries of a user with `from <= inbox_seq < to`.
pub(crate) fn entries(user: &str, from: u64, to: u64) -> Range {
    (entry(user, from), entry(user, to))
}

/// The inbox_seq at the end of an [`entry`] key.
pub(crate) fn entry_seq(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

/// A device's cumulative ack.
pub(crate) fn device(user: &str, device: &str) -> Vec<u8> {
    Key::new(Table::Device).text(user).text(device).0
}

/// The device id at the end of a [`device`] key.
pub(crate) fn device_id(key: &[u8]) -> Option<&str> {
    let user_len = *key.get(1)? as usize;
    std::str::from_utf8(key.get(3 + user_len..)?).ok()
}

/// Every device of a user.
pub(crate) fn devices(user: &str) -> Range {
    prefix_range(Key::new(Table::Device).text(user))
}

/// The highest seq of a conversation applied to a user's inbox.
pub(crate) fn applied(user: &str, conv: &str) -> Vec<u8> {
    Key::new(Table::Applied).text(user).text(conv).0
}

/// A user's summary of one conversation.
pub(crate) fn summary(user: &str, conv: &str) -> Vec<u8> {
    Key::new(Table::Summary).text(user).text(conv).0
}

/// Every conversation summary of a user.
pub(crate) fn summaries(user: &str) -> Range {
    prefix_range(Key::new(Table::Summary).text(user))
}

/// When a user was last online.
pub(crate) fn last_seen(user: &str) -> Vec<u8> {
    Key::new(Table::LastSeen).text(user).0
}

/// A user's pending offline notification.
pub(crate) fn notification(user: &str) -> Vec<u8> {
    Key::new(Table::Notify).text(user).0
}

/// Every pending notification.
pub(crate) fn notifications() -> Range {
    prefix_range(Key::new(Table::Notify))
}

/// The user of a [`notification`] key.
pub(crate) fn notification_user(key: &[u8]) -> Option<&str> {
    std::str::from_utf8(key.get(2..)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_sort_by_seq_within_their_conversation() {
        let (start, end) = events("d/a/b", 1, u64::MAX);
        assert!(event("d/a/b", 255) < event("d/a/b", 256));
        assert!(start <= event("d/a/b", 1) && event("d/a/b", 1 << 40) < end);
        assert!(!(start..end).contains(&event("d/a/bc", 1)));
    }

    #[test]
    fn prefixes_cover_exactly_their_table() {
        let (start, end) = members("g/x");
        assert!((start.clone()..end.clone()).contains(&member("g/x", "zz")));
        assert!(!(start..end).contains(&member("g/xy", "a")));
        assert_eq!(member_user(&member("g/x", "alice")), Some("alice"));
        assert_eq!(fanout_parts(&fanout("g/x", "b2")), Some(("g/x", "b2")));
        assert_eq!(entry_seq(&entry("alice", 42)), Some(42));
        assert_eq!(device_id(&device("alice", "phone")), Some("phone"));
        assert_eq!(notification_user(&notification("bob")), Some("bob"));
        assert_eq!(prefix_end(&[1, 0xff]), vec![2]);
    }
}
