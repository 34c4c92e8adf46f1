//! Identifiers (spec section 2.3): what a valid id is, and how conversation ids are formed.

/// A user id is 1 to 64 bytes of UTF-8.
pub const MAX_USER_ID_LEN: usize = 64;
/// A device id is 1 to 64 bytes of UTF-8.
pub const MAX_DEVICE_ID_LEN: usize = 64;
/// A conversation id is at most 160 bytes (a direct id is at most 131).
pub const MAX_CONVERSATION_ID_LEN: usize = 160;

/// The prefix of a direct conversation id.
pub const DIRECT_PREFIX: &str = "d/";
/// The prefix of a group conversation id.
pub const GROUP_PREFIX: &str = "g/";

/// Whether `id` is a valid user id (`[NWP-2.3-1]`, `[NWP-2.3-5]`): a valid device id with no
/// ASCII uppercase letter, so that `BOB` and `bob` can never be two people.
pub fn is_valid_user_id(id: &str) -> bool {
    is_valid_device_id(id) && !id.bytes().any(|b| b.is_ascii_uppercase())
}

/// Whether `id` is a valid device id (`[NWP-2.3-1]`): 1 to 64 bytes, no control characters,
/// no white space and no `/`, so that ids can be joined into conversation ids and printed in
/// logs unambiguously.
pub fn is_valid_device_id(id: &str) -> bool {
    (1..=MAX_DEVICE_ID_LEN).contains(&id.len())
        && !id
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '/')
}

/// Why `id` is not a valid user id, for people: names the rule it breaks.
pub fn user_id_problem(id: &str) -> Option<&'static str> {
    if id.is_empty() || id.len() > MAX_USER_ID_LEN {
        Some("a user id is 1 to 64 bytes (NWP-2.3-1)")
    } else if id.chars().any(char::is_whitespace) {
        Some("a user id contains no white space (NWP-2.3-1)")
    } else if id.chars().any(char::is_control) {
        Some("a user id contains no control characters (NWP-2.3-1)")
    } else if id.contains('/') {
        Some("a user id contains no '/' (NWP-2.3-1)")
    } else if id.bytes().any(|b| b.is_ascii_uppercase()) {
        Some("user ids are lower case (NWP-2.3-5)")
    } else {
        None
    }
}

/// The id of the direct conversation between `a` and `b`: `d/<lower>/<higher>`, the two user
/// ids in byte order (`[NWP-2.3-2]`), so both sides name the same conversation.
pub fn direct_conversation(a: &str, b: &str) -> String {
    let (low, high) = if a <= b { (a, b) } else { (b, a) };
    format!("{DIRECT_PREFIX}{low}/{high}")
}

/// A parsed conversation id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationId<'a> {
    /// A direct conversation between two users, in byte order.
    Direct(&'a str, &'a str),
    /// A group, by its server-assigned name.
    Group(&'a str),
}

impl<'a> ConversationId<'a> {
    /// Parses a conversation id; `None` if it is not valid (`[NWP-2.3-3]`).
    pub fn parse(id: &'a str) -> Option<Self> {
        if id.len() > MAX_CONVERSATION_ID_LEN {
            return None;
        }
        if let Some(pair) = id.strip_prefix(DIRECT_PREFIX) {
            let (low, high) = pair.split_once('/')?;
            let valid = is_valid_user_id(low) && is_valid_user_id(high) && low <= high;
            return valid.then_some(Self::Direct(low, high));
        }
        let name = id.strip_prefix(GROUP_PREFIX)?;
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        valid.then_some(Self::Group(name))
    }

    /// Whether `user` is one of a direct conversation's two users (always false for groups,
    /// whose members only their owner knows).
    pub fn is_direct_member(self, user: &str) -> bool {
        matches!(self, Self::Direct(low, high) if low == user || high == user)
    }
}

/// The ring key of a conversation: the broker owning it owns its log (`[NWP-9.1-1]`).
pub fn conversation_key(conversation: &str) -> String {
    format!("conv:{conversation}")
}

/// The ring key of a user: the broker owning it is the user's home broker.
pub fn user_key(user: &str) -> String {
    format!("user:{user}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_ids_are_symmetric() {
        assert_eq!(direct_conversation("bob", "alice"), "d/alice/bob");
        assert_eq!(direct_conversation("alice", "bob"), "d/alice/bob");
        assert_eq!(
            ConversationId::parse("d/alice/bob"),
            Some(ConversationId::Direct("alice", "bob"))
        );
    }

    #[test]
    fn invalid_ids_are_rejected() {
        for id in ["", "a b", "a/b", "tab\t", &"x".repeat(65)] {
            assert!(!is_valid_user_id(id), "{id:?}");
        }
        for conv in [
            "d/bob/alice",
            "d/alice",
            "d//bob",
            "g/",
            "g/a.b",
            "x/y",
            "d/a/b/c",
        ] {
            assert_eq!(ConversationId::parse(conv), None, "{conv:?}");
        }
        assert!(is_valid_user_id("ünïcode@example.com"));
    }

    #[test]
    fn user_ids_are_lower_case_but_device_ids_need_not_be() {
        assert!(!is_valid_user_id("Bob"));
        assert_eq!(ConversationId::parse("d/BOB/alice"), None);
        assert!(is_valid_device_id("Pixel-7"));
        assert_eq!(
            user_id_problem("BOB"),
            Some("user ids are lower case (NWP-2.3-5)")
        );
        assert_eq!(
            user_id_problem("Bob Smith"),
            Some("a user id contains no white space (NWP-2.3-1)")
        );
        assert_eq!(user_id_problem("bob"), None);
    }

    #[test]
    fn a_conversation_with_oneself_is_valid() {
        // [NWP-2.3-6]: the user's own notes.
        assert_eq!(
            ConversationId::parse("d/alice/alice"),
            Some(ConversationId::Direct("alice", "alice"))
        );
    }
}
