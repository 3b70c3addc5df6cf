//! The downlink estimate toward one subscriber: rtc's GCC (a delay-based and a loss-based
//! controller, the lower one wins) fed by the transport-wide congestion-control feedback the
//! subscriber sends about what we forward (the stack stamps transport-wide sequence numbers on
//! every packet toward it). The adaptation pass reads the estimate to choose layers.
//!
//! Adjustments to rtc 0.21's `Gcc`:
//! - The estimate counts only once the link showed a limit (GCC's first decrease): until then
//!   a subscriber is unconstrained, gets full quality at once, and one on a thin link drops
//!   within a few seconds of its first congestion signal. Holding everyone to GCC's opening
//!   guess instead (300 kbit/s usually) would keep them on thumbnails for the ~20 s its 8 %/s
//!   ramp needs, as rtc has no probing. Internally GCC starts at 2.5 Mbit/s.
//! - After a decrease, rtc's controller creeps up by at most 60 kbit/s per second for the rest
//!   of the session (libwebrtc forgets its link-capacity estimate; this port never does). After
//!   [`FRESH_START_AFTER`] without a decrease, a fresh controller starts from the current
//!   estimate, back on the multiplicative ramp, so a subscriber whose link recovered climbs back.
//!   A fresh start that runs into congestion again doubles the wait for the next (4 s up to
//!   32 s): on a link that stays thin, each attempt costs a burst of loss.
//!
//! - The published estimate never falls below 85 % of what actually got through in the last
//!   second (bytes the feedback reports as arrived, by departure time). GCC's loss controller
//!   cuts by up to half every 200 ms while loss lasts, and loss lasts until the slot's lower
//!   layer starts (at its keyframe): without a floor it lands far below the link (100 kbit/s on
//!   a 400 kbit/s link), pausing video that would fit.
//!
//! - The first [`WARM_UP`] of feedback is not trusted: with Chromium, its first seconds of
//!   transport-wide feedback on an unimpaired link report 15–65 % loss that later feedback
//!   never shows (cause not found yet; the layer switches and keyframe bursts of a join fall
//!   in that window). GCC runs on it, but the estimate is not published and a fresh
//!   controller starts when it ends; congestion after it counts as usual.
//!
//! Packets that carried no transport-wide sequence number (a stream whose kind did not
//! negotiate the extension) are left out: GCC would read them as lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rtc::interceptor::{BandwidthEstimator, EstimatorStats, Gcc, PacketReport};

const START_BPS: f64 = 2_500_000.0;
const MIN_BPS: f64 = 100_000.0;
const MAX_BPS: f64 = 20_000_000.0;
/// No decrease for this long: forget the capacity the last decrease measured. Doubled (up to
/// [`FRESH_START_MAX`]) each time a fresh start ran into congestion again within
/// [`FRESH_START_FAILS`]; back to this after [`FRESH_START_RESET`] without a decrease.
pub const FRESH_START_AFTER: Duration = Duration::from_secs(4);
const FRESH_START_MAX: Duration = Duration::from_secs(32);
const FRESH_START_FAILS: Duration = Duration::from_secs(5);
const FRESH_START_RESET: Duration = Duration::from_secs(30);
/// What GCC learns in this long after the first feedback is discarded (see the module doc).
const WARM_UP: Duration = Duration::from_secs(5);
/// The window over which the delivered rate is measured.
const DELIVERED_WINDOW: Duration = Duration::from_secs(1);

/// The estimate as the engine reads it: bits per second, 0 until the first feedback.
#[derive(Debug, Clone, Default)]
pub struct SharedEstimate(Arc<AtomicU64>);

impl SharedEstimate {
    pub fn get(&self) -> Option<u64> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            bps => Some(bps),
        }
    }

    fn set(&self, bps: f64) {
        self.0.store(bps.max(1.0) as u64, Ordering::Relaxed);
    }

    /// A REMB (the subscriber's own estimate of its downlink, RFC draft-alvestrand-rmcat-remb)
    /// from a subscriber that negotiated no transport-wide congestion control: its only
    /// estimate, used as it is. Nonsense (not finite, ≤ 0) is ignored.
    pub fn set_from_remb(&self, bps: f32) {
        if bps.is_finite() && bps > 0.0 {
            self.set(f64::from(bps));
        }
    }
}

pub struct DownlinkEstimator {
    gcc: Gcc,
    out: SharedEstimate,
    scratch: Vec<PacketReport>,
    last_target: f64,
    last_decrease: Option<Instant>,
    /// The link showed a limit (GCC decreased at least once): only then is the estimate
    /// published. Before, it is GCC's opening guess, and a subscriber whose link never
    /// congests must not be held to it.
    limited: bool,
    /// Arrived packets of the last [`DELIVERED_WINDOW`] (departure, bytes), and their sum.
    delivered: std::collections::VecDeque<(Instant, usize)>,
    delivered_bytes: usize,
    /// When the first feedback came, until the warm-up is over.
    warming_since: Option<Instant>,
    warmed: bool,
    /// The current wait before a fresh start, and when the last one happened.
    fresh_after: Duration,
    fresh_at: Option<Instant>,
}

impl DownlinkEstimator {
    pub fn new(out: SharedEstimate) -> Self {
        DownlinkEstimator {
            gcc: Gcc::new(START_BPS, MIN_BPS, MAX_BPS),
            out,
            scratch: Vec::new(),
            last_target: START_BPS,
            last_decrease: None,
            limited: false,
            delivered: std::collections::VecDeque::new(),
            delivered_bytes: 0,
            warming_since: None,
            warmed: false,
            fresh_after: FRESH_START_AFTER,
            fresh_at: None,
        }
    }

    /// Bits per second the subscriber received over the last second (by departure time).
    fn delivered_bps(&mut self, reports: &[PacketReport]) -> f64 {
        for r in reports.iter().filter(|r| r.arrived) {
            self.delivered.push_back((r.departure, r.size));
            self.delivered_bytes += r.size;
        }
        let newest = self.delivered.back().map(|(t, _)| *t);
        while let (Some(&(t, size)), Some(newest)) = (self.delivered.front(), newest) {
            if newest.saturating_duration_since(t) <= DELIVERED_WINDOW {
                break;
            }
            self.delivered.pop_front();
            self.delivered_bytes -= size;
        }
        self.delivered_bytes as f64 * 8.0 / DELIVERED_WINDOW.as_secs_f64()
    }
}

impl BandwidthEstimator for DownlinkEstimator {
    fn on_reports(&mut self, now: Instant, reports: &[PacketReport]) {
        self.scratch.clear();
        self.scratch
            .extend(reports.iter().filter(|r| r.is_twcc).cloned());
        if self.scratch.is_empty() {
            return;
        }
        if !self.warmed {
            let since = *self.warming_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= WARM_UP {
                self.warmed = true;
                self.gcc = Gcc::new(START_BPS, MIN_BPS, MAX_BPS);
                self.last_target = START_BPS;
                self.last_decrease = None;
            }
        }
        self.gcc.on_reports(now, &self.scratch);
        let target = self.gcc.target_bitrate();
        if (target - self.last_target).abs() > self.last_target * 0.05 {
            let stats = self.gcc.stats();
            tracing::debug!(
                target_bps = target as u64,
                delay_bps = stats.delay_based_bitrate.map(|b| b as u64),
                loss_bps = stats.loss_based_bitrate.map(|b| b as u64),
                loss = stats.packet_loss,
                limited = self.limited,
                "downlink estimate"
            );
        }
        if target < self.last_target * 0.97 {
            // Congestion again soon after a fresh start: the link did not recover; wait longer
            // before the next one (each one costs the subscriber a burst of loss).
            if self
                .fresh_at
                .take()
                .is_some_and(|t| now.saturating_duration_since(t) < FRESH_START_FAILS)
            {
                self.fresh_after = (self.fresh_after * 2).min(FRESH_START_MAX);
            }
            self.last_decrease = Some(now);
            self.limited |= self.warmed;
        } else if let Some(t) = self.last_decrease {
            let calm = now.saturating_duration_since(t);
            if calm >= self.fresh_after {
                self.gcc = Gcc::new(target, MIN_BPS, MAX_BPS);
                self.last_decrease = None;
                self.fresh_at = Some(now);
            }
        } else if self
            .fresh_at
            .is_some_and(|t| now.saturating_duration_since(t) >= FRESH_START_RESET)
        {
            self.fresh_after = FRESH_START_AFTER;
            self.fresh_at = None;
        }
        self.last_target = target;
        let reports = std::mem::take(&mut self.scratch);
        let floor = self.delivered_bps(&reports) * 0.85;
        self.scratch = reports;
        if self.limited {
            self.out.set(target.max(floor));
        }
    }

    fn target_bitrate(&self) -> f64 {
        self.gcc.target_bitrate()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.gcc.handle_timeout(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.gcc.poll_timeout()
    }

    fn stats(&self) -> EstimatorStats {
        self.gcc.stats()
    }
}
