//! Checks the user and conversation ids given on the command line before connecting, and
//! names the rule a bad one breaks: the server would only answer INVALID_REQUEST, or, for an
//! id it still accepts, quietly start a conversation with a user nobody meant.

use natter_codec::ids::{
    ConversationId, DIRECT_PREFIX, GROUP_PREFIX, MAX_CONVERSATION_ID_LEN, is_valid_user_id,
    user_id_problem,
};

/// Checks a command's TO: a conversation id (`d/...`, `g/...`) or a user id.
pub fn target(to: &str) -> Result<(), String> {
    if to.starts_with(DIRECT_PREFIX) || to.starts_with(GROUP_PREFIX) {
        conversation(to)
    } else {
        user(to)
    }
}

/// Checks a user id against [NWP-2.3-1] and [NWP-2.3-5].
pub fn user(id: &str) -> Result<(), String> {
    match user_problem(id) {
        None => Ok(()),
        Some(problem) => Err(format!("{id:?} is not a valid user id: {problem}")),
    }
}

/// Checks a group id (`g/<name>`, [NWP-2.3-3]).
pub fn group(id: &str) -> Result<(), String> {
    if !id.starts_with(GROUP_PREFIX) {
        return Err(format!(
            "{id:?} is not a group id: group ids start with g/ (NWP-2.3-3); \
             `natter-cli conversations` lists yours"
        ));
    }
    conversation(id)
}

/// The conversation id of TO, which [`target`] accepted: as given, or the direct
/// conversation between `me` and the user TO.
pub fn conversation_of(me: &str, to: &str) -> String {
    match ConversationId::parse(to) {
        Some(_) => to.to_owned(),
        None => natter_codec::ids::direct_conversation(me, to),
    }
}

/// The rule `id` breaks, from the codec, with a hint where one helps.
fn user_problem(id: &str) -> Option<String> {
    if is_valid_user_id(id) {
        return None;
    }
    // The fallback covers a codec rule that has no explanation yet.
    let problem = user_id_problem(id).unwrap_or("see NWP-2.3-1");
    let lower = id.to_ascii_lowercase();
    let hint = if is_valid_user_id(&lower) {
        format!("; did you mean {lower:?}?")
    } else if id.contains('/') {
        "; conversation ids start with d/ or g/".to_owned()
    } else {
        String::new()
    };
    Some(format!("{problem}{hint}"))
}

/// Checks a `d/...` or `g/...` id against [NWP-2.3-2] and [NWP-2.3-3].
fn conversation(id: &str) -> Result<(), String> {
    let bad = |problem: String| Err(format!("{id:?} is not a valid conversation id: {problem}"));
    if id.len() > MAX_CONVERSATION_ID_LEN {
        return bad(format!(
            "conversation ids are at most {MAX_CONVERSATION_ID_LEN} bytes (NWP-2.3-3)"
        ));
    }
    if let Some(pair) = id.strip_prefix(DIRECT_PREFIX) {
        let Some((low, high)) = pair.split_once('/') else {
            return bad("a direct id is d/<user>/<user> (NWP-2.3-2)".to_owned());
        };
        for user in [low, high] {
            if let Some(problem) = user_problem(user) {
                return bad(format!("{user:?}: {problem}"));
            }
        }
        // Equal is fine: d/u/u is the user's own notes ([NWP-2.3-6]).
        if low > high {
            return bad(format!(
                "the lower user id comes first (NWP-2.3-2); did you mean \"d/{high}/{low}\"?"
            ));
        }
    } else if let Some(name) = id.strip_prefix(GROUP_PREFIX) {
        let valid = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return bad(
                "a group id is g/ and 1 to 64 ASCII letters, digits, - or _ (NWP-2.3-3)".to_owned(),
            );
        }
    }
    match ConversationId::parse(id) {
        Some(_) => Ok(()),
        None => bad("see NWP-2.3-3".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test: a failed step should panic")]

    use super::*;

    #[test]
    fn good_ids_pass() {
        for to in [
            "bob",
            "ünïcode@example.com",
            "d/alice/bob",
            "d/bob/bob",
            "g/team-1_x",
        ] {
            assert_eq!(target(to), Ok(()), "{to}");
        }
        assert_eq!(conversation_of("alice", "bob"), "d/alice/bob");
        assert_eq!(conversation_of("carol", "bob"), "d/bob/carol");
        assert_eq!(conversation_of("alice", "g/x"), "g/x");
    }

    #[test]
    fn bad_user_ids_name_the_rule() {
        let cases = [
            (
                "BOB",
                r#""BOB" is not a valid user id: user ids are lower case (NWP-2.3-5); did you mean "bob"?"#,
            ),
            (
                "Bob Smith",
                r#""Bob Smith" is not a valid user id: a user id contains no white space (NWP-2.3-1)"#,
            ),
            (
                "",
                r#""" is not a valid user id: a user id is 1 to 64 bytes (NWP-2.3-1)"#,
            ),
            (
                "a\u{7}b",
                r#""a\u{7}b" is not a valid user id: a user id contains no control characters (NWP-2.3-1)"#,
            ),
            (
                "x/y",
                r#""x/y" is not a valid user id: a user id contains no '/' (NWP-2.3-1); conversation ids start with d/ or g/"#,
            ),
        ];
        for (id, message) in cases {
            assert_eq!(target(id).unwrap_err(), message);
        }
        assert!(user(&"x".repeat(65)).is_err());
    }

    #[test]
    fn bad_conversation_ids_name_the_rule() {
        let cases = [
            (
                "d/bob/alice",
                r#""d/bob/alice" is not a valid conversation id: the lower user id comes first (NWP-2.3-2); did you mean "d/alice/bob"?"#,
            ),
            (
                "d/alice/Bob",
                r#""d/alice/Bob" is not a valid conversation id: "Bob": user ids are lower case (NWP-2.3-5); did you mean "bob"?"#,
            ),
            (
                "d/alice",
                r#""d/alice" is not a valid conversation id: a direct id is d/<user>/<user> (NWP-2.3-2)"#,
            ),
            (
                "g/a.b",
                r#""g/a.b" is not a valid conversation id: a group id is g/ and 1 to 64 ASCII letters, digits, - or _ (NWP-2.3-3)"#,
            ),
        ];
        for (id, message) in cases {
            assert_eq!(target(id).unwrap_err(), message);
        }
        assert!(group("d/alice/bob").unwrap_err().contains("start with g/"));
        assert!(target("d/a/b/c").is_err());
    }
}
