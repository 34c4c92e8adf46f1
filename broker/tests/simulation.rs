//! Deterministic simulation: three brokers on a ring, one edge, many users and devices,
//! direct conversations and groups (one above the fan-out threshold), pipelined sends,
//! edits, deletes, marks, acks, disconnects, resumes and broker crashes, all driven by a
//! seeded RNG. Invariants are checked after every step and once the cluster is quiet.
//!
//! `SIM_SEEDS=n` runs seeds 0..n (default 2000), `SIM_SEED=s` runs only seed `s`, and
//! `SIM_STEPS=n` sets the steps per seed (default 120). A failure prints its seed.

// Test code: a panic is a failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use harness::Cluster;
use natter_broker::storage::Storage;
use natter_codec::field::Field;
use natter_codec::frame::{Ack, GroupCreate, GroupUpdate, Mark, Resume, Send};
use natter_codec::types::{Event, EventKind, GroupOp, Marker, MemberChange, Role};
use natter_codec::{ErrorCode, Frame, ids};

/// Fan-out threshold in the simulation: groups above it fan out on read.
const THRESHOLD: usize = 4;

/// SplitMix64: small, fast and the same everywhere, so a seed replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.below(items.len())])
    }
}

#[derive(Debug, Clone)]
enum Request {
    Send(Send),
    Resume,
    Group {
        conversation: String,
        op: GroupOp,
        user: String,
    },
    Other,
}

#[derive(Debug, Default)]
struct Device {
    user: String,
    name: String,
    session: Option<u64>,
    /// The newest inbox_seq received without a hole in the current stream.
    inbox: u64,
    /// The newest inbox_seq acknowledged.
    acked: u64,
    needs_resume: bool,
    resuming: bool,
    next_id: u64,
    pending: BTreeMap<u64, Request>,
    /// Sends to retry after UNAVAILABLE.
    retry: Vec<Send>,
    /// Seqs received per conversation.
    seen: BTreeMap<String, BTreeSet<u64>>,
    receipts: BTreeMap<(String, String), (u64, u64)>,
}

#[derive(Debug, Clone)]
struct Conversation {
    id: String,
    members: BTreeSet<String>,
    owner: Option<String>,
    large: bool,
    /// Members at creation: GROUP_CREATED and their MEMBER_ADDED events reach them all.
    founders: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Acked {
    conversation: String,
    seq: u64,
    user: String,
    device: String,
    client_msg_id: u64,
}

struct Sim {
    seed: u64,
    rng: Rng,
    c: Cluster,
    devices: Vec<Device>,
    conversations: Vec<Conversation>,
    acked: Vec<Acked>,
    /// Messages each user sent and got acked, for edits and deletes.
    own: BTreeMap<String, Vec<(String, u64)>>,
}

fn event_key(conversation: &str, seq: u64) -> Vec<u8> {
    // The documented key layout: table 0x02, length-prefixed id, big-endian seq.
    let mut key = vec![0x02, conversation.len() as u8];
    key.extend_from_slice(conversation.as_bytes());
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut rng = Rng(seed);
        let c = Cluster::new(3, |config| {
            config.limits.fanout_threshold = THRESHOLD;
            // Few ring points keep the many restarts cheap; placement logic is the same.
            config.cluster.vnodes = 8;
        });
        let users: Vec<String> = (0..7).map(|i| format!("u{i}")).collect();
        let mut devices = Vec::new();
        for user in &users {
            for d in 0..1 + rng.below(2) {
                devices.push(Device {
                    user: user.clone(),
                    name: format!("d{d}"),
                    next_id: 1,
                    ..Device::default()
                });
            }
        }
        let mut sim = Self {
            seed,
            rng,
            c,
            devices,
            conversations: Vec::new(),
            acked: Vec::new(),
            own: BTreeMap::new(),
        };
        for index in 0..sim.devices.len() {
            sim.connect(index);
        }
        sim.settle_and_process();
        for _ in 0..4 {
            let a = sim.rng.pick(&users).unwrap().clone();
            let b = sim.rng.pick(&users).unwrap().clone();
            if a != b {
                let id = ids::direct_conversation(&a, &b);
                if !sim.conversations.iter().any(|c| c.id == id) {
                    sim.conversations.push(Conversation {
                        id,
                        members: [a, b].into(),
                        owner: None,
                        large: false,
                        founders: 2,
                    });
                }
            }
        }
        sim.create_group(&users[..3]);
        sim.create_group(&users[2..4]);
        sim.create_group(&users[1..7]);
        sim
    }

    fn create_group(&mut self, members: &[String]) {
        let owner = self
            .devices
            .iter()
            .position(|d| d.user == members[0])
            .unwrap();
        let session = self.devices[owner].session.unwrap();
        let create = GroupCreate {
            request: 10_000,
            title: "g".into(),
            members: members[1..].iter().map(|m| m.as_str().into()).collect(),
        };
        self.c.request(session, create);
        self.c.settle();
        let frames = self.c.take(session);
        let id = frames
            .iter()
            .find_map(|f| match f {
                Frame::GroupInfo(info) => Some(info.conversation.to_string()),
                _ => None,
            })
            .unwrap_or_else(|| self.fail(&format!("GROUP_CREATE failed: {frames:?}")));
        for frame in frames {
            self.observe(owner, frame);
        }
        self.conversations.push(Conversation {
            id,
            members: members.iter().cloned().collect(),
            owner: Some(members[0].clone()),
            large: members.len() > THRESHOLD,
            founders: members.len() as u64,
        });
        self.settle_and_process();
    }

    fn fail(&self, what: &str) -> ! {
        die(self.seed, what)
    }

    fn connect(&mut self, index: usize) {
        let device = &self.devices[index];
        let session = self.c.connect(&device.user.clone(), &device.name.clone());
        let device = &mut self.devices[index];
        device.session = Some(session);
        device.pending.clear();
        device.resuming = false;
        device.needs_resume = true;
        self.resume(index);
    }

    fn resume(&mut self, index: usize) {
        let device = &mut self.devices[index];
        let Some(session) = device.session else {
            return;
        };
        if device.resuming || !device.needs_resume {
            return;
        }
        device.needs_resume = false;
        device.resuming = true;
        device.inbox = device.acked;
        let request = device.next_id;
        device.next_id += 1;
        device.pending.insert(request, Request::Resume);
        let after = device.acked;
        self.c.request(session, Resume { request, after });
    }

    fn disconnect(&mut self, index: usize) {
        if let Some(session) = self.devices[index].session.take() {
            self.c.disconnect(session);
            let device = &mut self.devices[index];
            let sends: Vec<Send> = std::mem::take(&mut device.pending)
                .into_values()
                .filter_map(|r| match r {
                    Request::Send(send) => Some(send),
                    _ => None,
                })
                .collect();
            device.retry.extend(sends);
            device.resuming = false;
        }
    }

    fn send(&mut self, index: usize, mut send: Send) {
        let device = &mut self.devices[index];
        let Some(session) = device.session else {
            device.retry.push(send);
            return;
        };
        send.request = device.next_id;
        device.next_id += 1;
        device
            .pending
            .insert(send.request, Request::Send(send.clone()));
        self.c.request(session, send);
    }

    fn new_send(&mut self, index: usize, conversation: &str, kind: EventKind, target: u64) {
        let device = &mut self.devices[index];
        let client_msg_id = device.next_id;
        device.next_id += 1;
        let body = format!("{}/{}/{client_msg_id}", device.user, device.name);
        let send = Send {
            request: 0,
            conversation: conversation.into(),
            client_msg_id,
            kind,
            target,
            content_type: "".into(),
            body: if kind == EventKind::DELETE {
                Bytes::new()
            } else {
                Bytes::from(body)
            },
        };
        self.send(index, send);
    }

    fn committed(&self, conversation: &str, seq: u64) -> Option<Event> {
        let owner = self.c.owner(conversation);
        let value = self.c.nodes[owner]
            .storage
            .get(&event_key(conversation, seq))
            .unwrap_or_else(|e| self.fail(&format!("storage: {e}")))?;
        let mut value = value;
        Some(Event::decode(&mut value).unwrap_or_else(|_| self.fail("undecodable event")))
    }

    /// Processes what every session received, checking the per-frame invariants.
    fn process(&mut self) {
        for index in 0..self.devices.len() {
            let Some(session) = self.devices[index].session else {
                continue;
            };
            for frame in self.c.take(session) {
                self.observe(index, frame);
            }
        }
    }

    fn observe(&mut self, index: usize, frame: Frame) {
        let who = format!("{}/{}", self.devices[index].user, self.devices[index].name);
        match frame {
            Frame::SendAck(ack) => {
                let Some(Request::Send(send)) = self.devices[index].pending.remove(&ack.request)
                else {
                    return self.answer_done(index, ack.request);
                };
                let Some(event) = self.committed(&send.conversation, ack.seq) else {
                    self.fail(&format!(
                        "{who}: SEND_ACK seq {} before it was durable",
                        ack.seq
                    ))
                };
                let device = &self.devices[index];
                if event.sender != device.user.as_str()
                    || event.device != device.name.as_str()
                    || event.client_msg_id != send.client_msg_id
                {
                    self.fail(&format!("{who}: acked seq {} holds {event:?}", ack.seq));
                }
                let acked = Acked {
                    conversation: send.conversation.to_string(),
                    seq: ack.seq,
                    user: device.user.clone(),
                    device: device.name.clone(),
                    client_msg_id: send.client_msg_id,
                };
                if let Some(first) = self.acked.iter().find(|a| {
                    a.user == acked.user
                        && a.device == acked.device
                        && a.client_msg_id == acked.client_msg_id
                }) {
                    if first.seq != acked.seq {
                        self.fail(&format!(
                            "{who}: retry got seq {} then {}",
                            first.seq, acked.seq
                        ));
                    }
                } else {
                    if send.kind == EventKind::MESSAGE {
                        self.own
                            .entry(acked.user.clone())
                            .or_default()
                            .push((acked.conversation.clone(), acked.seq));
                    }
                    self.acked.push(acked);
                }
            }
            Frame::Error(error) => {
                let request = self.devices[index].pending.remove(&error.request);
                match (request, error.code) {
                    (Some(Request::Send(send)), ErrorCode::UNAVAILABLE) => {
                        self.devices[index].retry.push(send);
                    }
                    (Some(Request::Resume), ErrorCode::UNAVAILABLE) => {
                        let device = &mut self.devices[index];
                        device.resuming = false;
                        device.needs_resume = true;
                    }
                    (
                        Some(Request::Send(_) | Request::Group { .. } | Request::Other),
                        ErrorCode::NOT_FOUND | ErrorCode::FORBIDDEN | ErrorCode::CONFLICT,
                    ) => {}
                    (_, ErrorCode::UNAVAILABLE) => {}
                    (request, code) => self.fail(&format!(
                        "{who}: unexpected {code:?} for {request:?}: {error:?}"
                    )),
                }
            }
            Frame::Deliver(deliver) => {
                let conversation = deliver.conversation.to_string();
                let seq = deliver.event.seq;
                if self.committed(&conversation, seq).is_none() {
                    self.fail(&format!(
                        "{who}: DELIVER of {conversation}#{seq} before durable"
                    ));
                }
                let device = &mut self.devices[index];
                if deliver.inbox_seq != 0 {
                    if deliver.inbox_seq != device.inbox + 1 {
                        let expected = device.inbox + 1;
                        die(
                            self.seed,
                            &format!(
                                "{who}: inbox_seq {} after {} (expected {expected})",
                                deliver.inbox_seq, device.inbox
                            ),
                        );
                    }
                    device.inbox = deliver.inbox_seq;
                }
                let seen = device.seen.entry(conversation.clone()).or_default();
                let newest = seen.last().copied().unwrap_or(0);
                if !seen.contains(&seq) && seq < newest {
                    eprintln!("DEBUG deliver {deliver:?}");
                    self.fail(&format!(
                        "{who}: {conversation}#{seq} arrived after #{newest}"
                    ));
                }
                seen.insert(seq);
            }
            // The answer to SESSION_OPEN, for the edge's READY.
            Frame::Synced(synced) if synced.request == 0 => {}
            Frame::Synced(synced) => {
                let device = &mut self.devices[index];
                device.pending.remove(&synced.request);
                device.resuming = false;
                if synced.inbox_head != device.inbox {
                    let inbox = device.inbox;
                    self.fail(&format!(
                        "{who}: SYNCED at {} but replayed to {inbox}",
                        synced.inbox_head
                    ));
                }
            }
            Frame::Gap(gap) => self.fail(&format!("{who}: unexpected {gap:?}")),
            Frame::Receipt(receipt) => {
                let key = (receipt.conversation.to_string(), receipt.user.to_string());
                let device = &mut self.devices[index];
                let old = device
                    .receipts
                    .insert(key.clone(), (receipt.delivered, receipt.read));
                if let Some((delivered, read)) = old {
                    if receipt.read < read || receipt.delivered < delivered {
                        self.fail(&format!(
                            "{who}: receipt {key:?} went back: {old:?} -> {receipt:?}"
                        ));
                    }
                }
            }
            Frame::GroupInfo(_) | Frame::Done(_) => {
                if let Some(request) = frame.request() {
                    self.answer_done(index, request);
                }
            }
            _ => {}
        }
    }

    fn answer_done(&mut self, index: usize, request: u64) {
        if let Some(Request::Group {
            conversation,
            op,
            user,
        }) = self.devices[index].pending.remove(&request)
        {
            if let Some(conv) = self.conversations.iter_mut().find(|c| c.id == conversation) {
                match op {
                    GroupOp::ADD => conv.members.insert(user),
                    _ => conv.members.remove(&user),
                };
            }
        }
    }

    fn settle_and_process(&mut self) {
        loop {
            self.c.settle();
            self.process();
            if self.c.busy_channels().is_empty()
                && (0..self.c.len()).all(|i| self.c.pending_commits(i) == 0)
            {
                return;
            }
        }
    }

    fn step(&mut self) {
        let roll = self.rng.below(1000);
        let device = self.rng.below(self.devices.len());
        match roll {
            0..400 => {
                let channels = self.c.busy_channels();
                if let Some(channel) = self.rng.pick(&channels).copied() {
                    self.c.deliver(channel);
                }
            }
            400..550 => {
                let broker = self.rng.below(self.c.len());
                let pending = self.c.pending_commits(broker);
                if pending > 0 && self.c.is_up(broker) {
                    let count = 1 + self.rng.below(pending);
                    self.c.commit(broker, count);
                }
            }
            550..720 => {
                let user = self.devices[device].user.clone();
                let convs: Vec<String> = self
                    .conversations
                    .iter()
                    .filter(|c| c.members.contains(&user))
                    .map(|c| c.id.clone())
                    .collect();
                if let Some(conv) = self.rng.pick(&convs).cloned() {
                    self.new_send(device, &conv, EventKind::MESSAGE, 0);
                }
            }
            720..750 => {
                let user = self.devices[device].user.clone();
                let own = self.own.get(&user).cloned().unwrap_or_default();
                if let Some((conv, seq)) = self.rng.pick(&own).cloned() {
                    let kind = if self.rng.below(2) == 0 {
                        EventKind::EDIT
                    } else {
                        EventKind::DELETE
                    };
                    self.new_send(device, &conv, kind, seq);
                }
            }
            750..800 => {
                let d = &self.devices[device];
                let seen: Vec<(String, u64)> = d
                    .seen
                    .iter()
                    .filter_map(|(c, s)| s.last().map(|l| (c.clone(), *l)))
                    .collect();
                if let (Some(session), Some((conv, seq))) =
                    (d.session, self.rng.pick(&seen).cloned())
                {
                    let mark = Mark {
                        request: 0,
                        conversation: conv.into(),
                        marker: Marker::READ,
                        seq: seq.saturating_sub(self.rng.below(3) as u64),
                    };
                    let d = &mut self.devices[device];
                    let request = d.next_id;
                    d.next_id += 1;
                    d.pending.insert(request, Request::Other);
                    self.c.request(session, Mark { request, ..mark });
                }
            }
            800..860 => {
                let d = &mut self.devices[device];
                if let (Some(session), false) = (d.session, d.resuming) {
                    if d.inbox > d.acked {
                        d.acked = d.inbox;
                        let inbox_seq = d.acked;
                        self.c.request(session, Ack { inbox_seq });
                    }
                }
            }
            860..880 => self.disconnect(device),
            880..920 => {
                if self.devices[device].session.is_none() {
                    self.connect(device);
                } else {
                    self.resume(device);
                    let retry = std::mem::take(&mut self.devices[device].retry);
                    for send in retry {
                        self.send(device, send);
                    }
                }
            }
            920..925 => {
                if (0..self.c.len()).all(|i| self.c.is_up(i)) {
                    let broker = self.rng.below(self.c.len());
                    self.c.crash(broker);
                }
            }
            925..955 => {
                if let Some(broker) = (0..self.c.len()).find(|i| !self.c.is_up(*i)) {
                    self.restart(broker);
                }
            }
            955..960 => self.c.heal(),
            960..980 => {
                let ms = 100 + self.rng.below(3_000) as u64;
                self.c.advance(ms);
            }
            980..982 => {
                let (i, j) = (self.rng.below(3), self.rng.below(3));
                if i != j {
                    self.c.flap(i, j);
                }
            }
            982 => {
                let (i, j) = (self.rng.below(3), self.rng.below(3));
                if i != j {
                    self.c.cut(i, j);
                }
            }
            983..985 => {
                let broker = self.rng.below(3);
                let reopened = self.c.flap_edge(broker);
                self.reopened(reopened);
            }
            _ => self.group_update(),
        }
        self.process();
    }

    fn restart(&mut self, broker: usize) {
        let reopened = self.c.restart(broker);
        self.reopened(reopened);
    }

    /// The edge opened these sessions again at their home broker: each must RESUME.
    fn reopened(&mut self, sessions: Vec<u64>) {
        for session in sessions {
            if let Some(index) = self.devices.iter().position(|d| d.session == Some(session)) {
                let device = &mut self.devices[index];
                device.resuming = false;
                device.needs_resume = true;
                device.pending.retain(|_, r| !matches!(r, Request::Resume));
                self.resume(index);
            }
        }
    }

    fn group_update(&mut self) {
        let groups: Vec<Conversation> = self
            .conversations
            .iter()
            .filter(|c| c.owner.is_some() && !c.large)
            .cloned()
            .collect();
        let Some(group) = self.rng.pick(&groups).cloned() else {
            return;
        };
        let owner = group.owner.clone().unwrap_or_default();
        let Some(index) = self
            .devices
            .iter()
            .position(|d| d.user == owner && d.session.is_some())
        else {
            return;
        };
        let candidates: Vec<String> = (0..7)
            .map(|i| format!("u{i}"))
            .filter(|u| *u != owner)
            .collect();
        let user = self.rng.pick(&candidates).unwrap().clone();
        let op = if group.members.contains(&user) {
            GroupOp::REMOVE
        } else if group.members.len() < THRESHOLD {
            GroupOp::ADD
        } else {
            return;
        };
        let d = &mut self.devices[index];
        let request = d.next_id;
        d.next_id += 1;
        d.pending.insert(
            request,
            Request::Group {
                conversation: group.id.clone(),
                op,
                user: user.clone(),
            },
        );
        let session = d.session.unwrap_or_default();
        let update = GroupUpdate {
            request,
            conversation: group.id.as_str().into(),
            op,
            user: user.into(),
            role: Role::MEMBER,
        };
        self.c.request(session, update);
    }

    /// Brings everything back, lets every retry and replay finish, then checks the end
    /// state: logs, acked messages and complete delivery.
    fn finish(&mut self) {
        for broker in 0..self.c.len() {
            if !self.c.is_up(broker) {
                self.restart(broker);
            }
        }
        self.c.heal();
        for round in 0..20 {
            self.settle_and_process();
            self.c.advance(11_000);
            for index in 0..self.devices.len() {
                if self.devices[index].session.is_none() {
                    self.connect(index);
                }
                self.resume(index);
                let retry = std::mem::take(&mut self.devices[index].retry);
                for send in retry {
                    self.send(index, send);
                }
            }
            self.settle_and_process();
            let busy = self.devices.iter().any(|d| {
                !d.pending.is_empty() || !d.retry.is_empty() || d.resuming || d.needs_resume
            });
            if !busy {
                break;
            }
            if round == 19 {
                self.fail("requests still unanswered after the cluster settled");
            }
        }
        self.check_logs();
    }

    /// Every log is gapless, every acked message is in it exactly once, and every device of a
    /// fan-out-on-write conversation's members received each event of its membership.
    fn check_logs(&self) {
        let mut ids_seen: BTreeMap<(String, String, u64), u64> = BTreeMap::new();
        for conv in &self.conversations {
            let mut events = Vec::new();
            while let Some(event) = self.committed(&conv.id, events.len() as u64 + 1) {
                events.push(event);
            }
            let owner = self.c.owner(&conv.id);
            let storage = &self.c.nodes[owner].storage;
            let start = event_key(&conv.id, 0);
            let end = event_key(&conv.id, u64::MAX);
            let stored = storage
                .range(&start, &end, false, usize::MAX)
                .unwrap()
                .len();
            if stored != events.len() {
                self.fail(&format!(
                    "{}: {stored} events stored, {} gapless",
                    conv.id,
                    events.len()
                ));
            }
            for event in &events {
                if event.client_msg_id != 0 {
                    let key = (
                        event.sender.to_string(),
                        event.device.to_string(),
                        event.client_msg_id,
                    );
                    if let Some(first) = ids_seen.insert(key.clone(), event.seq) {
                        self.fail(&format!(
                            "{key:?} stored twice: #{first} and #{}",
                            event.seq
                        ));
                    }
                }
            }
            if conv.large {
                continue;
            }
            let membership = membership(&events, conv);
            let on_write = fanned_out_on_write(&events, conv);
            for device in &self.devices {
                let member_at = |seq: u64| {
                    membership.get(&device.user).is_some_and(|spans| {
                        spans.iter().any(|(from, to)| (*from..=*to).contains(&seq))
                    })
                };
                let allowed: BTreeSet<u64> = events
                    .iter()
                    .map(|e| e.seq)
                    .filter(|s| member_at(*s))
                    .collect();
                let expected: BTreeSet<u64> = allowed
                    .iter()
                    .copied()
                    .filter(|s| on_write.contains(s))
                    .collect();
                let got = device.seen.get(&conv.id).cloned().unwrap_or_default();
                let missing: Vec<_> = expected.difference(&got).collect();
                let extra: Vec<_> = got.difference(&allowed).collect();
                if !missing.is_empty() || !extra.is_empty() {
                    eprintln!("DEBUG device {:?}", device);
                    let log: Vec<_> = events
                        .iter()
                        .map(|e| {
                            (
                                e.seq,
                                e.kind,
                                e.sender.to_string(),
                                MemberChange::from_body(e.body.clone())
                                    .map(|m| m.user.to_string())
                                    .unwrap_or_default(),
                            )
                        })
                        .collect();
                    eprintln!("DEBUG log {log:?}\nspans {membership:?} on_write {on_write:?}");
                    self.fail(&format!(
                        "{}/{} in {}: missing {missing:?}, unexpected {extra:?}",
                        device.user, device.name, conv.id
                    ));
                }
            }
        }
        for acked in &self.acked {
            let stored = ids_seen.get(&(
                acked.user.clone(),
                acked.device.clone(),
                acked.client_msg_id,
            ));
            if stored != Some(&acked.seq) {
                self.fail(&format!("acked {acked:?} stored as {stored:?}"));
            }
        }
    }
}

/// The seqs that fanned out on write: those written while the group had at most
/// [`THRESHOLD`] members (counting the event's own change).
fn fanned_out_on_write(events: &[Event], conv: &Conversation) -> BTreeSet<u64> {
    if conv.owner.is_none() {
        return events.iter().map(|e| e.seq).collect();
    }
    let mut members = 0usize;
    let mut on_write = BTreeSet::new();
    for event in events {
        match event.kind {
            EventKind::MEMBER_ADDED => members += 1,
            EventKind::MEMBER_REMOVED => members -= 1,
            _ => {}
        }
        if members <= THRESHOLD {
            on_write.insert(event.seq);
        }
    }
    on_write
}

/// Each user's membership spans `[from, to]` in a conversation, from its log.
fn membership(events: &[Event], conv: &Conversation) -> BTreeMap<String, Vec<(u64, u64)>> {
    let mut spans: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    if conv.owner.is_none() {
        for user in &conv.members {
            spans.insert(user.clone(), vec![(1, u64::MAX)]);
        }
        return spans;
    }
    let founding = conv.founders + 1;
    for event in events {
        if !event.kind.is_membership() {
            continue;
        }
        let change = MemberChange::from_body(event.body.clone()).unwrap();
        let user = change.user.to_string();
        let user_spans = spans.entry(user).or_default();
        match event.kind {
            EventKind::MEMBER_ADDED => {
                let from = if event.seq <= founding { 1 } else { event.seq };
                user_spans.push((from, u64::MAX));
            }
            EventKind::MEMBER_REMOVED => {
                if let Some(last) = user_spans.last_mut() {
                    last.1 = event.seq;
                }
            }
            _ => {}
        }
    }
    spans
}

fn die(seed: u64, what: &str) -> ! {
    panic!(
        "simulation seed {seed} failed: {what}\n\
         reproduce with SIM_SEED={seed} cargo test -p natter-broker --test simulation"
    )
}

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Runs one share of the seeds; the shares run as separate tests, so in parallel.
fn run_share(share: u64, shares: u64) {
    let steps = env("SIM_STEPS").unwrap_or(120);
    let seeds: Vec<u64> = match env("SIM_SEED") {
        Some(seed) if share == 0 => vec![seed],
        Some(_) => Vec::new(),
        None => (0..env("SIM_SEEDS").unwrap_or(2000))
            .filter(|seed| seed % shares == share)
            .collect(),
    };
    for seed in seeds {
        let mut sim = Sim::new(seed);
        for _ in 0..steps {
            sim.step();
        }
        sim.finish();
    }
}

#[test]
fn simulated_clusters_keep_every_promise_0() {
    run_share(0, 4);
}

#[test]
fn simulated_clusters_keep_every_promise_1() {
    run_share(1, 4);
}

#[test]
fn simulated_clusters_keep_every_promise_2() {
    run_share(2, 4);
}

#[test]
fn simulated_clusters_keep_every_promise_3() {
    run_share(3, 4);
}
