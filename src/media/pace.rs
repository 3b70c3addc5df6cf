//! Pacing what a subscriber receives: video leaves at a bounded rate, so that a keyframe (tens
//! of packets that arrive from the publisher at once) is spread over tens of milliseconds
//! instead of hitting the subscriber's link, and its queue, in one burst.
//!
//! A token bucket per subscriber: the rate is [`PACING_FACTOR`] × the subscriber's downlink
//! estimate (libwebrtc paces at 2.5 × its target too: pacing smooths bursts, it does not hold
//! the average below the estimate — choosing layers does that), or [`UNLIMITED_RATE`]'s share
//! when there is no estimate. The bucket holds at most [`BURST`] worth of the rate, so a few
//! packets pass at once. Audio does not wait (it is small and late audio is worse than late
//! video) but spends from the same bucket. A packet never waits longer than [`MAX_DELAY`]:
//! beyond that the queue is flushed, since waiting longer only adds latency (and packets
//! dropped here could not even be retransmitted).
//!
//! Pure and generic over what is queued, so that it is tested without a media stack; the
//! queue's storage is reused (no allocation per packet once it has grown).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Pacing rate ÷ downlink estimate.
pub const PACING_FACTOR: f64 = 2.5;
/// The estimate assumed when there is none (an unconstrained subscriber): pacing at 2.5 × this.
pub const UNLIMITED_RATE: u64 = 8_000_000;
/// How much of the rate may leave at once.
pub const BURST: Duration = Duration::from_millis(10);
/// The longest a packet waits.
pub const MAX_DELAY: Duration = Duration::from_millis(250);
/// What a packet costs beyond its payload (IP, UDP, SRTP, RTP header and extensions), bytes.
pub const OVERHEAD: usize = 60;
/// The bucket never holds less than this (one full-size packet), bits.
const MIN_BURST_BITS: f64 = 12_000.0;

pub struct Pacer<T> {
    rate: f64,
    /// Bits that may leave now; negative: in debt.
    budget: f64,
    refilled: Option<Instant>,
    queue: VecDeque<(Instant, usize, T)>,
}

impl<T> Default for Pacer<T> {
    fn default() -> Self {
        Pacer {
            rate: PACING_FACTOR * UNLIMITED_RATE as f64,
            budget: 0.0,
            refilled: None,
            queue: VecDeque::new(),
        }
    }
}

impl<T> Pacer<T> {
    /// Paces for a downlink estimate of `estimate` bits per second (`None`: no estimate).
    pub fn set_estimate(&mut self, estimate: Option<u64>) {
        self.rate = PACING_FACTOR * estimate.unwrap_or(UNLIMITED_RATE).max(1) as f64;
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    fn burst_bits(&self) -> f64 {
        (self.rate * BURST.as_secs_f64()).max(MIN_BURST_BITS)
    }

    fn refill(&mut self, now: Instant) {
        if let Some(at) = self.refilled {
            let elapsed = now.saturating_duration_since(at).as_secs_f64();
            self.budget = (self.budget + elapsed * self.rate).min(self.burst_bits());
        } else {
            self.budget = self.burst_bits();
        }
        self.refilled = Some(now);
    }

    /// A packet of `bytes` to pace: returned when it may leave now, else queued.
    pub fn offer(&mut self, now: Instant, bytes: usize, item: T) -> Option<T> {
        self.refill(now);
        if self.queue.is_empty() && self.budget > 0.0 {
            self.budget -= bits(bytes);
            return Some(item);
        }
        self.queue.push_back((now, bytes, item));
        None
    }

    /// A packet that leaves now regardless (audio): it spends from the bucket all the same.
    pub fn bypass(&mut self, now: Instant, bytes: usize) {
        self.refill(now);
        self.budget -= bits(bytes);
    }

    /// Hands every packet that may leave by `now` to `send`, in order.
    pub fn release(&mut self, now: Instant, mut send: impl FnMut(T)) {
        self.refill(now);
        while let Some((queued, bytes, _)) = self.queue.front() {
            let overdue = now.saturating_duration_since(*queued) >= MAX_DELAY;
            if self.budget <= 0.0 && !overdue {
                break;
            }
            self.budget -= bits(*bytes);
            if let Some((_, _, item)) = self.queue.pop_front() {
                send(item);
            }
        }
    }

    /// When the next queued packet may leave (`None`: nothing queued).
    pub fn next_release(&self) -> Option<Instant> {
        let (queued, _, _) = self.queue.front()?;
        let at = self.refilled.unwrap_or(*queued);
        let wait = if self.budget > 0.0 {
            Duration::ZERO
        } else {
            // Just past the moment the debt is repaid.
            Duration::from_secs_f64((-self.budget + 1.0) / self.rate)
        };
        Some((at + wait).min(*queued + MAX_DELAY))
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

fn bits(bytes: usize) -> f64 {
    ((bytes + OVERHEAD) * 8) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends every packet at the moments the pacer allows, following `next_release`.
    fn drain(p: &mut Pacer<u32>, mut now: Instant) -> Vec<(u32, Instant)> {
        let mut out = Vec::new();
        while let Some(at) = p.next_release() {
            assert!(at >= now || p.queued() > 0);
            now = now.max(at);
            p.release(now, |i| out.push((i, now)));
        }
        out
    }

    #[test]
    fn a_keyframe_burst_is_spread_at_the_pacing_rate() {
        let t0 = Instant::now();
        let mut p = Pacer::default();
        p.set_estimate(Some(1_000_000)); // paced at 2.5 Mbit/s
        // 80 packets of 1140 bytes (+60): 768 000 bits, ≈ 307 ms at 2.5 Mbit/s; the burst
        // allowance (25 000 bits) lets the first two through at once.
        let mut sent_now = Vec::new();
        for i in 0..80 {
            if let Some(i) = p.offer(t0, 1140, i) {
                sent_now.push(i);
            }
        }
        assert_eq!(sent_now, vec![0, 1, 2]);
        let rest = drain(&mut p, t0);
        assert_eq!(rest.len(), 77);
        assert!(rest.windows(2).all(|w| w[0].0 < w[1].0), "in order");
        let spread = rest.last().unwrap().1 - t0;
        // Bounded by MAX_DELAY: what would leave later is flushed at 250 ms.
        assert!(spread >= Duration::from_millis(240), "{spread:?}");
        assert!(spread <= MAX_DELAY + Duration::from_millis(1), "{spread:?}");
    }

    #[test]
    fn the_rate_holds_between_flushes() {
        let t0 = Instant::now();
        let mut p = Pacer::default();
        p.set_estimate(Some(4_000_000)); // 10 Mbit/s: 9 600 bits a packet → ≈ 0.96 ms each
        for i in 0..100 {
            p.offer(t0, 1140, i);
        }
        let out = drain(&mut p, t0);
        let last = out.last().unwrap().1 - t0;
        assert!(
            last >= Duration::from_millis(85) && last <= Duration::from_millis(100),
            "{last:?}"
        );
    }

    #[test]
    fn small_steady_traffic_is_not_delayed() {
        let t0 = Instant::now();
        let mut p = Pacer::default();
        for i in 0..100u32 {
            let now = t0 + Duration::from_millis(20) * i;
            assert_eq!(p.offer(now, 1000, i), Some(i), "packet {i}");
        }
        assert_eq!(p.next_release(), None);
    }

    #[test]
    fn audio_passes_but_spends_the_budget() {
        let t0 = Instant::now();
        let mut p: Pacer<u32> = Pacer::default();
        p.set_estimate(Some(100_000)); // 250 kbit/s, the bucket holds 12 000 bits
        p.bypass(t0, 1440); // 12 000 bits: empty
        assert_eq!(p.offer(t0, 100, 1), None, "video waits behind the audio");
        let at = p.next_release().unwrap();
        assert!(at > t0);
        let mut out = Vec::new();
        p.release(at, |i| out.push(i));
        assert_eq!(out, vec![1]);
    }

    #[test]
    fn no_estimate_paces_generously() {
        let p: Pacer<u32> = Pacer::default();
        assert_eq!(p.rate(), 20_000_000.0);
    }
}
