//! Prometheus metrics of one edge, in a registry of its own so several edges can share a
//! process (tests, `natter serve`).
//!
//! docs/operations.md lists every metric; ops/grafana/natter.json charts them and a test
//! checks that every name it queries is served.

use bytes::Bytes;
use natter_codec::field::Field;
use natter_codec::{ErrorCode, FrameType};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The `kind` label of a DELIVER written before the SYNCED that ends its session's replay.
pub const REPLAY: &str = "replay";
/// The `kind` label of every other DELIVER.
pub const LIVE: &str = "live";

/// Every metric the edge exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Open client connections by transport (tcp, tls, ws, http).
    pub connections: IntGaugeVec,
    /// Frames received from clients, by type name.
    pub frames_in: IntCounterVec,
    /// Frames queued to clients, by type name.
    pub frames_out: IntCounterVec,
    /// ERROR frames queued to clients (the edge's own and the brokers' answers alike), plus
    /// closes and refusals, by code name.
    pub errors: IntCounterVec,
    /// Frames dropped by the slow-consumer policy.
    pub dropped_frames: IntCounter,
    /// Connections closed because the process-wide outbound budget was exceeded.
    pub outbound_shed: IntCounter,
    /// The process-wide outbound budget, in bytes.
    pub outbound_budget_bytes: IntGauge,
    /// HTTP connections refused because every HTTP slot was taken.
    pub http_refused: IntCounter,
    /// SEND forwarded to SEND_ACK received, at the edge.
    pub send_ack_seconds: Histogram,
    /// Event timestamp to DELIVER queued for the client, by `kind`: `live`, or `replay` for
    /// inbox entries a RESUME asked for again.
    pub delivery_seconds: HistogramVec,
    /// `delivery_seconds{kind="live"}`, resolved once.
    pub delivery_live: Histogram,
    /// `delivery_seconds{kind="replay"}`, resolved once.
    pub delivery_replay: Histogram,
    /// Bytes queued towards clients, over all connections.
    pub outbound_queue_bytes: IntGauge,
    /// 1 while the link to a broker is up.
    pub link_up: IntGaugeVec,
    /// The ring version this edge routes by.
    pub ring_version: IntGauge,
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let latency = || {
            vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
            ]
        };
        // Replays carry entries up to the inbox retention (7 days) old.
        let delivery = || {
            let mut buckets = latency();
            buckets.extend([10.0, 60.0, 600.0, 3_600.0, 86_400.0, 604_800.0]);
            buckets
        };
        let delivery_seconds = HistogramVec::new(
            HistogramOpts::new(
                "natter_delivery_seconds",
                "Event timestamp to DELIVER queued at the edge; kind=replay for inbox entries \
                 replayed after a RESUME, kind=live for the rest.",
            )
            .buckets(delivery()),
            &["kind"],
        )?;
        let metrics = Self {
            connections: IntGaugeVec::new(
                Opts::new("natter_connections", "Open client connections."),
                &["transport"],
            )?,
            frames_in: IntCounterVec::new(
                Opts::new("natter_frames_in_total", "Frames received from clients."),
                &["type"],
            )?,
            frames_out: IntCounterVec::new(
                Opts::new("natter_frames_out_total", "Frames queued to clients."),
                &["type"],
            )?,
            errors: IntCounterVec::new(
                Opts::new(
                    "natter_errors_total",
                    "ERROR frames queued to clients (edge-made and broker answers), closes and \
                     refusals, by code.",
                ),
                &["code"],
            )?,
            dropped_frames: IntCounter::new(
                "natter_outbound_dropped_frames_total",
                "Frames dropped by the slow-consumer policy.",
            )?,
            outbound_shed: IntCounter::new(
                "natter_outbound_shed_connections_total",
                "Connections closed, largest queue first, to keep the process under its outbound budget.",
            )?,
            outbound_budget_bytes: IntGauge::new(
                "natter_outbound_budget_bytes",
                "The process-wide budget for bytes queued towards clients.",
            )?,
            http_refused: IntCounter::new(
                "natter_http_refused_total",
                "HTTP connections refused with 503 because every HTTP slot was taken.",
            )?,
            send_ack_seconds: Histogram::with_opts(
                HistogramOpts::new("natter_send_ack_seconds", "SEND to SEND_ACK at the edge.")
                    .buckets(latency()),
            )?,
            delivery_live: delivery_seconds.with_label_values(&[LIVE]),
            delivery_replay: delivery_seconds.with_label_values(&[REPLAY]),
            delivery_seconds,
            outbound_queue_bytes: IntGauge::new(
                "natter_outbound_queue_bytes",
                "Bytes queued towards clients.",
            )?,
            link_up: IntGaugeVec::new(
                Opts::new("natter_link_up", "1 while the link to a broker is up."),
                &["broker"],
            )?,
            ring_version: IntGauge::new("natter_ring_version", "The ring version in use.")?,
            registry,
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 13] = [
            Box::new(metrics.connections.clone()),
            Box::new(metrics.frames_in.clone()),
            Box::new(metrics.frames_out.clone()),
            Box::new(metrics.errors.clone()),
            Box::new(metrics.dropped_frames.clone()),
            Box::new(metrics.outbound_shed.clone()),
            Box::new(metrics.outbound_budget_bytes.clone()),
            Box::new(metrics.http_refused.clone()),
            Box::new(metrics.send_ack_seconds.clone()),
            Box::new(metrics.delivery_seconds.clone()),
            Box::new(metrics.outbound_queue_bytes.clone()),
            Box::new(metrics.link_up.clone()),
            Box::new(metrics.ring_version.clone()),
        ];
        for collector in collectors {
            metrics.registry.register(collector)?;
        }
        Ok(metrics)
    }

    /// The registry, so an embedding process can add its own metrics (the broker's and the
    /// process's in `natter serve`).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Counts one error sent to a client.
    pub fn count_error(&self, code: ErrorCode) {
        let label = code.name().unwrap_or("unknown");
        self.errors.with_label_values(&[label]).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec only fails on invalid metric families, which we never build.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The label for a frame type: its spec name, or `unknown` (never the raw code, so a hostile
/// client cannot grow the label set).
pub fn type_label(frame_type: natter_codec::FrameType) -> &'static str {
    frame_type.name().unwrap_or("unknown")
}

/// The payload of a complete frame of type `wanted` (after its length prefix and type), or
/// `None` for any other frame.
fn payload(frame: &Bytes, wanted: FrameType) -> Option<Bytes> {
    let mut rest = frame.clone();
    u64::decode(&mut rest).ok()?;
    (u64::decode(&mut rest).ok()? == wanted.0).then_some(rest)
}

/// The code of an ERROR frame, read without decoding the frame: `request (i), code (i)`.
pub fn error_code(frame: &Bytes) -> Option<ErrorCode> {
    let mut rest = payload(frame, FrameType::ERROR)?;
    u64::decode(&mut rest).ok()?;
    u64::decode(&mut rest).ok().map(ErrorCode)
}

/// The inbox_seq and event timestamp of a DELIVER, read with a walk over the fields before
/// them (`inbox_seq (i), conversation (s), seq (i), kind (i), target (i), flags (8),
/// timestamp (i)`) instead of decoding the event and its body.
pub fn deliver_timing(frame: &Bytes) -> Option<(u64, u64)> {
    let mut rest = payload(frame, FrameType::DELIVER)?;
    let inbox_seq = u64::decode(&mut rest).ok()?;
    // The conversation is skipped as bytes: it is only walked over, never read.
    Bytes::decode(&mut rest).ok()?;
    for _ in 0..3 {
        u64::decode(&mut rest).ok()?;
    }
    u8::decode(&mut rest).ok()?;
    let timestamp = u64::decode(&mut rest).ok()?;
    Some((inbox_seq, timestamp))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use natter_codec::Frame;
    use natter_codec::frame::{Deliver, Done, Error};
    use natter_codec::types::{Event, EventFlags, EventKind};

    use super::*;

    #[test]
    fn the_field_walk_reads_what_a_full_decode_reads() {
        for (inbox_seq, timestamp, conversation) in [
            (0, 0, "g/x"),
            (1, 1_732_900_000_000, "d/alice/bob"),
            (
                u64::MAX >> 2,
                u64::MAX >> 2,
                "d/a-very-long-user-name/another-one",
            ),
        ] {
            let deliver = Frame::from(Deliver {
                inbox_seq,
                conversation: conversation.into(),
                event: Event {
                    seq: 70_000,
                    kind: EventKind::EDIT,
                    target: 300,
                    flags: EventFlags::EDITED,
                    timestamp,
                    sender: "alice".into(),
                    body: Bytes::from(vec![b'x'; 20_000]),
                    ..Event::default()
                },
            });
            let raw = deliver.to_bytes().unwrap();
            assert_eq!(deliver_timing(&raw), Some((inbox_seq, timestamp)));
            assert_eq!(error_code(&raw), None, "not an ERROR");
        }
        let done = Frame::from(Done { request: 1 }).to_bytes().unwrap();
        assert_eq!(deliver_timing(&done), None);
        assert_eq!(deliver_timing(&Bytes::from_static(&[0x02, 0x12])), None);
    }

    #[test]
    fn an_error_code_is_read_without_a_decode() {
        for code in [
            ErrorCode::FORBIDDEN,
            ErrorCode::NOT_FOUND,
            ErrorCode(0x3fff_ffff),
        ] {
            let error = Frame::from(Error::new(77, code, "no")).to_bytes().unwrap();
            assert_eq!(error_code(&error), Some(code));
        }
        assert_eq!(error_code(&Bytes::from_static(&[0x01, 0x06])), None);
    }
}
