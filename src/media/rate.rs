//! The bitrate of one received stream (a simulcast layer), measured over half-second windows
//! and smoothed, and whether it still arrives.

use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_millis(500);
/// No packet for this long: the stream is not live (paused by its encoder, or lost).
pub const LIVE_FOR: Duration = Duration::from_millis(1500);

#[derive(Debug, Clone, Default)]
pub struct RateMeter {
    window_start: Option<Instant>,
    window_bytes: u64,
    /// Smoothed bits per second; kept after the stream stops (last known rate).
    bps: u64,
    last_packet: Option<Instant>,
}

impl RateMeter {
    pub fn on_packet(&mut self, now: Instant, bytes: usize) {
        self.last_packet = Some(now);
        let start = *self.window_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= WINDOW {
            let sample = self.window_bytes * 8 * 1_000_000 / elapsed.as_micros().max(1) as u64;
            self.bps = if self.bps == 0 {
                sample
            } else {
                (self.bps * 3 + sample) / 4
            };
            self.window_start = Some(now);
            self.window_bytes = 0;
        }
        self.window_bytes += bytes as u64 + 12;
    }

    pub fn bps(&self) -> u64 {
        self.bps
    }

    pub fn live(&self, now: Instant) -> bool {
        self.last_packet
            .is_some_and(|t| now.saturating_duration_since(t) < LIVE_FOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_steady_stream_and_notices_it_stop() {
        let t0 = Instant::now();
        let mut m = RateMeter::default();
        // 100 packets/s of 1238 bytes (+12 header) = 1 Mbit/s.
        for i in 0..300u64 {
            m.on_packet(t0 + Duration::from_millis(i * 10), 1238);
        }
        let at = t0 + Duration::from_millis(2990);
        assert!((950_000..=1_050_000).contains(&m.bps()), "{}", m.bps());
        assert!(m.live(at));
        assert!(!m.live(at + Duration::from_secs(2)));
        assert!(m.bps() > 0, "the last known rate stays");
    }
}
