//! Prometheus metrics of one edge, in a registry of its own so several edges can share a
//! process (tests, `natter serve`).

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Every metric the edge exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Open client connections by transport (tcp, tls, ws).
    pub connections: IntGaugeVec,
    /// Frames received from clients, by type name.
    pub frames_in: IntCounterVec,
    /// Frames written to clients, by type name.
    pub frames_out: IntCounterVec,
    /// ERROR frames the edge itself sent, and closes, by code name.
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
    /// Event accepted by its owner to DELIVER handed to the client's queue.
    pub delivery_seconds: Histogram,
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
                Opts::new("natter_errors_total", "Errors the edge sent to clients."),
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
            delivery_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "natter_delivery_seconds",
                    "Event timestamp to DELIVER queued at the edge.",
                )
                .buckets(latency()),
            )?,
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

    /// The registry, so an embedding process can add its own metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
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
