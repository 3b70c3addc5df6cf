//! When a failed delivery is tried again (pure): exponential backoff from `base` (×4 per
//! attempt, at most `max_delay`) with ±25 % jitter, for at most `retry_for` after the event
//! reached the sidecar; then the delivery is given up and kept as a dead letter.

use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub base: Duration,
    pub max_delay: Duration,
    pub retry_for: Duration,
}

impl Schedule {
    /// After `attempts` failed attempts (≥ 1), made `age` after the event arrived: how long to
    /// wait before the next one, or `None` to give up. `jitter` is uniform in [0, 1).
    pub fn next(&self, attempts: u32, age: Duration, jitter: f64) -> Option<Duration> {
        let exp = 4u32.saturating_pow(attempts.saturating_sub(1).min(15));
        let delay = self.base.saturating_mul(exp).min(self.max_delay);
        let delay = delay.mul_f64(0.75 + 0.5 * jitter.clamp(0.0, 1.0));
        (age + delay <= self.retry_for).then_some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_with_jitter_and_gives_up_in_bounded_time() {
        let s = Schedule {
            base: Duration::from_secs(5),
            max_delay: Duration::from_secs(3600),
            retry_for: Duration::from_secs(24 * 3600),
        };
        let mid = |n| s.next(n, Duration::ZERO, 0.5).unwrap().as_secs();
        assert_eq!(
            [mid(1), mid(2), mid(3), mid(4), mid(5), mid(9)],
            [5, 20, 80, 320, 1280, 3600]
        );
        assert_eq!(
            s.next(1, Duration::ZERO, 0.0),
            Some(Duration::from_millis(3750))
        );
        assert_eq!(
            s.next(1, Duration::ZERO, 1.0),
            Some(Duration::from_millis(6250))
        );
        assert_eq!(s.next(30, Duration::from_secs(23 * 3600 + 1800), 0.5), None);
        assert!(s.next(u32::MAX, Duration::ZERO, 0.5).is_some());
    }
}
