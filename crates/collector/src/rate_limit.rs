//! Per-write-key rate limits: a token bucket per key, refilled at the project's events per second
//! up to its burst.
//!
//! A request is let in while its key's bucket holds at least one token, and then pays for every
//! event it carried, which may leave the bucket in debt. So a batch larger than the burst still
//! gets through once, the average rate still holds, and a key over its limit is refused before its
//! body is even decoded: a noisy sender costs the collector little, and other keys keep their pace.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use scribble_domain::project::RateLimit;

/// How long a sender should wait before its key has a token again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds for a `Retry-After` header: rounded up, at least 1.
    pub fn seconds(self) -> u64 {
        self.0.as_secs_f64().ceil().max(1.0) as u64
    }
}

/// One key's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens now; negative while the key is in debt.
    tokens: f64,
    refilled_at: Instant,
}

impl Bucket {
    fn full(limit: RateLimit, now: Instant) -> Self {
        Self {
            tokens: f64::from(limit.burst),
            refilled_at: now,
        }
    }

    fn refill(&mut self, limit: RateLimit, now: Instant) {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(limit.events_per_second))
            .min(f64::from(limit.burst));
        self.refilled_at = now;
    }

    /// `Ok` while a token is left, else how long until there is one.
    fn admit(&mut self, limit: RateLimit, now: Instant) -> Result<(), RetryAfter> {
        self.refill(limit, now);
        if self.tokens >= 1.0 {
            return Ok(());
        }
        let missing = 1.0 - self.tokens;
        Err(RetryAfter(Duration::from_secs_f64(
            missing / f64::from(limit.events_per_second),
        )))
    }
}

/// The buckets of every write key seen, by key id.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// Whether the key `key_id` may send now under `limit`; `None` limits nothing.
    pub fn admit(
        &self,
        key_id: &str,
        limit: Option<RateLimit>,
        now: Instant,
    ) -> Result<(), RetryAfter> {
        let Some(limit) = limit else { return Ok(()) };
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        buckets
            .entry(key_id.to_owned())
            .or_insert_with(|| Bucket::full(limit, now))
            .admit(limit, now)
    }

    /// Charges `events` to the key's bucket, after they were let in by [`admit`](Self::admit).
    pub fn charge(&self, key_id: &str, limit: Option<RateLimit>, events: usize, now: Instant) {
        let Some(limit) = limit else { return };
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let bucket = buckets
            .entry(key_id.to_owned())
            .or_insert_with(|| Bucket::full(limit, now));
        bucket.refill(limit, now);
        bucket.tokens -= events as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Option<RateLimit> = Some(RateLimit {
        events_per_second: 10,
        burst: 20,
    });

    #[test]
    fn a_key_spends_its_burst_then_waits_for_the_refill() {
        let limiter = RateLimiter::default();
        let start = Instant::now();
        assert_eq!(limiter.admit("k", LIMIT, start), Ok(()));
        limiter.charge("k", LIMIT, 20, start);
        // Empty: one token comes back after 1/10 s.
        let refused = limiter.admit("k", LIMIT, start).unwrap_err();
        assert_eq!(refused.0, Duration::from_millis(100));
        assert_eq!(refused.seconds(), 1);
        assert_eq!(
            limiter.admit("k", LIMIT, start + Duration::from_millis(100)),
            Ok(())
        );
    }

    #[test]
    fn a_batch_over_the_burst_passes_once_and_leaves_the_key_in_debt() {
        let limiter = RateLimiter::default();
        let start = Instant::now();
        assert_eq!(limiter.admit("k", LIMIT, start), Ok(()));
        limiter.charge("k", LIMIT, 50, start);
        // 30 in debt, one more token needed: 3.1 s at 10 per second.
        let refused = limiter.admit("k", LIMIT, start).unwrap_err();
        assert_eq!(refused.0, Duration::from_millis(3100));
        assert_eq!(refused.seconds(), 4);
        assert!(limiter
            .admit("k", LIMIT, start + Duration::from_secs(3))
            .is_err());
        assert_eq!(
            limiter.admit("k", LIMIT, start + Duration::from_millis(3100)),
            Ok(())
        );
    }

    #[test]
    fn keys_have_their_own_buckets_and_no_limit_limits_nothing() {
        let limiter = RateLimiter::default();
        let now = Instant::now();
        limiter.charge("noisy", LIMIT, 1000, now);
        assert!(limiter.admit("noisy", LIMIT, now).is_err());
        assert_eq!(limiter.admit("quiet", LIMIT, now), Ok(()));
        limiter.charge("free", None, 1_000_000, now);
        assert_eq!(limiter.admit("free", None, now), Ok(()));
    }

    #[test]
    fn an_idle_key_refills_only_up_to_its_burst() {
        let limiter = RateLimiter::default();
        let start = Instant::now();
        limiter.charge("k", LIMIT, 20, start);
        let later = start + Duration::from_secs(3600);
        assert_eq!(limiter.admit("k", LIMIT, later), Ok(()));
        limiter.charge("k", LIMIT, 20, later);
        assert!(limiter.admit("k", LIMIT, later).is_err());
    }
}
