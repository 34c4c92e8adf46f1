//! The bounded queue of frames towards one client, and the slow-consumer policy (sans-IO).
//!
//! Every byte queued for a client, or handed to its writer and not yet written, counts against
//! the connection's budget (`limits.outbound_budget`, 1 MiB by default). When the client does
//! not read fast enough:
//!
//! 1. Ephemeral frames (TYPING_UPDATE, PRESENCE) are accepted only while the queue is under half
//!    the budget; beyond that they are dropped, and queued ones are evicted to make room for
//!    durable frames.
//! 2. A DELIVER that does not fit is dropped, and so is every DELIVER after it, until the
//!    queue has room again; then the client gets `GAP{"", first, last}` naming the dropped
//!    inbox range (or `GAP{conversation, first, last}` for live events of large groups, which
//!    have no inbox_seq) and repairs it with RESUME or HISTORY.
//! 3. Answers, receipts and control frames are never dropped: they may use a reserve of a
//!    quarter of the budget beyond it. A client that has been dropping DELIVERs for
//!    `timing.slow_consumer_ms`, or whose answers do not fit in the reserve, is closed with
//!    SLOW_CONSUMER.
//!
//! The process as a whole has a budget too (`limits.outbound_total_budget`): every push sees
//! the [`Room`] left in it, and steps 1 and 2 apply against it as well, so many slow
//! consumers together cannot grow the edge's memory without bound. Past the process budget
//! the hub closes the largest queues first.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use natter_codec::frame::{Gap, peek_type};
use natter_codec::{ErrorCode, Frame, FrameType};

/// Live-event gaps are kept per conversation; past this many the client is too far behind.
const MAX_CONVERSATION_GAPS: usize = 32;

/// How the policy treats a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Dropped first under pressure.
    Ephemeral,
    /// Dropped only with a GAP that names what was dropped.
    Deliver,
    /// Never dropped.
    Essential,
}

impl Class {
    /// The class of a frame type.
    pub fn of(frame_type: FrameType) -> Self {
        match frame_type {
            FrameType::TYPING_UPDATE | FrameType::PRESENCE => Self::Ephemeral,
            FrameType::DELIVER => Self::Deliver,
            _ => Self::Essential,
        }
    }
}

/// What became of a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued for the writer.
    Queued,
    /// Dropped by the policy (counted, and named by a later GAP if it was a DELIVER).
    Dropped,
}

/// The process-wide budget as one push sees it: bytes queued over all connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    /// Bytes queued or being written, over all connections.
    pub used: usize,
    /// The process-wide budget.
    pub budget: usize,
}

impl Room {
    /// No process-wide limit.
    pub const UNLIMITED: Self = Self {
        used: 0,
        budget: usize::MAX,
    };

    fn fits(self, len: usize, limit: usize) -> bool {
        self.used.saturating_add(len) <= limit
    }
}

/// The client must be closed with SLOW_CONSUMER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlowConsumer;

impl SlowConsumer {
    /// The close code.
    pub fn code(self) -> ErrorCode {
        ErrorCode::SLOW_CONSUMER
    }
}

/// The outbound queue of one connection.
#[derive(Debug)]
pub struct Outbound {
    budget: usize,
    slow_consumer_ms: u64,
    queue: VecDeque<(Bytes, Class)>,
    queued: usize,
    writing: usize,
    inbox_gap: Option<(u64, u64)>,
    conversation_gaps: BTreeMap<String, (u64, u64)>,
    dropping_since: Option<u64>,
    dropped: u64,
}

impl Outbound {
    /// An empty queue with a budget in bytes.
    pub fn new(budget: usize, slow_consumer_ms: u64) -> Self {
        Self {
            budget,
            slow_consumer_ms,
            queue: VecDeque::new(),
            queued: 0,
            writing: 0,
            inbox_gap: None,
            conversation_gaps: BTreeMap::new(),
            dropping_since: None,
            dropped: 0,
        }
    }

    /// Bytes queued or being written.
    pub fn used(&self) -> usize {
        self.queued + self.writing
    }

    /// Frames the policy has dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Whether the writer has something to take.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Offers one complete frame for the client, with `process` the room left in the
    /// process-wide budget.
    pub fn push(
        &mut self,
        frame: Bytes,
        now_ms: u64,
        process: Room,
    ) -> Result<Pushed, SlowConsumer> {
        let class = peek_type(&frame).map_or(Class::Essential, Class::of);
        let len = frame.len();
        match class {
            Class::Ephemeral
                if self.used() + len > self.budget / 2
                    || !process.fits(len, process.budget / 2) =>
            {
                Ok(self.drop_frame())
            }
            Class::Ephemeral => Ok(self.enqueue(frame, class)),
            Class::Deliver => {
                if !self.gap_open() && !self.fits(len, self.budget) {
                    self.evict_ephemeral();
                }
                if !self.gap_open()
                    && self.fits(len, self.budget)
                    && process.fits(len, process.budget)
                {
                    return Ok(self.enqueue(frame, class));
                }
                self.record_gap(&frame, now_ms)?;
                Ok(self.drop_frame())
            }
            Class::Essential => {
                if !self.fits(len, self.budget + self.budget / 4) {
                    self.evict_ephemeral();
                }
                if self.fits(len, self.budget + self.budget / 4) {
                    Ok(self.enqueue(frame, class))
                } else {
                    Err(SlowConsumer)
                }
            }
        }
    }

    /// Drops every queued frame, for a connection being closed as a slow consumer: it would
    /// not read them, and the process needs the memory back now. Bytes the writer holds stay
    /// counted until written.
    pub fn clear(&mut self) {
        self.dropped += self.queue.len() as u64;
        self.queue.clear();
        self.queued = 0;
        self.inbox_gap = None;
        self.conversation_gaps.clear();
    }

    /// Hands the writer up to `max_bytes` of frames (at least one frame if any is queued).
    pub fn take(&mut self, max_bytes: usize) -> Vec<Bytes> {
        let mut batch = Vec::new();
        let mut taken = 0;
        while let Some((frame, _)) = self.queue.front() {
            if !batch.is_empty() && taken + frame.len() > max_bytes {
                break;
            }
            taken += frame.len();
            if let Some((frame, _)) = self.queue.pop_front() {
                batch.push(frame);
            }
        }
        self.queued -= taken;
        self.writing += taken;
        batch
    }

    /// The writer wrote `bytes` of what it took; once there is room, a pending GAP is queued.
    pub fn written(&mut self, bytes: usize) {
        self.writing = self.writing.saturating_sub(bytes);
        self.flush_gaps();
    }

    /// Checks the slow-consumer deadline.
    pub fn poll(&self, now_ms: u64) -> Result<(), SlowConsumer> {
        match self.dropping_since {
            Some(since) if now_ms.saturating_sub(since) >= self.slow_consumer_ms => {
                Err(SlowConsumer)
            }
            _ => Ok(()),
        }
    }

    fn fits(&self, len: usize, limit: usize) -> bool {
        self.used() + len <= limit
    }

    fn gap_open(&self) -> bool {
        self.inbox_gap.is_some() || !self.conversation_gaps.is_empty()
    }

    fn enqueue(&mut self, frame: Bytes, class: Class) -> Pushed {
        self.queued += frame.len();
        self.queue.push_back((frame, class));
        Pushed::Queued
    }

    fn drop_frame(&mut self) -> Pushed {
        self.dropped += 1;
        Pushed::Dropped
    }

    fn evict_ephemeral(&mut self) {
        let before = self.queue.len();
        let mut freed = 0;
        self.queue.retain(|(frame, class)| {
            let keep = *class != Class::Ephemeral;
            if !keep {
                freed += frame.len();
            }
            keep
        });
        self.queued -= freed;
        self.dropped += (before - self.queue.len()) as u64;
    }

    fn record_gap(&mut self, frame: &Bytes, now_ms: u64) -> Result<(), SlowConsumer> {
        self.dropping_since.get_or_insert(now_ms);
        // A DELIVER we cannot decode came from our own broker; treat it as unrepairable.
        let Ok(Frame::Deliver(deliver)) = Frame::decode(frame.clone()) else {
            return Err(SlowConsumer);
        };
        if deliver.inbox_seq != 0 {
            widen(&mut self.inbox_gap, deliver.inbox_seq);
            return Ok(());
        }
        let conversation = deliver.conversation.to_string();
        let known = self.conversation_gaps.contains_key(&conversation);
        if !known && self.conversation_gaps.len() >= MAX_CONVERSATION_GAPS {
            return Err(SlowConsumer);
        }
        let mut range = self.conversation_gaps.remove(&conversation);
        widen(&mut range, deliver.event.seq);
        if let Some(range) = range {
            self.conversation_gaps.insert(conversation, range);
        }
        Ok(())
    }

    fn flush_gaps(&mut self) {
        if !self.gap_open() || self.used() > self.budget / 2 {
            return;
        }
        let inbox = self.inbox_gap.take().map(|range| (String::new(), range));
        let conversations = std::mem::take(&mut self.conversation_gaps);
        for (conversation, (from, to)) in inbox.into_iter().chain(conversations) {
            let gap = Frame::from(Gap {
                conversation: conversation.into(),
                from,
                to,
            });
            if let Ok(bytes) = gap.to_bytes() {
                self.enqueue(bytes, Class::Essential);
            }
        }
        self.dropping_since = None;
    }
}

fn widen(range: &mut Option<(u64, u64)>, seq: u64) {
    *range = Some(match *range {
        Some((from, to)) => (from.min(seq), to.max(seq)),
        None => (seq, seq),
    });
}

#[cfg(test)]
mod tests {
    use natter_codec::frame::{Deliver, Pong, TypingUpdate};
    use natter_codec::types::Event;

    use super::*;

    fn bytes(frame: impl Into<Frame>) -> Bytes {
        frame.into().to_bytes().unwrap()
    }

    fn deliver(inbox_seq: u64, body: usize) -> Bytes {
        bytes(Deliver {
            inbox_seq,
            conversation: "d/a/b".into(),
            event: Event {
                seq: inbox_seq,
                body: Bytes::from(vec![b'x'; body]),
                ..Event::default()
            },
        })
    }

    fn typing() -> Bytes {
        bytes(TypingUpdate {
            conversation: "d/a/b".into(),
            user: "a".into(),
            active: true,
        })
    }

    fn decoded(frames: Vec<Bytes>) -> Vec<Frame> {
        frames
            .into_iter()
            .map(|f| Frame::decode(f).unwrap())
            .collect()
    }

    #[test]
    fn frames_within_budget_are_queued_in_order() {
        let mut out = Outbound::new(1000, 100);
        assert_eq!(
            out.push(deliver(1, 10), 0, Room::UNLIMITED),
            Ok(Pushed::Queued)
        );
        assert_eq!(out.push(typing(), 0, Room::UNLIMITED), Ok(Pushed::Queued));
        let used = out.used();
        let batch = out.take(usize::MAX);
        assert_eq!(batch.len(), 2);
        assert_eq!(out.used(), used, "bytes being written still count");
        out.written(used);
        assert_eq!(out.used(), 0);
    }

    #[test]
    fn ephemeral_frames_go_first_then_delivers_become_a_gap() {
        let mut out = Outbound::new(1000, 100);
        // Typing fills up to half the budget, then is dropped.
        while out.push(typing(), 0, Room::UNLIMITED) == Ok(Pushed::Queued) {}
        assert!(out.used() <= 500);
        // DELIVERs evict queued typing frames before anything is lost.
        assert_eq!(
            out.push(deliver(1, 400), 0, Room::UNLIMITED),
            Ok(Pushed::Queued)
        );
        assert_eq!(
            out.push(deliver(2, 400), 0, Room::UNLIMITED),
            Ok(Pushed::Queued)
        );
        assert!(out.queue.iter().all(|(_, class)| *class == Class::Deliver));
        // Then DELIVERs are dropped, and keep being dropped to keep the order.
        assert_eq!(
            out.push(deliver(3, 400), 0, Room::UNLIMITED),
            Ok(Pushed::Dropped)
        );
        assert_eq!(
            out.push(deliver(4, 10), 0, Room::UNLIMITED),
            Ok(Pushed::Dropped)
        );
        // Answers still fit in the reserve.
        assert_eq!(
            out.push(bytes(Pong { nonce: 1 }), 0, Room::UNLIMITED),
            Ok(Pushed::Queued)
        );

        // The client reads: once there is room, the GAP names exactly what was dropped.
        let batch = out.take(usize::MAX);
        let written: usize = batch.iter().map(Bytes::len).sum();
        out.written(written);
        let frames = decoded(out.take(usize::MAX));
        assert_eq!(
            frames,
            vec![Frame::Gap(Gap {
                conversation: "".into(),
                from: 3,
                to: 4
            })]
        );
        assert_eq!(out.poll(1_000), Ok(()), "the deadline ends with the gap");
        assert_eq!(
            out.push(deliver(5, 10), 0, Room::UNLIMITED),
            Ok(Pushed::Queued)
        );
    }

    #[test]
    fn a_client_that_never_reads_is_closed_and_memory_stays_bounded() {
        let mut out = Outbound::new(10_000, 500);
        let mut now = 0;
        let mut seq = 1;
        while out.poll(now).is_ok() {
            out.push(deliver(seq, 100), now, Room::UNLIMITED).unwrap();
            out.push(typing(), now, Room::UNLIMITED).unwrap();
            assert!(out.used() <= 10_000 + 10_000 / 4);
            seq += 1;
            now += 1;
        }
        assert!(now >= 500);
        assert_eq!(out.poll(now), Err(SlowConsumer));
    }

    #[test]
    fn answers_beyond_the_reserve_close_the_connection() {
        let mut out = Outbound::new(100, 500);
        let big = deliver(0, 10);
        while out.used() + big.len() <= 125 {
            assert_eq!(
                out.push(bytes(Pong { nonce: 1 }), 0, Room::UNLIMITED),
                Ok(Pushed::Queued)
            );
        }
        assert_eq!(out.push(big, 0, Room::UNLIMITED), Ok(Pushed::Dropped));
        let answer = bytes(natter_codec::frame::Done { request: 1 });
        let mut result = Ok(Pushed::Queued);
        for _ in 0..100 {
            result = out.push(answer.clone(), 0, Room::UNLIMITED);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(SlowConsumer));
    }

    #[test]
    fn live_events_of_large_groups_gap_per_conversation() {
        let mut out = Outbound::new(200, 500);
        let live = |conversation: &str, seq| {
            bytes(Deliver {
                inbox_seq: 0,
                conversation: conversation.into(),
                event: Event {
                    seq,
                    body: Bytes::from(vec![0; 150]),
                    ..Event::default()
                },
            })
        };
        assert_eq!(
            out.push(live("g/big", 7), 0, Room::UNLIMITED),
            Ok(Pushed::Queued)
        );
        assert_eq!(
            out.push(live("g/big", 8), 0, Room::UNLIMITED),
            Ok(Pushed::Dropped)
        );
        assert_eq!(
            out.push(live("g/big", 9), 0, Room::UNLIMITED),
            Ok(Pushed::Dropped)
        );
        let used = out.used();
        out.take(usize::MAX);
        out.written(used);
        let frames = decoded(out.take(usize::MAX));
        assert_eq!(
            frames,
            vec![Frame::Gap(Gap {
                conversation: "g/big".into(),
                from: 8,
                to: 9
            })]
        );
    }

    #[test]
    fn a_full_process_drops_ephemerals_then_deliveries_into_a_gap() {
        let mut out = Outbound::new(1024 * 1024, 10_000);
        let half_full = Room {
            used: 600,
            budget: 1_000,
        };
        assert_eq!(out.push(typing(), 0, half_full), Ok(Pushed::Dropped));
        assert_eq!(out.push(deliver(1, 10), 0, half_full), Ok(Pushed::Queued));
        let full = Room {
            used: 1_000,
            budget: 1_000,
        };
        assert_eq!(out.push(deliver(2, 10), 0, full), Ok(Pushed::Dropped));
        assert_eq!(
            out.push(bytes(Pong { nonce: 1 }), 0, full),
            Ok(Pushed::Queued),
            "answers are never dropped: the hub sheds the largest queues instead"
        );
        let taken: usize = out.take(usize::MAX).iter().map(Bytes::len).sum();
        out.written(taken);
        let gap = out.take(usize::MAX);
        assert_eq!(
            Frame::decode(gap[0].clone()).unwrap(),
            Frame::from(Gap {
                conversation: "".into(),
                from: 2,
                to: 2
            })
        );
    }

    #[test]
    fn clearing_a_queue_frees_it_at_once() {
        let mut out = Outbound::new(1024 * 1024, 10_000);
        out.push(deliver(1, 100), 0, Room::UNLIMITED).unwrap();
        out.push(deliver(2, 100), 0, Room::UNLIMITED).unwrap();
        out.clear();
        assert_eq!(out.used(), 0);
        assert!(out.is_empty());
    }
}
