//! Latency samples and their percentiles.

use std::time::Duration;

/// Latency samples in microseconds.
#[derive(Debug, Default)]
pub struct Samples(Vec<u64>);

impl Samples {
    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        self.0
            .push(latency.as_micros().min(u128::from(u64::MAX)) as u64);
    }

    /// Adds another set of samples.
    pub fn merge(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    /// How many samples there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The summary: count and p50, p99, max in milliseconds.
    pub fn summary(mut self) -> serde_json::Value {
        self.0.sort_unstable();
        let at = |q: f64| -> f64 {
            if self.0.is_empty() {
                return f64::NAN;
            }
            let index = ((self.0.len() - 1) as f64 * q).round() as usize;
            self.0[index] as f64 / 1000.0
        };
        serde_json::json!({
            "count": self.0.len(),
            "p50_ms": at(0.50),
            "p99_ms": at(0.99),
            "max_ms": at(1.0),
        })
    }
}
