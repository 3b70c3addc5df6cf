//! When to try a camera again: capped exponential backoff with jitter.
//!
//! 1 s, 2 s, 4 s … up to 30 s, each drawn within ±25 % so that cameras that failed together
//! (a switch rebooted) do not all call back in the same second. A camera that went live starts
//! over at 1 s.

use std::time::Duration;

const FIRST: Duration = Duration::from_secs(1);
const CAP: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// The wait before the next attempt, after one more failure. `unit` is a random draw in
    /// [0, 1) (the jitter).
    pub fn next(&mut self, unit: f64) -> Duration {
        let exp = FIRST.saturating_mul(1 << self.failures.min(8)).min(CAP);
        self.failures = self.failures.saturating_add(1);
        exp.mul_f64(0.75 + 0.5 * unit.clamp(0.0, 1.0))
    }

    /// The camera worked: the next failure waits the least again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_a_cap_with_jitter_and_starts_over_after_a_success() {
        let mut b = Backoff::default();
        let mid: Vec<u64> = (0..8).map(|_| b.next(0.5).as_millis() as u64).collect();
        assert_eq!(mid, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
        let mut b = Backoff::default();
        assert_eq!(b.next(0.0), Duration::from_millis(750));
        assert_eq!(b.next(0.999_999).as_millis(), 2499);
        b.reset();
        assert_eq!(b.next(0.5), FIRST);
    }
}
