//! The MQTT topic tree of a natter device (`[NWP-14-4]`, `[NWP-14-5]`).
//!
//! `natter/send/<conversation>` names a conversation to send to; `natter/in/...` is the
//! device's own inbox seen as topics. A conversation id holds slashes (`d/alice/bob`,
//! `g/team`), so it spans two or three topic levels; its first level says how many.

use natter_codec::ids::ConversationId;

/// Where a device publishes.
pub const SEND_PREFIX: &str = "natter/send/";
/// Where the device's inbox appears.
pub const IN_PREFIX: &str = "natter/in/";
/// The longest topic name or filter the edge accepts, in bytes (`[NWP-14-11]`).
pub const MAX_TOPIC_LEN: usize = 256;

/// The conversation a PUBLISH topic names, if it is `natter/send/<valid conversation id>`.
pub fn send_target(topic: &str) -> Option<&str> {
    if topic.len() > MAX_TOPIC_LEN {
        return None;
    }
    let conversation = topic.strip_prefix(SEND_PREFIX)?;
    ConversationId::parse(conversation).map(|_| conversation)
}

/// Whether a PUBLISH topic name holds a wildcard, which MQTT forbids ([MQTT-3.3.2-2]).
pub fn has_wildcard(topic: &str) -> bool {
    topic.contains(['+', '#'])
}

/// Why a SUBSCRIBE filter is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a valid filter ([MQTT-4.7.1-2], [MQTT-4.7.1-3]) or too long.
    Invalid,
    /// A shared subscription (`$share/...`), which the edge does not offer.
    Shared,
    /// Outside the device's inbox: another tree, `$SYS`, or a bare `#`.
    NotAuthorized,
}

/// Checks a SUBSCRIBE filter: it must be a valid MQTT filter under `natter/in/`, so that any
/// match is a topic of the device's own inbox (`[NWP-14-6]`).
pub fn check_filter(filter: &str) -> Result<(), Refusal> {
    if filter.is_empty() || filter.len() > MAX_TOPIC_LEN {
        return Err(Refusal::Invalid);
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        let wild = level.contains(['+', '#']);
        if wild && level.len() != 1 {
            return Err(Refusal::Invalid);
        }
        if *level == "#" && i != levels.len() - 1 {
            return Err(Refusal::Invalid);
        }
    }
    if filter.starts_with("$share/") {
        return Err(Refusal::Shared);
    }
    if !filter.starts_with(IN_PREFIX) {
        return Err(Refusal::NotAuthorized);
    }
    Ok(())
}

/// Whether a topic name matches a filter, by MQTT's rules: `+` is one level, `#` the rest
/// (including the parent level itself).
pub fn matches(filter: &str, topic: &str) -> bool {
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        if level == "#" {
            return true;
        }
        match topic_levels.next() {
            Some(t) if level == "+" || level == t => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

/// The topic a DELIVER is published under: `natter/in/<conversation>` for MQTT 5, whose user
/// properties carry the rest; `natter/in/<conversation>/<seq>/<sender>` for 3.1.1, which has
/// no properties (`[NWP-14-7]`).
pub fn inbox_topic(conversation: &str, seq: u64, sender: &str, v5: bool) -> String {
    if v5 {
        format!("{IN_PREFIX}{conversation}")
    } else {
        format!("{IN_PREFIX}{conversation}/{seq}/{sender}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_topics_name_valid_conversations_only() {
        assert_eq!(send_target("natter/send/d/alice/bob"), Some("d/alice/bob"));
        assert_eq!(send_target("natter/send/g/team-1"), Some("g/team-1"));
        assert_eq!(send_target("natter/send/d/bob/alice"), None, "unordered");
        assert_eq!(send_target("natter/send/x"), None);
        assert_eq!(send_target("natter/in/g/team"), None);
        assert_eq!(send_target("$SYS/broker"), None);
    }

    #[test]
    fn filters_stay_inside_the_inbox() {
        assert_eq!(check_filter("natter/in/#"), Ok(()));
        assert_eq!(check_filter("natter/in/d/alice/bob/#"), Ok(()));
        assert_eq!(check_filter("natter/in/+/+/+"), Ok(()));
        assert_eq!(check_filter("#"), Err(Refusal::NotAuthorized));
        assert_eq!(check_filter("+/in/#"), Err(Refusal::NotAuthorized));
        assert_eq!(check_filter("$SYS/#"), Err(Refusal::NotAuthorized));
        assert_eq!(check_filter("natter/send/#"), Err(Refusal::NotAuthorized));
        assert_eq!(check_filter("$share/g/natter/in/#"), Err(Refusal::Shared));
        assert_eq!(check_filter("natter/in/a#"), Err(Refusal::Invalid));
        assert_eq!(check_filter("natter/#/in"), Err(Refusal::Invalid));
    }

    #[test]
    fn matching_follows_mqtt() {
        assert!(matches("natter/in/#", "natter/in/g/x"));
        assert!(matches("natter/in/g/x/#", "natter/in/g/x"));
        assert!(matches("natter/in/g/x/#", "natter/in/g/x/5/bob"));
        assert!(matches("natter/in/+/x", "natter/in/g/x"));
        assert!(!matches("natter/in/g/x", "natter/in/g/x/5/bob"));
        assert!(!matches("natter/in/g/y/#", "natter/in/g/x"));
    }
}
