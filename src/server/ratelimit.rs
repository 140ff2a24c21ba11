//! Per-submitter rate limit: a token bucket per issuer key id, refilled at
//! `rate` events per second up to `burst`. A request that would overdraw
//! any of its submitters' buckets is refused whole (429 with `Retry-After`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The buckets.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<u32, (f64, Instant)>>,
}

impl RateLimiter {
    /// `rate` events per second per submitter, bursts up to `burst`.
    /// A rate of 0 disables the limit.
    pub fn new(rate: f64, burst: f64) -> RateLimiter {
        RateLimiter {
            rate,
            burst: burst.max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `n` tokens from each submitter's bucket, or none: on refusal,
    /// how long until the request could pass.
    ///
    /// # Errors
    /// The wait, when some bucket has too few tokens.
    pub fn take(&self, wants: &HashMap<u32, usize>, now: Instant) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait = Duration::ZERO;
        let mut refilled = Vec::with_capacity(wants.len());
        for (&key, &n) in wants {
            let (tokens, last) = buckets.get(&key).copied().unwrap_or((self.burst, now));
            let tokens = (tokens + now.saturating_duration_since(last).as_secs_f64() * self.rate)
                .min(self.burst);
            let need = n as f64;
            if need > tokens {
                let secs = if need > self.burst {
                    // Never satisfiable in one request: say so plainly.
                    f64::from(u32::MAX)
                } else {
                    (need - tokens) / self.rate
                };
                wait = wait.max(Duration::from_secs_f64(secs.min(3600.0)));
            }
            refilled.push((key, tokens - need));
        }
        if !wait.is_zero() {
            return Err(wait);
        }
        for (key, tokens) in refilled {
            buckets.insert(key, (tokens, now));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_and_refuse_whole_requests() {
        let l = RateLimiter::new(10.0, 20.0);
        let t0 = Instant::now();
        let one = |k: u32, n: usize| HashMap::from([(k, n)]);
        assert_eq!(l.take(&one(1, 20), t0), Ok(()));
        // Empty now: one more needs 0.1 s.
        assert_eq!(l.take(&one(1, 1), t0), Err(Duration::from_millis(100)));
        // Other submitters are unaffected.
        assert_eq!(l.take(&one(2, 5), t0), Ok(()));
        // After a second, 10 tokens are back.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(l.take(&one(1, 10), t1), Ok(()));
        assert!(l.take(&one(1, 1), t1).is_err());
        // A refused multi-submitter request takes nothing from anyone.
        let both = HashMap::from([(2, 1), (1, 1)]);
        assert!(l.take(&both, t1).is_err());
        assert_eq!(l.take(&one(2, 15), t1), Ok(()));
        // Unlimited.
        assert_eq!(
            RateLimiter::new(0.0, 0.0).take(&one(1, 1_000_000), t0),
            Ok(())
        );
    }
}
