//! The suite's randomness: one 64-bit seed (from `BALLAST_FAULTS_SEED`, or
//! fresh and printed) and a small deterministic PRNG over it (SplitMix64),
//! so a run's fault schedule replays exactly from its seed. Also the other
//! knobs read from the environment ([`Knobs`]).
//!
//! Must never read a clock or the environment except in
//! [`Knobs::from_env`] and [`fresh_seed`].

use std::time::Duration;

/// SplitMix64: tiny, fast, and good enough to pick faults and timings.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator whose whole output is decided by `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Uniform in `lo..=hi` milliseconds.
    pub fn duration_between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let lo_ms = lo.as_millis() as u64;
        let hi_ms = (hi.as_millis() as u64).max(lo_ms);
        Duration::from_millis(lo_ms + self.below(hi_ms - lo_ms + 1))
    }

    /// Shuffles `items` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// A seed nobody chose: the clock's nanoseconds mixed with the process id.
pub fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    Rng::new(nanos ^ (u64::from(std::process::id()) << 32)).next_u64()
}

/// Parses `90`, `90s`, `500ms`, `30m`, `1h` (whole numbers only).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 90s, 30m or 1h"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!(
            "{text:?}: unknown unit {unit:?} (use ms, s, m or h)"
        )),
    }
}

/// The default length of the fault phase: long enough for seed 1 (CI's) to
/// try every fault kind once, short enough for CI (the whole test stays
/// around 2 minutes on 2 cores).
pub const DEFAULT_DURATION: Duration = Duration::from_secs(105);

/// What a run is told by its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Knobs {
    /// `BALLAST_FAULTS_SEED`, or a fresh seed.
    pub seed: u64,
    /// Whether the seed came from the environment.
    pub seed_given: bool,
    /// `BALLAST_FAULTS_DURATION` (length of the fault phase), default
    /// [`DEFAULT_DURATION`].
    pub duration: Duration,
    /// `BALLAST_FAULTS_STRICT=1`: properties with a known product bug fail
    /// the run too (see docs/RELIABILITY.md).
    pub strict: bool,
}

impl Knobs {
    /// Reads the knobs; a malformed value is an error naming the variable.
    pub fn from_env() -> Result<Knobs, String> {
        let seed = std::env::var("BALLAST_FAULTS_SEED").ok();
        let (seed, seed_given) = match seed.as_deref().map(str::trim) {
            Some(s) if !s.is_empty() => (
                s.parse::<u64>()
                    .map_err(|_| format!("BALLAST_FAULTS_SEED={s:?} is not a u64"))?,
                true,
            ),
            _ => (fresh_seed(), false),
        };
        let duration = match std::env::var("BALLAST_FAULTS_DURATION") {
            Ok(s) if !s.trim().is_empty() => {
                parse_duration(&s).map_err(|e| format!("BALLAST_FAULTS_DURATION: {e}"))?
            }
            _ => DEFAULT_DURATION,
        };
        let strict = matches!(
            std::env::var("BALLAST_FAULTS_STRICT").as_deref(),
            Ok("1" | "true" | "yes")
        );
        Ok(Knobs {
            seed,
            seed_given,
            duration,
            strict,
        })
    }

    /// The one-line commands that replay this run.
    pub fn replay_commands(&self) -> String {
        let duration = if self.duration == DEFAULT_DURATION {
            String::new()
        } else {
            format!("BALLAST_FAULTS_DURATION={}s ", self.duration.as_secs())
        };
        format!(
            "replay: BALLAST_FAULTS_SEED={seed} {duration}cargo nextest run -p ballast-tests --test faults\n\
             or:     scripts/faults.sh --seed {seed} --duration {secs}s",
            seed = self.seed,
            secs = self.duration.as_secs(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_numbers() {
        let a: Vec<u64> = {
            let mut r = Rng::new(7);
            (0..5).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::new(7);
            (0..5).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, {
            let mut r = Rng::new(8);
            (0..5).map(|_| r.next_u64()).collect::<Vec<_>>()
        });
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3d").is_err());
    }

    #[test]
    fn bounded_draws_stay_in_range() {
        let mut r = Rng::new(1);
        for _ in 0..1000 {
            let d = r.duration_between(Duration::from_secs(2), Duration::from_secs(3));
            assert!(d >= Duration::from_secs(2) && d <= Duration::from_secs(3));
            assert!(r.below(3) < 3);
        }
    }
}
