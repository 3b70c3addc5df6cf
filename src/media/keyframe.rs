//! Keyframe requests toward one publisher track, at most one per interval.
//!
//! A new subscriber cannot decode until the next keyframe, so starting a slot asks the
//! publisher for one (PLI). Many subscribers starting together, or subscribers that keep asking
//! after loss, must not turn into a PLI storm: requests inside the interval are coalesced into
//! one sent when the interval ends, so nobody's request is lost.

use std::time::{Duration, Instant};

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct KeyframeLimiter {
    interval: Duration,
    last_sent: Option<Instant>,
    pending: bool,
}

impl KeyframeLimiter {
    pub fn new(interval: Duration) -> Self {
        KeyframeLimiter {
            interval,
            last_sent: None,
            pending: false,
        }
    }

    /// Asks for a keyframe; true when one should be sent right now.
    pub fn request(&mut self, now: Instant) -> bool {
        self.pending = true;
        self.poll(now)
    }

    /// True when a coalesced request is due now (the caller then sends it).
    pub fn poll(&mut self, now: Instant) -> bool {
        if !self.pending {
            return false;
        }
        match self.last_sent {
            Some(at) if now < at + self.interval => false,
            _ => {
                self.last_sent = Some(now);
                self.pending = false;
                true
            }
        }
    }

    /// When a waiting request becomes due, for the engine's timer.
    pub fn deadline(&self) -> Option<Instant> {
        match (self.pending, self.last_sent) {
            (true, Some(at)) => Some(at + self.interval),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_the_first_request_at_once_and_coalesces_the_rest() {
        let t0 = Instant::now();
        let mut k = KeyframeLimiter::new(Duration::from_secs(1));
        assert!(k.request(t0));
        assert_eq!(k.deadline(), None);
        assert!(!k.request(t0 + Duration::from_millis(100)));
        assert!(!k.request(t0 + Duration::from_millis(300)));
        assert_eq!(k.deadline(), Some(t0 + Duration::from_secs(1)));
        assert!(!k.poll(t0 + Duration::from_millis(999)));
        assert!(
            k.poll(t0 + Duration::from_secs(1)),
            "the coalesced request goes out"
        );
        assert!(!k.poll(t0 + Duration::from_secs(5)), "and only once");
        assert!(k.request(t0 + Duration::from_secs(5)));
    }
}
