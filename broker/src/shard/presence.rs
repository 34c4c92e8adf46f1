//! Sessions and presence at the home broker: leases renewed by edges (a renewal never
//! writes), online/offline transitions (only going offline writes `last_seen`), interest
//! leases with a TTL, PRESENCE pushed to interested sessions, and PUSH relayed to sessions.

use std::collections::{BTreeMap, BTreeSet};

use natter_codec::frame::{
    Done, Interest, Presence, PresenceSubscribe, Push, Receipt, SessionOpen, Synced,
};
use natter_codec::types::Status;
use natter_codec::{ErrorCode, Frame, FrameType, ids};

use super::{Client, Dest, LinkId, Millis, Reject, Shard};
use crate::keys;

/// A session, by the link of its edge and the edge's session id.
pub(super) type SessionKey = (LinkId, u64);

/// Longest lease an edge may ask for.
const MAX_LEASE_MS: Millis = 5 * 60 * 1000;

/// Where a session's inbox stream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stream {
    /// No RESUME yet: no DELIVER may be sent.
    Idle,
    /// Replaying; live entries wait until the replay catches up.
    Replaying,
    /// Replay done: new entries are pushed as they arrive.
    Live,
}

#[derive(Debug)]
struct Session {
    user: String,
    device: String,
    lease_until: Millis,
    stream: Stream,
}

/// Who watches a user: an edge's session, through a conversation they share (empty for an
/// edge's own lookup). Keyed by conversation so that the end of one membership ends exactly
/// the interests it allowed (`[NWP-7.9-5]`).
type Watcher = (String, u64, String);

/// Sessions, by key and by user, and the interests in each user's presence.
#[derive(Debug, Default)]
pub(super) struct Sessions {
    sessions: BTreeMap<SessionKey, Session>,
    by_user: BTreeMap<String, BTreeSet<SessionKey>>,
    /// user -> watcher -> interest expiry.
    interests: BTreeMap<String, BTreeMap<Watcher, Millis>>,
}

/// A presence subscription as the conversation's owner knows it: the subscriber and until
/// when. In memory only: after a restart, interests end by their TTL.
#[derive(Debug, Clone)]
struct Subscription {
    user: String,
    until: Millis,
}

/// The owner's presence subscriptions: conversation -> (edge, session) -> subscription.
#[derive(Debug, Default)]
pub(super) struct Subscriptions(BTreeMap<String, BTreeMap<(String, u64), Subscription>>);

impl Sessions {
    /// Whether any device of `user` holds a session.
    pub(super) fn is_online(&self, user: &str) -> bool {
        self.by_user.get(user).is_some_and(|s| !s.is_empty())
    }

    /// The sessions of `user` that receive live entries.
    pub(super) fn live(&self, user: &str) -> Vec<SessionKey> {
        self.of(user, |s| s.stream == Stream::Live)
    }

    /// Every session of `user`.
    fn all(&self, user: &str) -> Vec<SessionKey> {
        self.of(user, |_| true)
    }

    fn of(&self, user: &str, filter: impl Fn(&Session) -> bool) -> Vec<SessionKey> {
        self.by_user
            .get(user)
            .into_iter()
            .flatten()
            .filter(|key| self.sessions.get(key).is_some_and(&filter))
            .copied()
            .collect()
    }

    /// Whether `device` of `user` holds a session now.
    pub(super) fn is_connected(&self, user: &str, device: &str) -> bool {
        !self.of(user, |s| s.device == device).is_empty()
    }

    /// Whether the session exists and is `user`'s.
    pub(super) fn belongs_to(&self, key: SessionKey, user: &str) -> bool {
        self.sessions.get(&key).is_some_and(|s| s.user == user)
    }

    pub(super) fn set_stream(&mut self, key: SessionKey, stream: Stream) {
        if let Some(session) = self.sessions.get_mut(&key) {
            session.stream = stream;
        }
    }
}

impl Shard {
    /// SESSION_OPEN: registers a session or renews its lease. A new session is answered
    /// with `SYNCED{request 0, inbox_head}` inside ROUTED: the edge puts that head in READY.
    pub(super) fn session_open(&mut self, link: LinkId, open: SessionOpen) {
        let key = (link, open.session);
        let lease_until = self.now + open.lease_ms.clamp(1_000, MAX_LEASE_MS);
        if let Some(session) = self.sessions.sessions.get_mut(&key) {
            if session.user == *open.user {
                session.lease_until = lease_until;
                return;
            }
        }
        let head = match self.admit(&open) {
            Ok(head) => head,
            Err(reject) => {
                let error = natter_codec::frame::Error::new(0, reject.code, reject.message);
                self.send_to_session(Dest::Link(link), open.session, &error.into());
                return;
            }
        };
        let synced = Synced {
            request: 0,
            inbox_head: head,
        };
        self.send_to_session(Dest::Link(link), open.session, &synced.into());
        self.remove_session(key);
        let user = open.user.to_string();
        let was_online = self.sessions.is_online(&user);
        self.sessions.sessions.insert(
            key,
            Session {
                user: user.clone(),
                device: open.device.to_string(),
                lease_until,
                stream: Stream::Idle,
            },
        );
        self.sessions
            .by_user
            .entry(user.clone())
            .or_default()
            .insert(key);
        if !was_online {
            self.announce(&user);
        }
    }

    /// Checks that a new session may open; returns the user's inbox head.
    fn admit(&self, open: &SessionOpen) -> Result<u64, Reject> {
        if !ids::is_valid_user_id(&open.user) || !ids::is_valid_device_id(&open.device) {
            return Err(Reject::new(
                ErrorCode::INVALID_REQUEST,
                "invalid user or device id",
            ));
        }
        self.check_home(&open.user)?;
        if self.sessions.all(&open.user).len() >= self.limits.sessions_per_user {
            return Err(Reject::new(ErrorCode::LIMIT_EXCEEDED, "too many sessions"));
        }
        Ok(self.inbox_meta(&open.user)?.head)
    }

    /// SESSION_CLOSE: the connection ended.
    pub(super) fn session_close(&mut self, link: LinkId, session: u64) {
        self.remove_session((link, session));
    }

    /// Closes every session of an edge link that went down.
    pub(super) fn close_link_sessions(&mut self, link: LinkId) {
        let keys: Vec<SessionKey> = self
            .sessions
            .sessions
            .keys()
            .filter(|(l, _)| *l == link)
            .copied()
            .collect();
        for key in keys {
            self.remove_session(key);
        }
    }

    fn remove_session(&mut self, key: SessionKey) {
        let Some(session) = self.sessions.sessions.remove(&key) else {
            return;
        };
        self.cancel_replay(key);
        if let Some(keys) = self.sessions.by_user.get_mut(&session.user) {
            keys.remove(&key);
            if keys.is_empty() {
                self.sessions.by_user.remove(&session.user);
            }
        }
        if !self.sessions.is_online(&session.user) {
            self.store
                .put_record(keys::last_seen(&session.user), &self.now);
            self.announce(&session.user);
        }
    }

    /// Ends expired leases and interests.
    pub(super) fn expire_sessions(&mut self) {
        let now = self.now;
        let expired: Vec<SessionKey> = self
            .sessions
            .sessions
            .iter()
            .filter(|(_, s)| s.lease_until <= now)
            .map(|(key, _)| *key)
            .collect();
        for key in expired {
            self.remove_session(key);
        }
        self.sessions.interests.retain(|_, interested| {
            interested.retain(|_, until| *until > now);
            !interested.is_empty()
        });
    }

    /// The presence of a user homed here.
    fn presence_of(&self, user: &str) -> Result<Presence, Reject> {
        if self.sessions.is_online(user) {
            return Ok(Presence {
                user: user.into(),
                status: Status::ONLINE,
                last_seen: self.now,
            });
        }
        let last_seen: u64 = self.store.record(&keys::last_seen(user))?.unwrap_or(0);
        Ok(Presence {
            user: user.into(),
            status: Status::OFFLINE,
            last_seen,
        })
    }

    /// Tells every interested session about a transition of `user`, once per session.
    fn announce(&mut self, user: &str) {
        let Some(interested) = self.sessions.interests.get(user) else {
            return;
        };
        // Expired interests wait for the tick to be removed; they must not hear this one.
        let now = self.now;
        let targets: BTreeSet<(String, u64)> = interested
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|((edge, session, _), _)| (edge.clone(), *session))
            .collect();
        let presence = match self.presence_of(user) {
            Ok(presence) => Frame::from(presence),
            Err(reject) => {
                tracing::error!(?reject, user, "presence unreadable");
                return;
            }
        };
        for (edge, session) in targets {
            self.send_to_session(Dest::Node(edge), session, &presence);
        }
    }

    /// INTEREST from a conversation owner (or an edge for its own lookup): watch some users
    /// for a session, for a while. Nothing bounds interests per watched user, so nobody can
    /// spend another user's quota; the edge bounds them per connection (`[NWP-7.9-6]`).
    pub(super) fn interest(&mut self, interest: Interest) -> Result<(), Reject> {
        let watcher: Watcher = (
            interest.node.to_string(),
            interest.session,
            interest.conversation.to_string(),
        );
        let until = self.now + interest.ttl_ms.min(self.limits.interest_ttl_ms);
        for user in interest.users {
            if !self.is_mine(self.ring.home(&user)) {
                continue;
            }
            if interest.ttl_ms == 0 {
                if let Some(interested) = self.sessions.interests.get_mut(&*user) {
                    interested.remove(&watcher);
                    if interested.is_empty() {
                        self.sessions.interests.remove(&*user);
                    }
                }
                continue;
            }
            self.sessions
                .interests
                .entry(user.to_string())
                .or_default()
                .insert(watcher.clone(), until);
            let presence = self.presence_of(&user)?;
            self.send_to_session(Dest::Node(watcher.0.clone()), watcher.1, &presence.into());
        }
        Ok(())
    }

    /// PRESENCE_SUBSCRIBE at the conversation owner: members only. Interest goes to the home
    /// brokers of the members who have sent to the conversation; the others are UNKNOWN, as
    /// a user who does not exist would be (`[NWP-7.9-4]`).
    pub(super) fn presence_subscribe(
        &mut self,
        client: &Client,
        subscribe: PresenceSubscribe,
    ) -> Result<(), Reject> {
        let conv = self.access(&subscribe.conversation, &client.user)?;
        let others: Vec<String> = self
            .member_ids(&conv)?
            .into_iter()
            .filter(|u| *u != *client.user)
            .collect();
        let ttl_ms = subscribe.ttl_ms.min(self.limits.interest_ttl_ms);
        let watcher = (client.edge.clone(), client.session);
        let subscriptions = self.subscriptions.0.entry(conv.id.clone()).or_default();
        if ttl_ms == 0 {
            subscriptions.remove(&watcher);
            self.watch(&watcher, &conv.id, others, 0);
        } else {
            subscriptions.insert(
                watcher.clone(),
                Subscription {
                    user: client.user.to_string(),
                    until: self.now + ttl_ms,
                },
            );
            let mut visible = Vec::new();
            for user in others {
                if self.has_sent(&conv.id, &user)? {
                    visible.push(user);
                } else {
                    let unknown = Presence {
                        user: user.into(),
                        status: Status::UNKNOWN,
                        last_seen: 0,
                    };
                    self.answer(client, unknown.into());
                }
            }
            self.watch(&watcher, &conv.id, visible, ttl_ms);
        }
        self.answer(
            client,
            Done {
                request: subscribe.request,
            }
            .into(),
        );
        Ok(())
    }

    /// Sends INTEREST for `users` to their home brokers; a TTL of 0 ends it.
    fn watch(
        &mut self,
        watcher: &(String, u64),
        conversation: &str,
        users: Vec<String>,
        ttl_ms: u64,
    ) {
        for (home, users) in self.by_home(users) {
            let interest = Interest {
                node: watcher.0.as_str().into(),
                session: watcher.1,
                ttl_ms,
                users: users.into_iter().map(Into::into).collect(),
                conversation: conversation.into(),
            };
            self.send(Dest::Node(home), interest.into());
        }
    }

    /// Whether a message from `user` would make it visible to someone watching the
    /// conversation now: a read only when someone watches, so the send path pays nothing
    /// otherwise.
    pub(super) fn would_become_visible(
        &self,
        conversation: &str,
        user: &str,
    ) -> Result<bool, Reject> {
        let watched = self
            .subscriptions
            .0
            .get(conversation)
            .is_some_and(|subscriptions| subscriptions.values().any(|s| s.user != user));
        Ok(watched && !self.has_sent(conversation, user)?)
    }

    /// `user` sent its first message to the conversation: whoever watches it there sees the
    /// user from now on, without waiting to renew (`[NWP-7.9-4]`).
    pub(super) fn became_visible(&mut self, conversation: &str, user: &str) {
        let Some(subscriptions) = self.subscriptions.0.get(conversation) else {
            return;
        };
        let now = self.now;
        let watchers: Vec<((String, u64), u64)> = subscriptions
            .iter()
            .filter(|(_, s)| s.user != user && s.until > now)
            .map(|(watcher, s)| (watcher.clone(), s.until - now))
            .collect();
        for (watcher, ttl_ms) in watchers {
            self.watch(&watcher, conversation, vec![user.to_string()], ttl_ms);
        }
    }

    /// Whether `user` has sent to the conversation: what makes its presence visible there.
    fn has_sent(&self, conversation: &str, user: &str) -> Result<bool, Reject> {
        let (start, end) = keys::dedups_of(conversation, user);
        Ok(!self.store.range((&start, &end), false, 1)?.is_empty())
    }

    /// `user` left the conversation: the interests its membership allowed end, both its own
    /// and the others' in it (`[NWP-7.9-5]`).
    pub(super) fn membership_ended(
        &mut self,
        conversation: &str,
        user: &str,
        members: Vec<String>,
    ) {
        let Some(subscriptions) = self.subscriptions.0.get_mut(conversation) else {
            return;
        };
        let (own, others): (Vec<_>, Vec<_>) = std::mem::take(subscriptions)
            .into_iter()
            .partition(|(_, subscription)| subscription.user == user);
        subscriptions.extend(others.iter().cloned());
        for (watcher, _) in own {
            let watched = members.iter().filter(|m| *m != user).cloned().collect();
            self.watch(&watcher, conversation, watched, 0);
        }
        for (watcher, _) in others {
            self.watch(&watcher, conversation, vec![user.to_string()], 0);
        }
    }

    /// Forgets subscriptions whose TTL has passed.
    pub(super) fn expire_subscriptions(&mut self) {
        let now = self.now;
        self.subscriptions.0.retain(|_, subscriptions| {
            subscriptions.retain(|_, subscription| subscription.until > now);
            !subscriptions.is_empty()
        });
    }

    /// PUSH: relay a frame to every session of some users homed here. A RECEIPT about the
    /// user itself also moves the read pointer of their conversation summary.
    pub(super) fn push(&mut self, push: Push) -> Result<(), Reject> {
        let receipt = match natter_codec::frame::peek_type(&push.frame) {
            Ok(FrameType::RECEIPT) => match Frame::decode(push.frame.clone()) {
                Ok(Frame::Receipt(receipt)) => Some(receipt),
                _ => None,
            },
            Ok(_) => None,
            Err(_) => return Err(Reject::new(ErrorCode::PROTOCOL_VIOLATION, "bad PUSH frame")),
        };
        for user in push.users {
            if !self.is_mine(self.ring.home(&user)) {
                continue;
            }
            if let Some(Receipt {
                conversation, read, ..
            }) = receipt.as_ref().filter(|r| r.user == user)
            {
                self.summary_read(&user, conversation, *read)?;
            }
            for (link, session) in self.sessions.all(&user) {
                self.send(
                    Dest::Link(link),
                    super::routed(session, "", "", push.frame.clone()),
                );
            }
        }
        Ok(())
    }
}
