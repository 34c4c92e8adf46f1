//! Conversation logs at their owner: access checks, seq assignment, dedup, edits and deletes,
//! history pages, typing and FETCH.

use bytes::Bytes;
use natter_codec::field::Field as _;
use natter_codec::frame::{
    Events, Fetch, History, HistoryPage, Push, Send, SendAck, Typing, TypingUpdate,
};
use natter_codec::ids::ConversationId;
use natter_codec::types::{ConversationKind, Direction, Event, EventFlags, EventKind, Role};
use natter_codec::{ErrorCode, Frame};

use super::{Client, Dest, Reject, Shard};
use crate::keys;
use crate::records::{ConvMeta, Dedup, MemberRecord, request_digest};

/// Most seqs one FETCH may ask for.
const MAX_FETCH: usize = 1024;

/// A conversation this shard owns, as one request sees it.
#[derive(Debug)]
pub(super) struct Conversation {
    pub(super) id: String,
    pub(super) meta: ConvMeta,
    /// The requester's role; `None` in direct conversations.
    pub(super) role: Option<Role>,
}

impl Shard {
    /// Parses a conversation id and checks that this shard owns it.
    pub(super) fn owned(&self, conversation: &str) -> Result<ConversationKind, Reject> {
        let kind = match ConversationId::parse(conversation) {
            Some(ConversationId::Direct(..)) => ConversationKind::DIRECT,
            Some(ConversationId::Group(_)) => ConversationKind::GROUP,
            None => {
                return Err(Reject::new(
                    ErrorCode::INVALID_REQUEST,
                    "not a conversation id",
                ));
            }
        };
        if !self.is_mine(self.ring.conversation_owner(conversation)) {
            return Err(Reject::new(
                ErrorCode::WRONG_OWNER,
                "conversation owned by another broker",
            ));
        }
        Ok(kind)
    }

    /// Loads a conversation and checks that `user` is a member of it. A non-member hears
    /// NOT_FOUND whether or not the conversation exists (`[NWP-8.2-1]`): nobody learns which
    /// groups exist or who talks to whom.
    pub(super) fn access(&self, conversation: &str, user: &str) -> Result<Conversation, Reject> {
        let not_found = || Reject::new(ErrorCode::NOT_FOUND, "no such conversation");
        let kind = self.owned(conversation)?;
        if kind == ConversationKind::DIRECT {
            let direct =
                ConversationId::parse(conversation).is_some_and(|id| id.is_direct_member(user));
            if !direct {
                return Err(not_found());
            }
            let stored: Option<ConvMeta> = self.store.record(&keys::conversation(conversation))?;
            let meta = stored.unwrap_or(ConvMeta {
                kind,
                members: 2,
                ..ConvMeta::default()
            });
            return Ok(Conversation {
                id: conversation.to_string(),
                meta,
                role: None,
            });
        }
        let member: Option<MemberRecord> = self.store.record(&keys::member(conversation, user))?;
        let member = member.filter(|m| m.left == 0).ok_or_else(not_found)?;
        let meta: ConvMeta = self
            .store
            .record(&keys::conversation(conversation))?
            .ok_or_else(not_found)?;
        Ok(Conversation {
            id: conversation.to_string(),
            meta,
            role: Some(member.role),
        })
    }

    /// Reads one event.
    pub(super) fn event(&self, conversation: &str, seq: u64) -> Result<Option<Event>, Reject> {
        Ok(self.store.record(&keys::event(conversation, seq))?)
    }

    /// Appends an event with the next seq; the caller stores `conv.meta` afterwards.
    pub(super) fn append(&mut self, conv: &mut Conversation, mut event: Event) -> Event {
        conv.meta.head += 1;
        event.seq = conv.meta.head;
        self.store
            .put_record(keys::event(&conv.id, event.seq), &event);
        event
    }

    /// SEND: check, dedup, append durably, answer, fan out.
    pub(super) fn send_message(&mut self, client: &Client, send: Send) -> Result<(), Reject> {
        let mut conv = self.access(&send.conversation, &client.user)?;
        let digest = request_digest(send.kind, send.target, &send.content_type, &send.body);
        let dedup_key = keys::dedup(&conv.id, &client.user, &client.device, send.client_msg_id);
        if let Some(dedup) = self.store.record::<Dedup>(&dedup_key)? {
            if dedup.digest != digest {
                return Err(Reject::new(
                    ErrorCode::DUPLICATE_MISMATCH,
                    "client_msg_id already used for another request",
                ));
            }
            let ack = SendAck {
                request: send.request,
                seq: dedup.seq,
                timestamp: dedup.timestamp,
                duplicate: true,
            };
            self.answer(client, ack.into());
            return Ok(());
        }
        self.check_send(client, &conv, &send)?;
        let newly_visible =
            send.kind == EventKind::MESSAGE && self.would_become_visible(&conv.id, &client.user)?;
        let event = self.append(
            &mut conv,
            Event {
                seq: 0,
                kind: send.kind,
                target: send.target,
                flags: EventFlags::NONE,
                timestamp: self.now,
                sender: client.user.clone(),
                device: client.device.clone(),
                client_msg_id: send.client_msg_id,
                content_type: send.content_type,
                body: send.body,
            },
        );
        if send.kind.has_target() {
            self.mark_target(&conv.id, &event)?;
        }
        let dedup = Dedup {
            seq: event.seq,
            timestamp: event.timestamp,
            digest,
        };
        self.store.put_record(dedup_key, &dedup);
        if newly_visible {
            self.became_visible(&conv.id, &client.user);
        }
        self.appended(client, send.request, &conv, &event)
    }

    /// The end of every client append (a message, an edit, a delete, a membership change):
    /// store the conversation's new head, acknowledge with the event's seq, and fan it out.
    /// The ack leaves only once this input's batch is durable.
    pub(super) fn appended(
        &mut self,
        client: &Client,
        request: u64,
        conv: &Conversation,
        event: &Event,
    ) -> Result<(), Reject> {
        self.store
            .put_record(keys::conversation(&conv.id), &conv.meta);
        let ack = SendAck {
            request,
            seq: event.seq,
            timestamp: event.timestamp,
            duplicate: false,
        };
        self.answer(client, ack.into());
        self.fan_out(conv, event)
    }

    /// The checks of docs/ARCHITECTURE.md, Send path, step 1 (membership is already checked).
    fn check_send(&self, client: &Client, conv: &Conversation, send: &Send) -> Result<(), Reject> {
        if send.client_msg_id == 0 {
            return Err(Reject::new(
                ErrorCode::INVALID_REQUEST,
                "client_msg_id must not be 0",
            ));
        }
        if send.body.len() > self.limits.body {
            return Err(Reject::new(ErrorCode::PAYLOAD_TOO_LARGE, "body too large"));
        }
        if send.content_type.len() > self.limits.content_type {
            return Err(Reject::new(
                ErrorCode::PAYLOAD_TOO_LARGE,
                "content type too long",
            ));
        }
        if send.content_type.contains('\0') {
            return Err(Reject::new(
                ErrorCode::INVALID_REQUEST,
                "content type contains U+0000 (NWP-2.2-7)",
            ));
        }
        match send.kind {
            EventKind::MESSAGE if send.target == 0 => Ok(()),
            EventKind::MESSAGE => Err(Reject::new(
                ErrorCode::INVALID_REQUEST,
                "a MESSAGE has no target",
            )),
            // [NWP-6.2.1-2]
            EventKind::EDIT | EventKind::DELETE if send.target == 0 => Err(Reject::new(
                ErrorCode::INVALID_REQUEST,
                "an EDIT or DELETE names its target",
            )),
            EventKind::EDIT | EventKind::DELETE => {
                let target = self
                    .event(&conv.id, send.target)?
                    .filter(|t| t.kind == EventKind::MESSAGE)
                    .filter(|t| !t.flags.contains(EventFlags::DELETED))
                    .ok_or_else(|| Reject::new(ErrorCode::NOT_FOUND, "no such message"))?;
                let moderator = send.kind == EventKind::DELETE
                    && matches!(conv.role, Some(Role::ADMIN | Role::OWNER));
                if target.sender != client.user && !moderator {
                    return Err(Reject::new(
                        ErrorCode::FORBIDDEN,
                        "only the sender may change a message",
                    ));
                }
                Ok(())
            }
            _ => Err(Reject::new(
                ErrorCode::INVALID_REQUEST,
                "SEND carries MESSAGE, EDIT or DELETE",
            )),
        }
    }

    /// An EDIT marks its target edited; a DELETE turns it into a tombstone.
    fn mark_target(&mut self, conversation: &str, event: &Event) -> Result<(), Reject> {
        let Some(mut target) = self.event(conversation, event.target)? else {
            return Ok(());
        };
        if event.kind == EventKind::DELETE {
            target.flags = target.flags | EventFlags::DELETED;
            target.body = Bytes::new();
            target.content_type = "".into();
        } else {
            target.flags = target.flags | EventFlags::EDITED;
        }
        self.store
            .put_record(keys::event(conversation, target.seq), &target);
        Ok(())
    }

    /// HISTORY: a page of events, ascending, for members only.
    pub(super) fn history(&mut self, client: &Client, history: History) -> Result<(), Reject> {
        let conv = self.access(&history.conversation, &client.user)?;
        if history.limit == 0 {
            return Err(Reject::new(
                ErrorCode::INVALID_REQUEST,
                "limit must not be 0",
            ));
        }
        let limit = history.limit.min(self.limits.history_page) as usize;
        let (range, reverse) = match history.direction {
            Direction::BACKWARD => {
                let before = if history.anchor == 0 {
                    u64::MAX
                } else {
                    history.anchor
                };
                (keys::events(&conv.id, 1, before), true)
            }
            Direction::FORWARD => (
                keys::events(&conv.id, history.anchor.saturating_add(1), u64::MAX),
                false,
            ),
            _ => return Err(Reject::new(ErrorCode::INVALID_REQUEST, "unknown direction")),
        };
        let rows = self.store.range((&range.0, &range.1), reverse, limit + 1)?;
        // Rows come nearest the anchor first: fill the page in that order until the count or
        // the byte budget is reached, so a page of large bodies still fits a client's frame.
        let mut events = Vec::new();
        let mut bytes = 0;
        for (_, value) in rows.iter().take(limit) {
            let event = crate::records::decode::<Event>(value.clone())?;
            bytes += event.encoded_len();
            if !events.is_empty() && bytes > self.limits.history_page_bytes {
                break;
            }
            events.push(event);
        }
        let more = rows.len() > events.len();
        events.sort_by_key(|e| e.seq);
        if history.anchor == 0 && history.direction == Direction::BACKWARD {
            self.send_receipts(client, &conv)?;
        }
        let page = HistoryPage {
            request: history.request,
            conversation: history.conversation,
            more,
            events,
        };
        self.answer(client, page.into());
        Ok(())
    }

    /// TYPING: relayed to the other members' sessions, never stored. TYPING has no answer, so
    /// one from a non-member is dropped silently (`[NWP-6.2.7-2]`).
    pub(super) fn typing(&mut self, client: &Client, typing: Typing) -> Result<(), Reject> {
        let Ok(conv) = self.access(&typing.conversation, &client.user) else {
            return Ok(());
        };
        let update: Frame = TypingUpdate {
            conversation: typing.conversation,
            user: client.user.clone(),
            active: typing.active,
        }
        .into();
        let others = self
            .member_ids(&conv)?
            .into_iter()
            .filter(|u| *u != *client.user)
            .collect();
        self.push_to_members(others, &update);
        Ok(())
    }

    /// Sends `frame` to every session of `users`, through their home brokers.
    pub(super) fn push_to_members(&mut self, users: Vec<String>, frame: &Frame) {
        let Ok(bytes) = frame.to_bytes() else {
            return;
        };
        for (home, users) in self.by_home(users) {
            let push = Push {
                users: users.into_iter().map(Into::into).collect(),
                frame: bytes.clone(),
            };
            self.send(Dest::Node(home), push.into());
        }
    }

    /// Groups users by home broker, in a stable order.
    pub(super) fn by_home(
        &self,
        users: Vec<String>,
    ) -> std::collections::BTreeMap<String, Vec<String>> {
        let mut homes = std::collections::BTreeMap::<String, Vec<String>>::new();
        for user in users {
            homes.entry(self.home(&user)).or_default().push(user);
        }
        homes
    }

    /// FETCH from a home broker replaying an inbox: the events, as they are now.
    pub(super) fn fetch(&mut self, from: &str, fetch: Fetch) -> Result<(), Reject> {
        if let Err(reject) = self.owned(&fetch.conversation) {
            let error = natter_codec::frame::Error::new(fetch.request, reject.code, reject.message);
            self.send(Dest::Node(from.to_string()), error.into());
            return Ok(());
        }
        let mut events = Vec::new();
        for seq in fetch.seqs.iter().take(MAX_FETCH) {
            match self.event(&fetch.conversation, *seq) {
                Ok(Some(event)) => events.push(event),
                Ok(None) => {}
                Err(reject) => {
                    let error =
                        natter_codec::frame::Error::new(fetch.request, reject.code, reject.message);
                    self.send(Dest::Node(from.to_string()), error.into());
                    return Ok(());
                }
            }
        }
        events.sort_by_key(|e| e.seq);
        let answer = Events {
            request: fetch.request,
            conversation: fetch.conversation,
            events,
        };
        self.send(Dest::Node(from.to_string()), answer.into());
        Ok(())
    }
}
