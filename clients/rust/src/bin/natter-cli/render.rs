//! What the CLI prints: a line for people, or with `--json` one JSON object per line that
//! keeps the wire's values (epoch milliseconds, spec names) and adds ISO 8601 times.

use natter_client::{ChatEvent, ConnectionState, Event, EventKind, GroupInfo, Role, Status};
use natter_codec::types::EventFlags;
use serde_json::{Value, json};

use crate::localtime;

/// Where results go: stdout, as text or as JSON lines.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
}

impl Output {
    pub fn print(self, value: Value, human: impl FnOnce() -> String) {
        if self.json {
            println!("{value}");
        } else {
            println!("{}", human());
        }
    }

    /// A conversation event of the one conversation being shown (history, chat).
    pub fn chat(self, event: &ChatEvent) {
        self.print(chat_json(event), || chat_line(event, false));
    }

    /// Any event of the stream (listen): conversation events name their conversation.
    pub fn event(self, event: &Event) {
        self.print(event_json(event), || match event.chat_event() {
            Some(chat) => chat_line(chat, true),
            None => event_line(event),
        });
    }
}

/// `2026-11-29 22:03 #12 alice: hi`, with the conversation before the seq when asked.
pub fn chat_line(event: &ChatEvent, with_conversation: bool) -> String {
    let time = localtime::local(event.timestamp);
    let what = describe(event);
    match with_conversation {
        true => format!("{time} {} #{} {what}", event.conversation, event.seq),
        false => format!("{time} #{} {what}", event.seq),
    }
}

/// An event in words: who did what.
pub fn describe(event: &ChatEvent) -> String {
    let sender = &event.sender;
    if let Some((user, role)) = event.member_change() {
        let role_suffix = match role {
            Role::MEMBER => String::new(),
            role => format!(" as {}", role_name(role)),
        };
        return match event.kind {
            EventKind::MEMBER_ADDED if &user == sender => format!("{user} joined{role_suffix}"),
            EventKind::MEMBER_ADDED => format!("{sender} added {user}{role_suffix}"),
            EventKind::MEMBER_REMOVED if &user == sender => format!("{user} left"),
            EventKind::MEMBER_REMOVED => format!("{sender} removed {user}"),
            _ => format!("{sender} made {user} {}", role_name(role)),
        };
    }
    match event.kind {
        EventKind::MESSAGE if event.flags.contains(EventFlags::DELETED) => {
            format!("{sender}: (deleted)")
        }
        EventKind::MESSAGE if event.flags.contains(EventFlags::EDITED) => {
            format!("{sender}: {} (edited)", body(event))
        }
        EventKind::MESSAGE => format!("{sender}: {}", body(event)),
        EventKind::EDIT => format!("{sender} edited #{}: {}", event.target, body(event)),
        EventKind::DELETE => format!("{sender} deleted #{}", event.target),
        EventKind::GROUP_CREATED => {
            format!("{sender} created the group \"{}\"", printable(&event.body))
        }
        // [NWP-4.1-1]: shown as unsupported, never dropped.
        kind => format!("{sender}: unsupported event {kind}"),
    }
}

/// A presence report in words, and whether it says anything: a user the server does not
/// show (UNKNOWN) and a user never seen (OFFLINE, last seen 0) look alike on purpose
/// ([NWP-7.9-3]), so both are "unknown".
pub fn presence_line(user: &str, status: Status, last_seen: u64) -> (String, bool) {
    match status {
        Status::ONLINE => (format!("{user} is online"), true),
        Status::OFFLINE if last_seen > 0 => {
            let when = localtime::local(last_seen);
            (format!("{user} is offline, last seen {when}"), true)
        }
        _ => (
            format!("{user}: unknown (no shared conversation, or never seen)"),
            false,
        ),
    }
}

/// A line for an event that is not part of a conversation log.
pub fn event_line(event: &Event) -> String {
    match event {
        Event::Connection(state) => connection_line(state),
        Event::Receipt {
            conversation,
            user,
            delivered,
            read,
        } => format!("[{conversation}] {user} received up to #{delivered}, read up to #{read}"),
        Event::Presence {
            user,
            status,
            last_seen,
        } => presence_line(user, *status, *last_seen).0,
        Event::Typing {
            conversation,
            user,
            active,
        } => {
            let what = match active {
                true => "is typing",
                false => "stopped typing",
            };
            format!("[{conversation}] {user} {what}")
        }
        Event::Gap {
            conversation,
            from,
            to,
        } => {
            let place = conversation.as_deref().unwrap_or("inbox");
            format!("* missed {place} #{from}..#{to}; repairing from history")
        }
        Event::Repaired {
            conversation,
            through,
        } => format!("* {conversation} complete through #{through}"),
        Event::RepairFailed {
            conversation,
            error,
        } => format!("* could not repair {conversation}: {error}"),
        other => format!("{other:?}"),
    }
}

pub fn connection_line(state: &ConnectionState) -> String {
    match state {
        ConnectionState::Connected { user, device, .. } => {
            format!("* connected as {user}/{device}")
        }
        ConnectionState::Synced { .. } => "* in sync".to_owned(),
        ConnectionState::Disconnected { reason, retry_in } => {
            format!(
                "* disconnected ({reason}); retrying in {} ms",
                retry_in.as_millis()
            )
        }
        other => format!("* {other:?}"),
    }
}

/// `owner`, `admin`, `member`: roles read as words in sentences.
pub fn role_name(role: Role) -> String {
    role.name()
        .map_or_else(|| role.to_string(), str::to_ascii_lowercase)
}

/// The body as text when it is text, else its size and type.
fn body(event: &ChatEvent) -> String {
    let texty = event.content_type.is_empty() || event.content_type.starts_with("text/");
    match event.text() {
        Some(_) if texty => printable(&event.body),
        _ => {
            let kind = match event.content_type.as_str() {
                "" => "binary",
                kind => kind,
            };
            format!("<{} bytes, {kind}>", event.body.len())
        }
    }
}

/// Text safe for a terminal: control characters (escape sequences included) are shown
/// escaped, and continuation lines are indented so every event still starts a line.
fn printable(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\n    "),
            '\t' => out.push(c),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

pub fn chat_json(event: &ChatEvent) -> Value {
    let mut value = json!({
        "conversation": event.conversation,
        "seq": event.seq,
        "kind": event.kind.name().map_or_else(|| event.kind.0.to_string(), str::to_owned),
        "sender": event.sender,
        "device": event.device,
        "timestamp": event.timestamp,
        "timestamp_iso": localtime::iso(event.timestamp),
        "client_msg_id": event.client_msg_id,
        "target": event.target,
        "deleted": event.flags.contains(EventFlags::DELETED),
        "edited": event.flags.contains(EventFlags::EDITED),
        "content_type": event.content_type,
    });
    match (event.member_change(), event.text()) {
        (Some((user, role)), _) => {
            value["member"] = json!({"user": user, "role": role.name()});
        }
        (None, Some(text)) => value["text"] = json!(text),
        (None, None) => value["body_len"] = json!(event.body.len()),
    }
    value
}

pub fn group_json(info: &GroupInfo) -> Value {
    let members: Vec<Value> = info
        .members
        .iter()
        .map(|(user, role)| json!({"user": user, "role": role.name()}))
        .collect();
    json!({"conversation": info.conversation, "title": info.title, "members": members})
}

pub fn event_json(event: &Event) -> Value {
    if let Some(chat) = event.chat_event() {
        let mut value = chat_json(chat);
        value["event"] = json!(match event {
            Event::Message(_) => "message",
            Event::Edit(_) => "edit",
            Event::Delete(_) => "delete",
            Event::Membership(_) => "membership",
            _ => "other",
        });
        return value;
    }
    match event {
        Event::Receipt {
            conversation,
            user,
            delivered,
            read,
        } => json!({
            "event": "receipt", "conversation": conversation, "user": user,
            "delivered": delivered, "read": read,
        }),
        Event::Presence {
            user,
            status,
            last_seen,
        } => presence_json(user, *status, *last_seen),
        Event::Typing {
            conversation,
            user,
            active,
        } => json!({
            "event": "typing", "conversation": conversation, "user": user, "active": active,
        }),
        Event::Gap {
            conversation,
            from,
            to,
        } => json!({
            "event": "gap", "conversation": conversation, "from": from, "to": to,
        }),
        Event::Repaired {
            conversation,
            through,
        } => json!({
            "event": "repaired", "conversation": conversation, "through": through,
        }),
        Event::RepairFailed {
            conversation,
            error,
        } => json!({
            "event": "repair_failed", "conversation": conversation, "error": error.to_string(),
        }),
        Event::Connection(state) => connection_json(state),
        other => json!({"event": "unknown", "debug": format!("{other:?}")}),
    }
}

pub fn presence_json(user: &str, status: Status, last_seen: u64) -> Value {
    json!({
        "event": "presence", "user": user, "status": status.name(), "last_seen": last_seen,
        "last_seen_iso": localtime::iso_or_null(last_seen),
    })
}

fn connection_json(state: &ConnectionState) -> Value {
    let (name, detail) = match state {
        ConnectionState::Connecting { attempt } => ("connecting", json!({"attempt": attempt})),
        ConnectionState::Connected {
            user,
            device,
            session,
        } => (
            "connected",
            json!({"user": user, "device": device, "session": session}),
        ),
        ConnectionState::Synced { inbox_head } => ("synced", json!({"inbox_head": inbox_head})),
        ConnectionState::GoingAway { reconnect_after } => (
            "going_away",
            json!({"reconnect_ms": reconnect_after.as_millis() as u64}),
        ),
        ConnectionState::Disconnected { reason, retry_in } => (
            "disconnected",
            json!({"reason": reason, "retry_ms": retry_in.as_millis() as u64}),
        ),
        ConnectionState::Closed { error } => (
            "closed",
            json!({"error": error.as_ref().map(ToString::to_string)}),
        ),
        _ => ("unknown", Value::Null),
    };
    json!({"event": "connection", "state": name, "detail": detail})
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test: a failed step should panic")]

    use bytes::Bytes;
    use natter_codec::types::MemberChange;

    use super::*;

    fn event(kind: EventKind, sender: &str, body: impl Into<Bytes>) -> ChatEvent {
        ChatEvent {
            conversation: "g/team".to_owned(),
            seq: 7,
            kind,
            target: 0,
            flags: EventFlags::default(),
            timestamp: 1_767_225_540_000,
            sender: sender.to_owned(),
            device: "cli".to_owned(),
            client_msg_id: 0,
            content_type: String::new(),
            body: body.into(),
        }
    }

    fn member(kind: EventKind, sender: &str, user: &str, role: Role) -> ChatEvent {
        let change = MemberChange {
            user: user.into(),
            role,
        };
        event(kind, sender, change.to_body().unwrap())
    }

    #[test]
    fn membership_events_read_as_sentences() {
        let cases = [
            (
                event(EventKind::GROUP_CREATED, "alice", "Team"),
                "alice created the group \"Team\"",
            ),
            (
                member(EventKind::MEMBER_ADDED, "alice", "alice", Role::OWNER),
                "alice joined as owner",
            ),
            (
                member(EventKind::MEMBER_ADDED, "alice", "bob", Role::MEMBER),
                "alice added bob",
            ),
            (
                member(EventKind::MEMBER_ADDED, "alice", "dave", Role::ADMIN),
                "alice added dave as admin",
            ),
            (
                member(EventKind::MEMBER_REMOVED, "bob", "bob", Role::MEMBER),
                "bob left",
            ),
            (
                member(EventKind::MEMBER_REMOVED, "alice", "carol", Role::MEMBER),
                "alice removed carol",
            ),
            (
                member(EventKind::ROLE_CHANGED, "alice", "bob", Role::ADMIN),
                "alice made bob admin",
            ),
            (
                member(EventKind::ROLE_CHANGED, "alice", "bob", Role(9)),
                "alice made bob Role(0x9)",
            ),
        ];
        for (event, line) in cases {
            assert_eq!(describe(&event), line);
        }
    }

    #[test]
    fn messages_edits_and_deletes_read_as_sentences() {
        let mut edit = event(EventKind::EDIT, "bob", "fixed typo");
        edit.target = 3;
        let mut delete = event(EventKind::DELETE, "alice", "");
        delete.target = 4;
        let mut edited = event(EventKind::MESSAGE, "bob", "fixed typo");
        edited.flags = EventFlags::EDITED;
        let mut deleted = event(EventKind::MESSAGE, "alice", "");
        deleted.flags = EventFlags::DELETED;
        let mut image = event(EventKind::MESSAGE, "bob", vec![0x89, 0x50, 0x4e]);
        image.content_type = "image/png".to_owned();
        let cases = [
            (event(EventKind::MESSAGE, "bob", "hi"), "bob: hi"),
            (edit, "bob edited #3: fixed typo"),
            (delete, "alice deleted #4"),
            (edited, "bob: fixed typo (edited)"),
            (deleted, "alice: (deleted)"),
            (image, "bob: <3 bytes, image/png>"),
            (
                event(EventKind::MESSAGE, "bob", vec![0xff, 0xfe]),
                "bob: <2 bytes, binary>",
            ),
            (
                event(EventKind::MESSAGE, "eve", "\u{1b}[2Jgotcha\nline two"),
                "eve: \\u{1b}[2Jgotcha\n    line two",
            ),
            (
                event(EventKind(0x7f), "bob", "?"),
                "bob: unsupported event EventKind(0x7f)",
            ),
        ];
        for (event, line) in cases {
            assert_eq!(describe(&event), line);
        }
    }

    #[test]
    fn lines_carry_the_local_time_and_seq() {
        let line = chat_line(&event(EventKind::MESSAGE, "bob", "hi"), false);
        // The date depends on the machine's zone (the CLI tests pin TZ); the rest does not.
        assert!(line.starts_with("2025-12-31 ") || line.starts_with("2026-01-01 "));
        assert!(line.ends_with(" #7 bob: hi"), "{line}");
        assert!(chat_line(&event(EventKind::MESSAGE, "bob", "hi"), true).contains(" g/team #7 "));
    }

    #[test]
    fn unknown_presence_is_not_called_offline() {
        let unknown = "zed: unknown (no shared conversation, or never seen)";
        assert_eq!(
            presence_line("zed", Status::UNKNOWN, 0),
            (unknown.to_owned(), false)
        );
        assert_eq!(
            presence_line("zed", Status::OFFLINE, 0),
            (unknown.to_owned(), false)
        );
        assert_eq!(
            presence_line("bob", Status::ONLINE, 0),
            ("bob is online".to_owned(), true)
        );
        let (line, known) = presence_line("bob", Status::OFFLINE, 1_767_225_540_000);
        assert!(known);
        assert!(line.starts_with("bob is offline, last seen 202"), "{line}");
    }

    #[test]
    fn json_keeps_milliseconds_and_adds_iso() {
        let value = chat_json(&event(EventKind::MESSAGE, "bob", "hi"));
        assert_eq!(value["timestamp"], 1_767_225_540_000_u64);
        assert_eq!(value["timestamp_iso"], "2025-12-31T23:59:00.000Z");
        let presence = event_json(&Event::Presence {
            user: "zed".to_owned(),
            status: Status::UNKNOWN,
            last_seen: 0,
        });
        assert_eq!(presence["last_seen"], 0);
        assert_eq!(presence["last_seen_iso"], Value::Null);
    }
}
