//! Inboxes at the user's home broker: FANOUT applied as entries, RESUME replay with bodies
//! fetched from the owners, cumulative device acks, delivered receipts derived from them,
//! and pruning.

use std::collections::{BTreeMap, HashMap, HashSet};

use natter_codec::frame::{Deliver, Events, Fanout, FanoutAck, Fetch, Gap, Mark, Resume, Synced};
use natter_codec::types::{Event, Marker};
use natter_codec::{ErrorCode, Frame, Text};

use super::presence::{SessionKey, Stream};
use super::{Client, Dest, Millis, Reject, Shard, routed};
use crate::keys;
use crate::records::{self, DeviceAck, InboxEntry, InboxMeta};

/// How long a replay page waits for the owners' EVENTS.
const FETCH_TIMEOUT_MS: Millis = 10_000;
/// Dirty device acks kept before they are written without waiting for the tick.
const MAX_DIRTY_ACKS: usize = 4096;
/// Most entries one ack scans to derive delivered receipts, and one prune deletes.
const MAX_SCAN: usize = 1024;

/// A RESUME in progress: one page of entries at a time, waiting for its events.
#[derive(Debug)]
struct Replay {
    request: u64,
    user: Text,
    /// The newest inbox_seq delivered so far.
    next: u64,
    page: Vec<(u64, InboxEntry)>,
    events: HashMap<(Text, u64), Event>,
    waiting: HashSet<u64>,
    deadline: Millis,
}

/// Replays in progress, by session, and the FETCHes they wait for.
#[derive(Debug, Default)]
pub(super) struct Replays {
    active: BTreeMap<SessionKey, Replay>,
    fetches: HashMap<u64, SessionKey>,
}

/// Device acks not written yet: acks are frequent, so they are coalesced per tick.
#[derive(Debug, Default)]
pub(super) struct Acks {
    dirty: BTreeMap<(Text, Text), DeviceAck>,
}

impl Shard {
    pub(super) fn inbox_meta(&self, user: &str) -> Result<InboxMeta, Reject> {
        let meta: Option<InboxMeta> = self.store.record(&keys::inbox(user))?;
        Ok(meta.unwrap_or(InboxMeta { head: 0, first: 1 }))
    }

    /// FANOUT from a conversation owner: append inbox entries (or only push live), then ack.
    pub(super) fn apply_fanout(&mut self, from: &str, fanout: Fanout) -> Result<(), Reject> {
        self.write_inboxes(&fanout)?;
        if fanout.inbox {
            let ack = FanoutAck {
                conversation: fanout.conversation,
                seq: fanout.event.seq,
            };
            self.send(Dest::Node(from.to_string()), ack.into());
        }
        Ok(())
    }

    /// Appends an event to the inboxes (or, for fan-out on read, the summaries) of the
    /// recipients homed here, and pushes it to their live sessions once durable.
    pub(super) fn write_inboxes(&mut self, fanout: &Fanout) -> Result<(), Reject> {
        let conversation = &fanout.conversation;
        let event = &fanout.event;
        for user in &fanout.users {
            if !self.is_mine(self.ring.home(user)) {
                continue;
            }
            if !fanout.inbox {
                // Fan-out on read stores no inbox entry, but CONVERSATIONS must still show the
                // group's newest seq and unread count, as for any other conversation.
                self.summarize(user, conversation, event)?;
                self.deliver_live(user, 0, conversation, event);
                continue;
            }
            let applied_key = keys::applied(user, conversation);
            let applied: u64 = self.store.record(&applied_key)?.unwrap_or(0);
            if event.seq <= applied {
                continue;
            }
            self.store.put_record(applied_key, &event.seq);
            let mut meta = self.inbox_meta(user)?;
            meta.head += 1;
            let entry = InboxEntry {
                conversation: conversation.clone(),
                seq: event.seq,
                kind: event.kind,
                added: self.now,
            };
            self.store.put_record(keys::entry(user, meta.head), &entry);
            self.store.put_record(keys::inbox(user), &meta);
            self.summarize(user, conversation, event)?;
            self.deliver_live(user, meta.head, conversation, event);
            if !self.sessions.is_online(user) {
                self.notify_offline(user, conversation, event.seq, meta.head)?;
            }
        }
        Ok(())
    }

    /// Pushes a DELIVER to every session of `user` that finished its replay.
    fn deliver_live(&mut self, user: &str, inbox_seq: u64, conversation: &Text, event: &Event) {
        let deliver: Frame = Deliver {
            inbox_seq,
            conversation: conversation.clone(),
            event: event.clone(),
        }
        .into();
        for (link, session) in self.sessions.live(user) {
            self.send_to_session(Dest::Link(link), session, &deliver);
        }
    }

    /// RESUME: a GAP if entries after `after` were pruned, the replay, SYNCED, then live.
    pub(super) fn resume(&mut self, client: &Client, resume: Resume) -> Result<(), Reject> {
        self.check_home(&client.user)?;
        let key = (client.link, client.session);
        if !self.sessions.belongs_to(key, &client.user) {
            return Err(Reject::new(
                ErrorCode::UNKNOWN_SESSION,
                "RESUME before SESSION_OPEN",
            ));
        }
        let meta = self.inbox_meta(&client.user)?;
        let mut after = resume.after.min(meta.head);
        if after + 1 < meta.first {
            let gap = Gap {
                conversation: "".into(),
                from: after + 1,
                to: meta.first - 1,
            };
            self.answer(client, gap.into());
            after = meta.first - 1;
        }
        self.note_ack(&client.user, &client.device, after)?;
        self.cancel_replay(key);
        self.sessions.set_stream(key, Stream::Replaying);
        let replay = Replay {
            request: resume.request,
            user: client.user.clone(),
            next: after,
            page: Vec::new(),
            events: HashMap::new(),
            waiting: HashSet::new(),
            deadline: self.now + FETCH_TIMEOUT_MS,
        };
        self.replays.active.insert(key, replay);
        self.replay_page(key)
    }

    /// Loads the next page of a replay and asks the owners for its events, or ends it.
    fn replay_page(&mut self, key: SessionKey) -> Result<(), Reject> {
        let Some(replay) = self.replays.active.get(&key) else {
            return Ok(());
        };
        let (user, next, request) = (replay.user.clone(), replay.next, replay.request);
        let meta = self.inbox_meta(&user)?;
        let (start, end) = keys::entries(&user, next + 1, meta.head + 1);
        let rows = self
            .store
            .range((&start, &end), false, self.limits.replay_page)?;
        if rows.is_empty() {
            self.replays.active.remove(&key);
            self.sessions.set_stream(key, Stream::Live);
            let synced = Synced {
                request,
                inbox_head: next,
            };
            self.send_to_session(Dest::Link(key.0), key.1, &synced.into());
            return Ok(());
        }
        let mut page = Vec::with_capacity(rows.len());
        let mut wanted: BTreeMap<Text, Vec<u64>> = BTreeMap::new();
        for (key, value) in rows {
            let inbox_seq = keys::entry_seq(&key).ok_or(records::Corrupt)?;
            let entry: InboxEntry = records::decode(value)?;
            wanted
                .entry(entry.conversation.clone())
                .or_default()
                .push(entry.seq);
            page.push((inbox_seq, entry));
        }
        let mut waiting = HashSet::new();
        for (conversation, seqs) in wanted {
            let request = self.request_id();
            waiting.insert(request);
            self.replays.fetches.insert(request, key);
            let owner = self.owner(&conversation);
            let fetch = Fetch {
                request,
                conversation,
                seqs,
            };
            self.send(Dest::Node(owner), fetch.into());
        }
        let deadline = self.now + FETCH_TIMEOUT_MS;
        if let Some(replay) = self.replays.active.get_mut(&key) {
            replay.page = page;
            replay.waiting = waiting;
            replay.deadline = deadline;
        }
        Ok(())
    }

    /// EVENTS from an owner: once a page has all its events, deliver it and go on.
    pub(super) fn events(&mut self, events: Events) -> Result<(), Reject> {
        let Some(key) = self.replays.fetches.remove(&events.request) else {
            return Ok(());
        };
        let Some(replay) = self.replays.active.get_mut(&key) else {
            return Ok(());
        };
        if !replay.waiting.remove(&events.request) {
            return Ok(());
        }
        for event in events.events {
            replay
                .events
                .insert((events.conversation.clone(), event.seq), event);
        }
        if !replay.waiting.is_empty() {
            return Ok(());
        }
        let page = std::mem::take(&mut replay.page);
        let mut found = std::mem::take(&mut replay.events);
        if let Some((last, _)) = page.last() {
            replay.next = *last;
        }
        for (inbox_seq, entry) in page {
            let frame: Frame = match found.remove(&(entry.conversation.clone(), entry.seq)) {
                Some(event) => Deliver {
                    inbox_seq,
                    conversation: entry.conversation,
                    event,
                }
                .into(),
                // The owner no longer has it (it never should): say so rather than skip it.
                None => Gap {
                    conversation: entry.conversation,
                    from: entry.seq,
                    to: entry.seq,
                }
                .into(),
            };
            self.send_to_session(Dest::Link(key.0), key.1, &frame);
        }
        self.replay_page(key)
    }

    /// An owner refused a FETCH: the RESUME fails and the client retries.
    pub(super) fn fetch_failed(&mut self, request: u64) {
        if let Some(key) = self.replays.fetches.remove(&request) {
            self.fail_replay(key);
        }
    }

    fn fail_replay(&mut self, key: SessionKey) {
        if let Some(replay) = self.replays.active.remove(&key) {
            for request in &replay.waiting {
                self.replays.fetches.remove(request);
            }
            self.sessions.set_stream(key, Stream::Idle);
            let error = natter_codec::frame::Error {
                request: replay.request,
                code: ErrorCode::UNAVAILABLE,
                retry_after_ms: 1_000,
                message: "a conversation owner did not answer".into(),
            };
            self.send_to_session(Dest::Link(key.0), key.1, &error.into());
        }
    }

    /// Drops a session's replay (it resumed again or closed).
    pub(super) fn cancel_replay(&mut self, key: SessionKey) {
        if let Some(replay) = self.replays.active.remove(&key) {
            for request in replay.waiting {
                self.replays.fetches.remove(&request);
            }
        }
    }

    /// Fails the replays whose owners did not answer in time.
    pub(super) fn expire_replays(&mut self) {
        let now = self.now;
        let late: Vec<SessionKey> = self
            .replays
            .active
            .iter()
            .filter(|(_, r)| r.deadline <= now && !r.waiting.is_empty())
            .map(|(key, _)| *key)
            .collect();
        for key in late {
            self.fail_replay(key);
        }
    }

    fn device_ack(&self, user: &Text, device: &Text) -> Result<DeviceAck, Reject> {
        if let Some(ack) = self.acks.dirty.get(&(user.clone(), device.clone())) {
            return Ok(ack.clone());
        }
        Ok(self
            .store
            .record(&keys::device(user, device))?
            .unwrap_or_default())
    }

    /// Records that a device processed everything up to `acked` (never moving back).
    fn note_ack(&mut self, user: &Text, device: &Text, acked: u64) -> Result<u64, Reject> {
        let mut ack = self.device_ack(user, device)?;
        let previous = ack.acked;
        ack.acked = ack.acked.max(acked);
        ack.seen = self.now;
        self.acks.dirty.insert((user.clone(), device.clone()), ack);
        if self.acks.dirty.len() >= MAX_DIRTY_ACKS {
            self.flush_acks();
        }
        Ok(previous)
    }

    /// ACK: cumulative per device; the entries it covers become delivered receipts.
    pub(super) fn ack(&mut self, client: &Client, inbox_seq: u64) -> Result<(), Reject> {
        self.check_home(&client.user)?;
        let head = self.inbox_meta(&client.user)?.head;
        let acked = inbox_seq.min(head);
        let previous = self.note_ack(&client.user, &client.device, acked)?;
        if acked <= previous {
            return Ok(());
        }
        let from = (previous + 1).max(acked.saturating_sub(MAX_SCAN as u64 - 1));
        let (start, end) = keys::entries(&client.user, from, acked + 1);
        let mut delivered: BTreeMap<Text, u64> = BTreeMap::new();
        for (_, value) in self.store.range((&start, &end), false, MAX_SCAN)? {
            let entry: InboxEntry = records::decode(value)?;
            let seq = delivered.entry(entry.conversation).or_default();
            *seq = (*seq).max(entry.seq);
        }
        for (conversation, seq) in delivered {
            let owner = self.owner(&conversation);
            let mark = Mark {
                request: 0,
                conversation,
                marker: Marker::DELIVERED,
                seq,
            };
            match Frame::from(mark).to_bytes() {
                Ok(bytes) => self.send(Dest::Node(owner), routed(0, &client.user, "", bytes)),
                Err(error) => tracing::error!(?error, "unencodable MARK"),
            }
        }
        Ok(())
    }

    /// Writes the coalesced acks and prunes the inboxes they touched.
    pub(super) fn flush_acks(&mut self) {
        let dirty = std::mem::take(&mut self.acks.dirty);
        let mut users = std::collections::BTreeSet::new();
        for ((user, device), ack) in dirty {
            self.store.put_record(keys::device(&user, &device), &ack);
            users.insert(user);
        }
        for user in users {
            if let Err(reject) = self.prune(&user) {
                tracing::error!(?reject, %user, "inbox prune failed");
            }
        }
    }

    /// Deletes entries every connected or recently seen device has acked and that are older
    /// than the retention window. Devices unseen for longer than the window no longer hold
    /// entries back.
    fn prune(&mut self, user: &str) -> Result<(), Reject> {
        let retention = self.limits.retention_ms;
        let (start, end) = keys::devices(user);
        let mut floor = u64::MAX;
        for (key, value) in self.store.range((&start, &end), false, MAX_SCAN)? {
            let device: DeviceAck = records::decode(value)?;
            let connected =
                keys::device_id(&key).is_some_and(|d| self.sessions.is_connected(user, d));
            if connected || device.seen.saturating_add(retention) > self.now {
                floor = floor.min(device.acked);
            }
        }
        let mut meta = self.inbox_meta(user)?;
        let last = floor.min(meta.head);
        if last < meta.first {
            return Ok(());
        }
        let (start, end) = keys::entries(user, meta.first, last + 1);
        let mut first = meta.first;
        for (key, value) in self.store.range((&start, &end), false, MAX_SCAN)? {
            let entry: InboxEntry = records::decode(value)?;
            if entry.added.saturating_add(retention) > self.now {
                break;
            }
            first = keys::entry_seq(&key).ok_or(records::Corrupt)? + 1;
            self.store.delete(key);
        }
        if first != meta.first {
            meta.first = first;
            self.store.put_record(keys::inbox(user), &meta);
        }
        Ok(())
    }
}
