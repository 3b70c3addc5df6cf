//! Lip sync across the SFU: translating a publisher's RTCP sender reports for its subscribers.
//!
//! A receiver plays a participant's audio and video in sync by mapping each stream's RTP
//! timestamps to one wall clock through the sender reports (SR) it gets for each stream. The
//! publisher's SRs say when it *captured* what a timestamp stands for; an SR made from the time
//! we forward a packet says when it *left us*, which for video is later than for audio by the
//! encoder's delay and the frame's pacing (tens to hundreds of milliseconds): audio and video
//! drift apart. So every SR we send a subscriber is translated from the publisher's:
//!
//! - The publisher's NTP clock is mapped to ours with one offset per publisher, the smallest
//!   `arrival − sent` over its recent SRs (all its streams): the same offset for audio and
//!   video, so their relation is the publisher's exactly, whatever the network did to each SR.
//! - At our time `t`, the source stream's timestamp is the publisher's SR timestamp moved on by
//!   `t − offset − SR time` at the clock rate; the subscriber's is that plus the slot's
//!   timestamp offset ([`crate::media::rewrite::SlotSequencer`]).
//! - Our SRs carry our own NTP time, so that round-trip times from the subscriber's receiver
//!   reports stay meaningful, and streams of different publishers share one clock.
//!
//! Times are microseconds on the NTP epoch (1900); everything here is pure.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;
/// How far back the clock offset looks (publisher clocks drift; a window forgets old SRs).
const OFFSET_WINDOW: Duration = Duration::from_secs(10);
/// SRs older than this are not translated (the publisher stopped that stream).
const SR_MAX_AGE: Duration = Duration::from_secs(30);

/// Microseconds since the NTP epoch.
pub type NtpMicros = u64;

/// Our wall clock in NTP microseconds.
pub fn ntp_micros(wall: SystemTime) -> NtpMicros {
    let since = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
    (since.as_secs() + NTP_UNIX_OFFSET_SECS) * 1_000_000 + u64::from(since.subsec_micros())
}

/// Maps the engine's monotonic instants to our wall clock, fixed at one moment (so that SRs
/// stay monotonic when the system clock is stepped).
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    at: Instant,
    ntp: NtpMicros,
}

impl WallClock {
    pub fn new(at: Instant, wall: SystemTime) -> Self {
        WallClock {
            at,
            ntp: ntp_micros(wall),
        }
    }

    pub fn ntp(&self, t: Instant) -> NtpMicros {
        match t.checked_duration_since(self.at) {
            Some(d) => self.ntp + d.as_micros() as u64,
            None => self
                .ntp
                .saturating_sub(self.at.duration_since(t).as_micros() as u64),
        }
    }
}

/// The 64-bit NTP timestamp of an SR (32.32 fixed point) in microseconds.
pub fn from_ntp64(ntp: u64) -> NtpMicros {
    let secs = ntp >> 32;
    let frac = ntp & 0xffff_ffff;
    secs * 1_000_000 + ((frac * 1_000_000) >> 32)
}

/// Microseconds in the 64-bit NTP format an SR carries.
pub fn to_ntp64(micros: NtpMicros) -> u64 {
    let secs = micros / 1_000_000;
    let frac = ((micros % 1_000_000) << 32) / 1_000_000;
    (secs << 32) | frac
}

/// One stream's latest SR: its NTP time and RTP timestamp, and when it arrived (our clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Report {
    ntp: NtpMicros,
    rtp: u32,
    arrived: NtpMicros,
}

/// What a publisher's SRs tell about its clock and each of its streams.
#[derive(Debug, Default)]
pub struct PublisherClock {
    streams: HashMap<u32, Report>,
    /// Recent (arrival, arrival − sent) pairs; the offset is their minimum.
    samples: VecDeque<(NtpMicros, i64)>,
}

impl PublisherClock {
    /// A sender report about the publisher's stream `ssrc` arrived at `arrived` (our clock).
    pub fn on_sender_report(&mut self, ssrc: u32, ntp64: u64, rtp: u32, arrived: NtpMicros) {
        let ntp = from_ntp64(ntp64);
        self.streams.insert(ssrc, Report { ntp, rtp, arrived });
        let window = OFFSET_WINDOW.as_micros() as u64;
        while self
            .samples
            .front()
            .is_some_and(|(at, _)| arrived.saturating_sub(*at) > window)
        {
            self.samples.pop_front();
        }
        // A publisher sends about one SR per stream per second: a few dozen samples at most.
        if self.samples.len() < 256 {
            self.samples
                .push_back((arrived, arrived as i64 - ntp as i64));
        }
    }

    /// Our clock minus the publisher's, as well as its SRs tell.
    fn offset(&self) -> Option<i64> {
        self.samples.iter().map(|(_, d)| *d).min()
    }

    /// The publisher's RTP timestamp of stream `ssrc` that corresponds to our time `now`.
    pub fn rtp_at(&self, ssrc: u32, clock_rate: u32, now: NtpMicros) -> Option<u32> {
        let report = self.streams.get(&ssrc)?;
        if now.saturating_sub(report.arrived) > SR_MAX_AGE.as_micros() as u64 || clock_rate == 0 {
            return None;
        }
        let publisher_now = now as i64 - self.offset()?;
        let elapsed = publisher_now - report.ntp as i64;
        let ticks = elapsed as i128 * i128::from(clock_rate) / 1_000_000;
        Some(report.rtp.wrapping_add(ticks as i64 as u32))
    }

    /// Forgets a stream (its layer or track ended).
    pub fn forget(&mut self, ssrc: u32) {
        self.streams.remove(&ssrc);
    }
}

/// The SR we send a subscriber for one receive slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotReport {
    pub ntp64: u64,
    pub rtp: u32,
}

/// Translates the SR of a slot fed by `source` (with the slot's timestamp offset `ts_offset`)
/// to our time `now`. `None` while the publisher has not reported that stream.
pub fn translate(
    clock: &PublisherClock,
    source: u32,
    ts_offset: u32,
    clock_rate: u32,
    now: NtpMicros,
) -> Option<SlotReport> {
    let rtp = clock.rtp_at(source, clock_rate, now)?;
    Some(SlotReport {
        ntp64: to_ntp64(now),
        rtp: rtp.wrapping_add(ts_offset),
    })
}

/// An SR from forwarding times, for a slot whose publisher has not reported yet: the last
/// timestamp sent, moved on by the time since it was sent (what rtc's own SRs do).
pub fn from_forwarding(
    last_ts: u32,
    sent_at: NtpMicros,
    clock_rate: u32,
    now: NtpMicros,
) -> SlotReport {
    let elapsed = now.saturating_sub(sent_at) as u128 * u128::from(clock_rate) / 1_000_000;
    SlotReport {
        ntp64: to_ntp64(now),
        rtp: last_ts.wrapping_add(elapsed as u32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;
    const BASE: u64 = 3_900_000_000 * S;

    #[test]
    fn ntp_conversions_round_trip() {
        for micros in [0, 1, 999_999, BASE + 123_456] {
            let back = from_ntp64(to_ntp64(micros));
            assert!(back.abs_diff(micros) <= 1, "{micros} → {back}");
        }
        let unix = UNIX_EPOCH + Duration::from_secs(10);
        assert_eq!(ntp_micros(unix), (NTP_UNIX_OFFSET_SECS + 10) * S);
    }

    /// A publisher whose clock is 5 s behind ours, audio (48 kHz) and video (90 kHz) captured
    /// on one clock; video's SR arrives 180 ms late (queued behind a keyframe), audio's 20 ms.
    #[test]
    fn audio_and_video_share_the_publisher_offset() {
        let pub_base = BASE - 5 * S;
        let mut clock = PublisherClock::default();
        // At publisher time pub_base: audio rtp 1000, video rtp 70000.
        clock.on_sender_report(1, to_ntp64(pub_base), 1000, BASE + 20_000);
        clock.on_sender_report(2, to_ntp64(pub_base), 70_000, BASE + 180_000);
        // One second later on our clock.
        let now = BASE + S;
        let audio = clock.rtp_at(1, 48_000, now).unwrap();
        let video = clock.rtp_at(2, 90_000, now).unwrap();
        // Both map our `now` to the same publisher instant: pub_base + 1 s − 20 ms.
        let audio_t = (audio - 1000) as f64 / 48_000.0;
        let video_t = (video - 70_000) as f64 / 90_000.0;
        assert!((audio_t - video_t).abs() < 0.0001, "{audio_t} vs {video_t}");
        assert!((audio_t - 0.98).abs() < 0.0001, "{audio_t}");
    }

    #[test]
    fn translation_applies_the_slot_offset_and_wraps() {
        let mut clock = PublisherClock::default();
        clock.on_sender_report(7, to_ntp64(BASE), u32::MAX - 10, BASE);
        let r = translate(&clock, 7, 100, 90_000, BASE + S / 1000).unwrap();
        // 1 ms at 90 kHz = 90 ticks, past the wrap, plus the slot's 100.
        assert_eq!(r.rtp, (u32::MAX - 10).wrapping_add(90 + 100));
        assert!(from_ntp64(r.ntp64).abs_diff(BASE + 1000) <= 1);
        assert_eq!(
            translate(&clock, 8, 0, 90_000, BASE),
            None,
            "unknown stream"
        );
        assert_eq!(
            clock.rtp_at(7, 90_000, BASE + 31 * S),
            None,
            "a stale report is not extrapolated"
        );
        clock.forget(7);
        assert_eq!(clock.rtp_at(7, 90_000, BASE), None);
    }

    #[test]
    fn the_offset_takes_the_least_delayed_report_of_the_window() {
        let mut clock = PublisherClock::default();
        clock.on_sender_report(1, to_ntp64(BASE), 0, BASE + 50_000);
        clock.on_sender_report(1, to_ntp64(BASE + S), 48_000, BASE + S + 10_000);
        clock.on_sender_report(1, to_ntp64(BASE + 2 * S), 96_000, BASE + 2 * S + 90_000);
        assert_eq!(clock.offset(), Some(10_000));
        // Twelve seconds on, the 10 ms sample has left the window.
        clock.on_sender_report(1, to_ntp64(BASE + 14 * S), 672_000, BASE + 14 * S + 30_000);
        assert_eq!(clock.offset(), Some(30_000));
    }

    #[test]
    fn the_wall_clock_follows_instants_both_ways() {
        let at = Instant::now();
        let clock = WallClock::new(at, UNIX_EPOCH + Duration::from_secs(100));
        let base = (NTP_UNIX_OFFSET_SECS + 100) * S;
        assert_eq!(clock.ntp(at + Duration::from_millis(5)), base + 5_000);
        if let Some(before) = at.checked_sub(Duration::from_millis(5)) {
            assert_eq!(clock.ntp(before), base - 5_000);
        }
    }

    #[test]
    fn forwarding_reports_move_on_from_the_last_packet() {
        let r = from_forwarding(1000, BASE, 90_000, BASE + S / 2);
        assert_eq!(r.rtp, 1000 + 45_000);
    }
}
