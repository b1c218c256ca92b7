//! Follower replication throttles: token buckets that bound the bytes per
//! second this agent fetches for two kinds of replicas.
//!
//! * **Reassignment**: replicas being added to this broker by a partition
//!   reassignment (the pushed `adding_replicas` names this broker). The rate
//!   comes with every push while a reassignment with a throttle runs, and
//!   goes back to 0 (unthrottled) in the first push after it ends, so a
//!   throttle is never forgotten.
//! * **Catch-up**: any other follower out of the ISR (a broker returning
//!   from a long outage), when the coordinator is configured with one.
//!
//! In-sync followers are never throttled: they carry acks=all traffic.
//!
//! The fetcher asks for an allowance before putting a throttled partition
//! in a request ([`Throttles::allowance`]), and charges what the answer
//! carried ([`Throttles::charge`]). The bucket holds at most one second of
//! tokens and may go negative by one answer; the average over any window
//! longer than a second stays within the rate. Pure arithmetic over an
//! explicit time, so it is tested without sleeping.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The smallest allowance a fetch asks for (so small remainders do not turn
/// into many tiny requests).
pub const MIN_ALLOWANCE: u32 = 16 << 10;

/// Which throttle applies to a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleClass {
    /// Being added by a reassignment.
    Reassignment,
    /// Out of the ISR, catching up.
    CatchUp,
}

/// One token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    rate: u64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(now: Instant) -> Self {
        Bucket {
            rate: 0,
            tokens: 0.0,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + secs * self.rate as f64).min(self.rate as f64);
    }

    fn set_rate(&mut self, rate: u64, now: Instant) {
        self.refill(now);
        if rate != self.rate {
            self.rate = rate;
            // Start with a tenth of a second's worth, not a full burst.
            self.tokens = self.tokens.min(rate as f64 / 10.0);
        }
    }
}

/// Both buckets of an agent, shared by its fetchers.
#[derive(Debug)]
pub struct Throttles {
    buckets: Mutex<[Bucket; 2]>,
}

impl Default for Throttles {
    fn default() -> Self {
        Self::new(Instant::now())
    }
}

fn slot(class: ThrottleClass) -> usize {
    match class {
        ThrottleClass::Reassignment => 0,
        ThrottleClass::CatchUp => 1,
    }
}

impl Throttles {
    /// Unthrottled.
    pub fn new(now: Instant) -> Self {
        Throttles {
            buckets: Mutex::new([Bucket::new(now), Bucket::new(now)]),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, [Bucket; 2]> {
        self.buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Set both rates (bytes per second; 0 = unthrottled).
    pub fn set(&self, reassignment: u64, catch_up: u64, now: Instant) {
        let mut b = self.lock();
        b[0].set_rate(reassignment, now);
        b[1].set_rate(catch_up, now);
    }

    /// The rate of `class` (0 = unthrottled).
    pub fn rate(&self, class: ThrottleClass) -> u64 {
        self.lock()[slot(class)].rate
    }

    /// How many bytes a fetch for a replica of `class` may ask for now:
    /// `Ok(None)` unthrottled, `Ok(Some(n))` at most `n` bytes, `Err(wait)`
    /// none until `wait` has passed.
    pub fn allowance(&self, class: ThrottleClass, now: Instant) -> Result<Option<u32>, Duration> {
        let mut b = self.lock();
        let bucket = &mut b[slot(class)];
        if bucket.rate == 0 {
            return Ok(None);
        }
        bucket.refill(now);
        if bucket.tokens <= 0.0 {
            let secs = (-bucket.tokens + 1.0) / bucket.rate as f64;
            return Err(Duration::from_secs_f64(secs.min(1.0)));
        }
        let n = bucket.tokens.min(f64::from(u32::MAX)) as u32;
        Ok(Some(n.max(MIN_ALLOWANCE)))
    }

    /// Charge `bytes` fetched for a replica of `class`.
    pub fn charge(&self, class: ThrottleClass, bytes: u64, now: Instant) {
        let mut b = self.lock();
        let bucket = &mut b[slot(class)];
        if bucket.rate == 0 {
            return;
        }
        bucket.refill(now);
        bucket.tokens -= bytes as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: ThrottleClass = ThrottleClass::Reassignment;

    #[test]
    fn unthrottled_until_a_rate_is_set_and_after_it_is_cleared() {
        let t0 = Instant::now();
        let t = Throttles::new(t0);
        assert_eq!(t.allowance(R, t0), Ok(None));
        t.set(1_000_000, 0, t0);
        assert_eq!(t.rate(R), 1_000_000);
        assert_eq!(t.allowance(ThrottleClass::CatchUp, t0), Ok(None));
        t.set(0, 0, t0);
        assert_eq!(t.allowance(R, t0), Ok(None));
    }

    #[test]
    fn the_average_rate_stays_within_the_limit() {
        let t0 = Instant::now();
        let t = Throttles::new(t0);
        let rate = 10_000_000u64;
        t.set(rate, 0, t0);
        // A fetcher that always takes its whole allowance in 1 MiB answers,
        // polling every 5 ms, for 10 simulated seconds.
        let mut now = t0;
        let mut fetched = 0u64;
        while now < t0 + Duration::from_secs(10) {
            if let Ok(Some(n)) = t.allowance(R, now) {
                let got = u64::from(n).min(1 << 20);
                t.charge(R, got, now);
                fetched += got;
            }
            now += Duration::from_millis(5);
        }
        let measured = fetched as f64 / 10.0;
        assert!(
            measured <= rate as f64 * 1.02 && measured >= rate as f64 * 0.95,
            "{measured} B/s against {rate}"
        );
    }

    #[test]
    fn an_empty_bucket_says_how_long_to_wait() {
        let t0 = Instant::now();
        let t = Throttles::new(t0);
        t.set(1000, 0, t0);
        t.charge(R, 600, t0);
        let wait = t.allowance(R, t0).unwrap_err();
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(602));
        assert!(t.allowance(R, t0 + wait).is_ok());
    }
}
