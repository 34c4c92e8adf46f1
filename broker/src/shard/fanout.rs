//! Fan-out at the conversation owner: FANOUT to the members' home brokers, with a durable
//! cursor per conversation and home broker so nothing acknowledged to a sender is lost on
//! the way to an inbox.
//!
//! The recipients homed on the owner itself are written in the same batch as the event, so an
//! accepted message is one durable commit; a cursor is only needed for other home brokers
//! (and, after a restart, for this one until it drains what an older version left pending).
//!
//! A cursor exists only while a home broker has events to acknowledge. The owner keeps at
//! most [`WINDOW`] FANOUTs unacknowledged per cursor; after a restart or when the link to the
//! home broker comes back, it sends again from the acknowledged seq. Home brokers ignore what
//! they already applied, so re-sending is always safe.

use std::collections::BTreeMap;

use natter_codec::frame::{Fanout, FanoutAck};
use natter_codec::types::{ConversationKind, Event};

use super::conversation::Conversation;
use super::{Dest, Millis, Reject, Shard};
use crate::keys;
use crate::records::{self, ConvMeta};
use crate::storage::StorageError;

/// Most FANOUTs in flight per conversation and home broker.
const WINDOW: u64 = 256;
/// FANOUTs unacknowledged this long are sent again: an ack can be lost when the home
/// broker's own link back to this one is down while this one's link to it is up.
const RETRANSMIT_MS: Millis = 5_000;

#[derive(Debug, Clone, Copy)]
struct Cursor {
    /// Everything up to here is in the home broker's inboxes (durable).
    acked: u64,
    /// Everything up to here was sent on the current link.
    sent: u64,
    /// When the cursor last moved or was (re)sent.
    progress: Millis,
}

/// The pending fan-out cursors, keyed by (conversation, home broker).
#[derive(Debug, Default)]
pub(super) struct Cursors {
    pending: BTreeMap<(String, String), Cursor>,
}

impl Cursors {
    /// Loads every pending cursor; all of them are re-sent as their links come up.
    pub(super) fn load(store: &super::Store, now: Millis) -> Result<Self, StorageError> {
        let (start, end) = keys::fanouts();
        let mut pending = BTreeMap::new();
        for (key, value) in store.range((&start, &end), false, usize::MAX)? {
            let parsed = keys::fanout_parts(&key).zip(records::decode::<u64>(value).ok());
            match parsed {
                Some(((conv, node), acked)) => {
                    let cursor = Cursor {
                        acked,
                        sent: acked,
                        progress: now,
                    };
                    pending.insert((conv.to_string(), node.to_string()), cursor);
                }
                None => tracing::error!(?key, "corrupt fan-out cursor skipped"),
            }
        }
        Ok(Self { pending })
    }
}

impl Shard {
    /// Who gets an event: whoever was a member at its seq (a removed member gets its own
    /// removal), however membership changed since.
    fn recipients(&self, conv: &Conversation, event: &Event) -> Result<Vec<String>, Reject> {
        Ok(self
            .members(conv)?
            .into_iter()
            .filter(|(_, m)| m.joined <= event.seq && (m.left == 0 || event.seq <= m.left))
            .map(|(user, _)| user)
            .collect())
    }

    /// Whether a conversation fans out on write (inbox entries) or on read (live pushes).
    fn fans_out_on_write(&self, meta: &ConvMeta) -> bool {
        meta.kind == ConversationKind::DIRECT
            || meta.members as usize <= self.limits.fanout_threshold
    }

    /// Sends a new event towards its recipients' home brokers.
    ///
    /// A home broker that still has a cursor gets the event through it even when the group
    /// now fans out on read, so that one home broker never sees a conversation's events out
    /// of order.
    pub(super) fn fan_out(&mut self, conv: &Conversation, event: &Event) -> Result<(), Reject> {
        let users = self.recipients(conv, event)?;
        let on_write = self.fans_out_on_write(&conv.meta);
        for (home, users) in self.by_home(users) {
            let key = (conv.id.clone(), home.clone());
            let pending = self.fanout.pending.contains_key(&key);
            if home == self.node && !pending {
                // This node's own inboxes are written in the batch that appends the event:
                // one durable commit per message, no cursor, no FANOUT to itself.
                let fanout = Fanout {
                    conversation: conv.id.clone().into(),
                    inbox: on_write,
                    users: users.into_iter().map(Into::into).collect(),
                    event: event.clone(),
                };
                self.write_inboxes(&fanout)?;
                continue;
            }
            if !on_write && !pending {
                let fanout = Fanout {
                    conversation: conv.id.clone().into(),
                    inbox: false,
                    users: users.into_iter().map(Into::into).collect(),
                    event: event.clone(),
                };
                self.send(Dest::Node(home), fanout.into());
                continue;
            }
            if !pending {
                let start = event.seq - 1;
                self.store.put_record(keys::fanout(&conv.id, &home), &start);
                self.fanout.pending.insert(
                    key,
                    Cursor {
                        acked: start,
                        sent: start,
                        progress: self.now,
                    },
                );
            }
            self.pump(&conv.id, &home)?;
        }
        Ok(())
    }

    /// Sends what the window allows of a cursor's unsent events.
    fn pump(&mut self, conversation: &str, home: &str) -> Result<(), Reject> {
        if home != self.node && !self.routes.contains_key(home) {
            return Ok(());
        }
        let key = (conversation.to_string(), home.to_string());
        let Some(mut cursor) = self.fanout.pending.get(&key).copied() else {
            return Ok(());
        };
        let meta: ConvMeta = self
            .store
            .record(&keys::conversation(conversation))?
            .unwrap_or_default();
        let conv = Conversation {
            id: conversation.to_string(),
            meta,
            role: None,
        };
        if cursor.sent == cursor.acked {
            // Nothing was in flight: the retransmission clock starts now.
            cursor.progress = self.now;
        }
        while cursor.sent < conv.meta.head && cursor.sent - cursor.acked < WINDOW {
            cursor.sent += 1;
            let Some(event) = self.event(conversation, cursor.sent)? else {
                continue;
            };
            let users: Vec<_> = self
                .recipients(&conv, &event)?
                .into_iter()
                .filter(|user| self.home(user) == home)
                .map(Into::into)
                .collect();
            let fanout = Fanout {
                conversation: conversation.into(),
                inbox: true,
                users,
                event,
            };
            self.send(Dest::Node(home.to_string()), fanout.into());
        }
        self.fanout.pending.insert(key, cursor);
        Ok(())
    }

    /// FANOUT_ACK: the home broker applied everything up to `seq` durably.
    pub(super) fn fanout_acked(&mut self, from: &str, ack: FanoutAck) -> Result<(), Reject> {
        let key = (ack.conversation.to_string(), from.to_string());
        let Some(cursor) = self.fanout.pending.get_mut(&key) else {
            return Ok(());
        };
        if ack.seq <= cursor.acked || ack.seq > cursor.sent {
            return Ok(());
        }
        cursor.acked = ack.seq;
        cursor.progress = self.now;
        let acked = cursor.acked;
        let head = self
            .store
            .record::<ConvMeta>(&keys::conversation(&ack.conversation))?
            .map_or(0, |meta| meta.head);
        let store_key = keys::fanout(&ack.conversation, from);
        if acked >= head {
            self.fanout.pending.remove(&key);
            self.store.delete(store_key);
            return Ok(());
        }
        self.store.put_record(store_key, &acked);
        self.pump(&ack.conversation, from)
    }

    /// The link to `home` came (back) up: send again everything it has not acknowledged.
    pub(super) fn resend_fanout(&mut self, home: &str) {
        self.resend_where(|node, _| node == home);
    }

    /// Sends again what has waited too long for its FANOUT_ACK.
    pub(super) fn retransmit_fanout(&mut self) {
        let now = self.now;
        self.resend_where(|_, cursor| {
            cursor.sent > cursor.acked && cursor.progress + RETRANSMIT_MS <= now
        });
    }

    fn resend_where(&mut self, resend: impl Fn(&str, &Cursor) -> bool) {
        let now = self.now;
        let targets: Vec<(String, String)> = self
            .fanout
            .pending
            .iter_mut()
            .filter(|((_, node), cursor)| resend(node, cursor))
            .map(|(key, cursor)| {
                cursor.sent = cursor.acked;
                cursor.progress = now;
                key.clone()
            })
            .collect();
        for (conv, home) in targets {
            if let Err(reject) = self.pump(&conv, &home) {
                tracing::error!(?reject, conv, "fan-out resend failed");
            }
        }
    }
}
