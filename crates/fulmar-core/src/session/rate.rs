//! Per-client publish rate limit: a token bucket per dimension (messages, bytes) with one
//! second of burst. A client over its budget is not disconnected; the server stops reading
//! from it until the debt is paid back, so TCP backpressure slows the publisher down.

use std::time::{Duration, Instant};

/// One token bucket.
///
/// # Invariants
/// `tokens <= rate` (the burst is one second's worth); negative tokens are debt.
#[derive(Debug, Clone)]
struct Bucket {
    rate: f64,
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn new(rate: f64, now: Instant) -> Self {
        Bucket {
            rate,
            tokens: rate,
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.updated = now;
    }

    fn consume(&mut self, amount: f64, now: Instant) {
        self.refill(now);
        self.tokens -= amount;
    }

    /// How long until the debt is paid back, if there is any.
    fn pause(&self) -> Option<Duration> {
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.rate))
    }
}

/// The publish budget of one client.
#[derive(Debug, Clone, Default)]
pub struct PublishRate {
    messages: Option<Bucket>,
    bytes: Option<Bucket>,
}

impl PublishRate {
    /// A budget of `messages` per second and `bytes` per second; 0 means unlimited.
    pub fn new(messages: u32, bytes: u64, now: Instant) -> Self {
        PublishRate {
            messages: (messages > 0).then(|| Bucket::new(f64::from(messages), now)),
            bytes: (bytes > 0).then(|| Bucket::new(bytes as f64, now)),
        }
    }

    /// Charges one PUBLISH of `payload_len` bytes; returns until when reading must pause.
    pub fn charge(&mut self, payload_len: usize, now: Instant) -> Option<Instant> {
        if let Some(bucket) = &mut self.messages {
            bucket.consume(1.0, now);
        }
        if let Some(bucket) = &mut self.bytes {
            bucket.consume(payload_len as f64, now);
        }
        let pause = [&self.messages, &self.bytes]
            .into_iter()
            .flatten()
            .filter_map(Bucket::pause)
            .max()?;
        Some(now + pause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_of_one_second_then_pauses_for_the_debt() {
        let t0 = Instant::now();
        let mut rate = PublishRate::new(10, 0, t0);
        for _ in 0..10 {
            assert_eq!(rate.charge(100, t0), None);
        }
        let until = rate.charge(100, t0).expect("11th message is over budget");
        assert_eq!(until - t0, Duration::from_millis(100));
        // After the pause the budget has refilled by exactly the debt.
        assert_eq!(rate.charge(0, t0 + Duration::from_millis(200)), None);
    }

    #[test]
    fn byte_budget_applies_independently() {
        let t0 = Instant::now();
        let mut rate = PublishRate::new(0, 1000, t0);
        assert_eq!(rate.charge(1000, t0), None);
        let until = rate.charge(500, t0).expect("over the byte budget");
        assert_eq!(until - t0, Duration::from_millis(500));
    }

    #[test]
    fn unlimited_never_pauses() {
        let t0 = Instant::now();
        let mut rate = PublishRate::new(0, 0, t0);
        assert!((0..10_000).all(|_| rate.charge(1 << 20, t0).is_none()));
    }
}
