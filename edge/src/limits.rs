//! Rate limits: a token bucket per device session (sans-IO, fed with `now`).

/// A token bucket: `rate` tokens per second up to `burst`; one request costs one token.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    updated_ms: u64,
}

impl TokenBucket {
    /// A full bucket at `now_ms`.
    pub fn new(rate: f64, burst: f64, now_ms: u64) -> Self {
        let burst = burst.max(1.0);
        Self {
            rate: rate.max(f64::MIN_POSITIVE),
            burst,
            tokens: burst,
            updated_ms: now_ms,
        }
    }

    /// Takes one token, or says how many milliseconds until one is available.
    pub fn take(&mut self, now_ms: u64) -> Result<(), u64> {
        let elapsed = now_ms.saturating_sub(self.updated_ms) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.updated_ms = self.updated_ms.max(now_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait_ms = ((1.0 - self.tokens) / self.rate * 1000.0).ceil();
            Err((wait_ms as u64).max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_burst_passes_then_requests_wait_for_refill() {
        let mut bucket = TokenBucket::new(10.0, 3.0, 0);
        for _ in 0..3 {
            assert_eq!(bucket.take(0), Ok(()));
        }
        assert_eq!(bucket.take(0), Err(100));
        assert_eq!(bucket.take(50), Err(50));
        assert_eq!(bucket.take(100), Ok(()));
        assert_eq!(bucket.take(100), Err(100));
    }

    #[test]
    fn refill_never_exceeds_the_burst() {
        let mut bucket = TokenBucket::new(10.0, 2.0, 0);
        assert_eq!(bucket.take(1_000_000), Ok(()));
        assert_eq!(bucket.take(1_000_000), Ok(()));
        assert!(bucket.take(1_000_000).is_err());
    }

    #[test]
    fn a_clock_going_backwards_does_not_mint_tokens() {
        let mut bucket = TokenBucket::new(1.0, 1.0, 5_000);
        assert_eq!(bucket.take(5_000), Ok(()));
        assert!(bucket.take(1_000).is_err());
        assert!(bucket.take(5_500).is_err());
        assert_eq!(bucket.take(6_000), Ok(()));
    }
}
