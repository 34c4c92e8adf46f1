//! A deterministic in-memory cluster: broker shards on `MemoryStorage`, FIFO links between
//! them, and one simulated edge holding client sessions. Nothing here sleeps or reads the
//! clock; the test decides what is delivered, committed or crashed, and when.

// Each test binary uses part of the harness; it is test code, where a panic is a failure.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use natter_broker::shard::{CommitId, LinkId, Output, Peer, Shard};
use natter_broker::storage::{Batch, MemoryStorage, Storage};
use natter_broker::{BrokerConfig, ClusterConfig, PeerConfig};
use natter_codec::frame::{Error, Routed, SessionClose, SessionOpen};
use natter_codec::ids::ConversationId;
use natter_codec::ring::Ring;
use natter_codec::types::NodeRole;
use natter_codec::{ErrorCode, Frame};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// Milliseconds since the epoch at which every simulation starts.
pub const EPOCH: u64 = 1_700_000_000_000;

/// The other end of a link, seen from a broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Remote {
    Edge,
    Dialed(usize),
    Accepted(usize),
}

/// A directed channel: from, to, and who dialed the link it belongs to.
type Channel = (usize, usize, usize);

pub struct Node {
    pub shard: Option<Shard>,
    pub storage: Arc<MemoryStorage>,
    pending: VecDeque<(CommitId, Batch)>,
    remotes: BTreeMap<LinkId, Remote>,
    links: BTreeMap<Remote, LinkId>,
}

/// A client session held by the simulated edge.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: String,
    pub device: String,
}

pub struct Cluster {
    pub now: u64,
    pub nodes: Vec<Node>,
    pub configs: Vec<BrokerConfig>,
    pub ring: Ring,
    net: BTreeMap<Channel, VecDeque<Frame>>,
    next_link: u64,
    next_session: u64,
    pub sessions: BTreeMap<u64, Session>,
    /// Frames the edge received for each session, oldest first.
    pub received: BTreeMap<u64, VecDeque<Frame>>,
    /// Requests sent and not answered yet: (session, request) -> broker.
    outstanding: BTreeMap<(u64, u64), usize>,
    /// Webhook bodies posted.
    pub webhooks: Vec<String>,
    /// Links a broker closed.
    pub closed: Vec<(usize, LinkId)>,
    seed: u64,
}

impl Cluster {
    /// A cluster of `n` brokers named b1..bn with the given limits applied by `tune`.
    pub fn new(n: usize, tune: impl Fn(&mut BrokerConfig)) -> Self {
        let brokers: Vec<PeerConfig> = (0..n)
            .map(|i| PeerConfig {
                id: format!("b{}", i + 1),
                link: format!("127.0.0.1:{}", 7001 + i).parse().unwrap(),
            })
            .collect();
        let configs: Vec<BrokerConfig> = brokers
            .iter()
            .map(|b| {
                let mut config = BrokerConfig {
                    node: b.id.clone(),
                    cluster: ClusterConfig {
                        brokers: brokers.clone(),
                        ..ClusterConfig::default()
                    },
                    ..BrokerConfig::default()
                };
                tune(&mut config);
                config
            })
            .collect();
        let ring = configs[0].ring();
        let mut cluster = Self {
            now: EPOCH,
            nodes: Vec::new(),
            configs,
            ring,
            net: BTreeMap::new(),
            next_link: 1,
            next_session: 1,
            sessions: BTreeMap::new(),
            received: BTreeMap::new(),
            outstanding: BTreeMap::new(),
            webhooks: Vec::new(),
            closed: Vec::new(),
            seed: 7,
        };
        for i in 0..n {
            let storage = Arc::new(MemoryStorage::new());
            cluster.nodes.push(Node {
                shard: None,
                storage,
                pending: VecDeque::new(),
                remotes: BTreeMap::new(),
                links: BTreeMap::new(),
            });
            cluster.boot(i);
        }
        for i in 0..n {
            cluster.connect_links(i);
        }
        cluster.pump();
        cluster
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    fn edge(&self) -> usize {
        self.nodes.len()
    }

    fn boot(&mut self, i: usize) {
        self.seed += 1;
        let storage: Arc<dyn Storage> = self.nodes[i].storage.clone();
        let shard = Shard::new(
            &self.configs[i],
            storage,
            self.now,
            StdRng::seed_from_u64(self.seed),
        )
        .unwrap();
        self.nodes[i].shard = Some(shard);
    }

    fn link_up(&mut self, i: usize, remote: Remote) {
        let link = LinkId(self.next_link);
        self.next_link += 1;
        self.nodes[i].remotes.insert(link, remote);
        self.nodes[i].links.insert(remote, link);
        let peer = match remote {
            Remote::Edge => Peer {
                node: "e1".into(),
                role: NodeRole::EDGE,
                dialed: false,
            },
            Remote::Dialed(j) | Remote::Accepted(j) => Peer {
                node: format!("b{}", j + 1),
                role: NodeRole::BROKER,
                dialed: matches!(remote, Remote::Dialed(_)),
            },
        };
        let now = self.now;
        if let Some(shard) = self.nodes[i].shard.as_mut() {
            shard.handle_link_up(now, link, peer);
        }
    }

    fn link_down(&mut self, i: usize, remote: Remote) {
        if let Some(link) = self.nodes[i].links.remove(&remote) {
            self.nodes[i].remotes.remove(&link);
            let now = self.now;
            if let Some(shard) = self.nodes[i].shard.as_mut() {
                shard.handle_link_down(now, link);
            }
        }
    }

    /// Brings up every link of broker `i`: the edge's and both directions to each live peer.
    fn connect_links(&mut self, i: usize) {
        self.link_up(i, Remote::Edge);
        for j in 0..self.len() {
            if j != i && self.nodes[j].shard.is_some() {
                self.connect_peers(i, j);
            }
        }
    }

    /// Brings up both links between brokers `i` and `j`.
    fn connect_peers(&mut self, i: usize, j: usize) {
        for (a, b) in [(i, j), (j, i)] {
            if !self.nodes[a].links.contains_key(&Remote::Dialed(b)) {
                self.link_up(b, Remote::Accepted(a));
                self.link_up(a, Remote::Dialed(b));
            }
        }
    }

    /// Fails the requests broker `i` had not answered: the edge answers UNAVAILABLE.
    fn fail_outstanding(&mut self, i: usize) {
        let lost: Vec<(u64, u64)> = self
            .outstanding
            .iter()
            .filter(|(_, broker)| **broker == i)
            .map(|(key, _)| *key)
            .collect();
        for (session, request) in lost {
            self.outstanding.remove(&(session, request));
            let error = Error::new(request, ErrorCode::UNAVAILABLE, "broker unreachable");
            self.received
                .entry(session)
                .or_default()
                .push_back(error.into());
        }
    }

    /// Reopens at broker `i` the sessions homed there; each needs a new RESUME.
    fn reopen_sessions(&mut self, i: usize) -> Vec<u64> {
        let reopened: Vec<u64> = self
            .sessions
            .iter()
            .filter(|(_, s)| self.home(&s.user) == i)
            .map(|(id, _)| *id)
            .collect();
        for session in &reopened {
            self.open_session(*session);
        }
        self.pump();
        reopened
    }

    /// Drops both links between brokers `i` and `j`, losing what was in flight, and
    /// reconnects them.
    pub fn flap(&mut self, i: usize, j: usize) {
        self.net
            .retain(|(from, to, _), _| !(*from == i && *to == j || *from == j && *to == i));
        for (a, b) in [(i, j), (j, i)] {
            self.link_down(a, Remote::Dialed(b));
            self.link_down(a, Remote::Accepted(b));
        }
        if self.is_up(i) && self.is_up(j) {
            self.connect_peers(i, j);
        }
        self.pump();
    }

    /// Drops the link broker `i` dialed to broker `j`, losing what was in flight on it; the
    /// link `j` dialed stays up until [`Cluster::heal`].
    pub fn cut(&mut self, i: usize, j: usize) {
        self.net.retain(|(from, to, dialer), _| {
            !(*dialer == i && (*from == i && *to == j || *from == j && *to == i))
        });
        self.link_down(i, Remote::Dialed(j));
        self.link_down(j, Remote::Accepted(i));
        self.pump();
    }

    /// Reconnects every link between live brokers that is down.
    pub fn heal(&mut self) {
        for i in 0..self.len() {
            for j in 0..self.len() {
                if i != j && self.is_up(i) && self.is_up(j) {
                    self.connect_peers(i, j);
                }
            }
        }
        self.pump();
    }

    /// Drops the edge's link to broker `i` and reconnects it; returns the sessions the edge
    /// opened there again.
    pub fn flap_edge(&mut self, i: usize) -> Vec<u64> {
        if !self.is_up(i) {
            return Vec::new();
        }
        let edge = self.edge();
        self.net
            .retain(|(from, to, _), _| !(*from == i && *to == edge || *from == edge && *to == i));
        self.link_down(i, Remote::Edge);
        self.fail_outstanding(i);
        self.link_up(i, Remote::Edge);
        self.reopen_sessions(i)
    }

    /// Kills broker `i`: uncommitted batches and frames in flight to or from it are lost.
    /// Requests it had not answered get UNAVAILABLE from the edge.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].shard = None;
        self.nodes[i].pending.clear();
        self.nodes[i].remotes.clear();
        self.nodes[i].links.clear();
        self.net.retain(|(from, to, _), _| *from != i && *to != i);
        for j in 0..self.len() {
            if j != i {
                self.link_down(j, Remote::Dialed(i));
                self.link_down(j, Remote::Accepted(i));
            }
        }
        self.fail_outstanding(i);
        self.pump();
    }

    /// Restarts broker `i` from what it committed and reconnects it. The edge opens its
    /// sessions there again; it returns them, and each needs a new RESUME.
    pub fn restart(&mut self, i: usize) -> Vec<u64> {
        self.boot(i);
        self.connect_links(i);
        self.reopen_sessions(i)
    }

    pub fn is_up(&self, i: usize) -> bool {
        self.nodes[i].shard.is_some()
    }

    pub fn home(&self, user: &str) -> usize {
        self.index(self.ring.home(user).unwrap())
    }

    pub fn owner(&self, conversation: &str) -> usize {
        self.index(self.ring.conversation_owner(conversation).unwrap())
    }

    fn index(&self, node: &str) -> usize {
        node[1..].parse::<usize>().unwrap() - 1
    }

    /// Opens a session for a device at the edge; the caller RESUMEs it.
    pub fn connect(&mut self, user: &str, device: &str) -> u64 {
        let session = self.next_session;
        self.next_session += 1;
        self.sessions.insert(
            session,
            Session {
                user: user.into(),
                device: device.into(),
            },
        );
        self.open_session(session);
        self.pump();
        session
    }

    fn open_session(&mut self, session: u64) {
        let s = &self.sessions[&session];
        let open = SessionOpen {
            session,
            user: s.user.as_str().into(),
            device: s.device.as_str().into(),
            lease_ms: 3_600_000,
        };
        let home = self.home(&s.user);
        self.edge_send(home, open.into());
    }

    /// Ends a session at the edge.
    pub fn disconnect(&mut self, session: u64) {
        if let Some(s) = self.sessions.remove(&session) {
            let home = self.home(&s.user);
            self.edge_send(home, SessionClose { session }.into());
            self.outstanding.retain(|(sess, _), _| *sess != session);
            self.pump();
        }
    }

    /// Which broker a client request goes to (docs/ARCHITECTURE.md, routing table).
    fn route(&self, user: &str, frame: &Frame) -> usize {
        let conversation = match frame {
            Frame::Send(f) => &f.conversation,
            Frame::Mark(f) => &f.conversation,
            Frame::History(f) => &f.conversation,
            Frame::GroupUpdate(f) => &f.conversation,
            Frame::GroupGet(f) => &f.conversation,
            Frame::PresenceSubscribe(f) => &f.conversation,
            Frame::Typing(f) => &f.conversation,
            _ => return self.home(user),
        };
        if ConversationId::parse(conversation).is_some() {
            self.owner(conversation)
        } else {
            0
        }
    }

    /// Sends a client frame from a session through the edge, to the broker the routing
    /// table names, or to `to` when given.
    pub fn request_to(&mut self, session: u64, frame: Frame, to: Option<usize>) {
        let s = self.sessions[&session].clone();
        let broker = to.unwrap_or_else(|| self.route(&s.user, &frame));
        if let Some(request) = frame.request().filter(|r| *r != 0) {
            self.outstanding.insert((session, request), broker);
        }
        if !self.is_up(broker) {
            if let Some(request) = frame.request().filter(|r| *r != 0) {
                self.outstanding.remove(&(session, request));
                let error = Error::new(request, ErrorCode::UNAVAILABLE, "broker down");
                self.received
                    .entry(session)
                    .or_default()
                    .push_back(error.into());
            }
            return;
        }
        let routed = Routed {
            session,
            user: s.user.as_str().into(),
            device: s.device.as_str().into(),
            frame: frame.to_bytes().unwrap(),
        };
        self.edge_send(broker, routed.into());
        self.pump();
    }

    pub fn request(&mut self, session: u64, frame: impl Into<Frame>) {
        self.request_to(session, frame.into(), None);
    }

    /// Puts a raw frame on the edge's link to broker `i`.
    pub fn edge_send(&mut self, i: usize, frame: Frame) {
        if self.is_up(i) {
            let edge = self.edge();
            self.net
                .entry((edge, i, edge))
                .or_default()
                .push_back(frame);
        }
    }

    /// Puts a raw frame on the link broker `from` dialed to broker `to`.
    pub fn broker_send(&mut self, from: usize, to: usize, frame: Frame) {
        self.net
            .entry((from, to, from))
            .or_default()
            .push_back(frame);
    }

    /// Drains every shard's outputs onto the network and the commit queues.
    pub fn pump(&mut self) {
        for i in 0..self.len() {
            loop {
                let Some(output) = self.nodes[i].shard.as_mut().and_then(Shard::poll_output) else {
                    break;
                };
                match output {
                    Output::Frame { link, frame } => self.route_output(i, link, frame),
                    Output::Commit { id, batch } => self.nodes[i].pending.push_back((id, batch)),
                    Output::Webhook { id, body } => {
                        self.webhooks.push(body);
                        let now = self.now;
                        self.nodes[i]
                            .shard
                            .as_mut()
                            .unwrap()
                            .handle_webhook(now, id, true);
                    }
                    Output::Close { link } => self.closed.push((i, link)),
                    _ => {}
                }
            }
        }
    }

    fn route_output(&mut self, i: usize, link: LinkId, frame: Frame) {
        let Some(remote) = self.nodes[i].remotes.get(&link).copied() else {
            return;
        };
        let channel = match remote {
            Remote::Edge => (i, self.edge(), self.edge()),
            Remote::Dialed(j) => (i, j, i),
            Remote::Accepted(j) => (i, j, j),
        };
        self.net.entry(channel).or_default().push_back(frame);
    }

    /// Commits up to `count` of broker `i`'s pending batches and reports them durable.
    pub fn commit(&mut self, i: usize, count: usize) {
        let node = &mut self.nodes[i];
        let mut last = None;
        let mut batches = Vec::new();
        for _ in 0..count {
            let Some((id, batch)) = node.pending.pop_front() else {
                break;
            };
            batches.push(batch);
            last = Some(id);
        }
        if let Some(id) = last {
            node.storage.commit(&batches).unwrap();
            let now = self.now;
            node.shard.as_mut().unwrap().handle_durable(now, id);
            self.pump();
        }
    }

    pub fn pending_commits(&self, i: usize) -> usize {
        self.nodes[i].pending.len()
    }

    /// The channels with frames in flight.
    pub fn busy_channels(&self) -> Vec<Channel> {
        self.net
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(c, _)| *c)
            .collect()
    }

    /// Delivers the oldest frame of one channel.
    pub fn deliver(&mut self, channel: Channel) {
        let Some(frame) = self.net.get_mut(&channel).and_then(VecDeque::pop_front) else {
            return;
        };
        let (from, to, dialer) = channel;
        if to == self.edge() {
            self.edge_receive(frame);
            return;
        }
        let remote = if from == self.edge() {
            Remote::Edge
        } else if dialer == from {
            Remote::Accepted(from)
        } else {
            Remote::Dialed(from)
        };
        let Some(link) = self.nodes[to].links.get(&remote).copied() else {
            return;
        };
        let now = self.now;
        if let Some(shard) = self.nodes[to].shard.as_mut() {
            shard.handle_frame(now, link, frame);
        }
        self.pump();
    }

    fn edge_receive(&mut self, frame: Frame) {
        let Frame::Routed(routed) = frame else {
            return;
        };
        if !self.sessions.contains_key(&routed.session) {
            return;
        }
        let inner = Frame::decode(routed.frame).unwrap();
        if let Some(request) = inner.request() {
            self.outstanding.remove(&(routed.session, request));
        }
        self.received
            .entry(routed.session)
            .or_default()
            .push_back(inner);
    }

    /// Delivers everything and commits everything until the cluster is quiet.
    pub fn settle(&mut self) {
        loop {
            let mut moved = false;
            for channel in self.busy_channels() {
                self.deliver(channel);
                moved = true;
            }
            for i in 0..self.len() {
                if self.pending_commits(i) > 0 && self.is_up(i) {
                    self.commit(i, usize::MAX);
                    moved = true;
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Moves the clock and lets every shard handle its timers.
    pub fn advance(&mut self, ms: u64) {
        self.now += ms;
        let now = self.now;
        for node in &mut self.nodes {
            if let Some(shard) = node.shard.as_mut() {
                shard.handle_timeout(now);
            }
        }
        self.pump();
    }

    /// Takes the frames a session received.
    pub fn take(&mut self, session: u64) -> Vec<Frame> {
        self.received
            .get_mut(&session)
            .map(|q| q.drain(..).collect())
            .unwrap_or_default()
    }

    /// Sends a request, settles, and returns everything the session received meanwhile.
    pub fn call(&mut self, session: u64, frame: impl Into<Frame>) -> Vec<Frame> {
        self.request(session, frame);
        self.settle();
        self.take(session)
    }
}
