//! The room's dominant speaker, from the RFC 6464 audio levels publishers send.
//!
//! A simplified, single time-scale take on the dominant speaker identification of Volfin and
//! Cohen (the one Jitsi and mediasoup use): score each participant's recent speech activity,
//! and let a challenger replace the current speaker only when it clearly out-speaks them for a
//! while. It is pure (the caller passes the clock), allocates nothing per sample, and is
//! generic over the participant key so that it is tested without a media stack.
//!
//! # The algorithm
//!
//! 1. **Activity of a sample.** An audio level is `0..=127` in -dBov (0 loudest, 127 digital
//!    silence). Levels at or above [`SILENCE_LEVEL`] (55 -dBov: room noise, breathing, a fan)
//!    count as silence (0); levels at or below [`FULL_LEVEL`] (30 -dBov: ordinary speech into
//!    a headset or laptop microphone) count as full activity (1); linear in between. The
//!    sample's V (voice activity) flag is not used: senders without a VAD leave it 0, so a 0
//!    says nothing, and a loud sample is speech enough whatever the flag says.
//! 2. **Smoothing.** Each participant keeps one exponential moving average of that activity
//!    over time, with time constant [`TIME_CONSTANT`] (0.5 s): the average of roughly the last
//!    half second. It is weighted by time, not by sample: a sample stands for the interval
//!    since the previous one, but for at most [`SAMPLE_SPAN`] (60 ms, a few 20 ms packets);
//!    any longer gap (a muted or paused sender, Opus DTX, loss) is silence. Between samples
//!    the average keeps decaying the same way, so a sender that stops sending fades out
//!    (to a tenth within about 1.2 s) without anybody calling [`SpeakerDetector::on_level`].
//! 3. **Hysteresis.** At every [`SpeakerDetector::poll`] (about every 100 ms), a participant
//!    other than the current speaker *qualifies* when its activity is at least
//!    [`MIN_ACTIVITY`] (0.25) and exceeds the current speaker's by at least [`MARGIN`] (0.2;
//!    with no current speaker, the activity threshold alone). One who has qualified at every
//!    poll for [`HOLD`] (400 ms) becomes the speaker (the most active such one, the smallest
//!    key on a tie), and every challenge starts over. So the current speaker stays through
//!    pauses between words and while others briefly interject (a cough, a "yes" of 300 ms
//!    never reaches the margin, and would not hold long enough if it did); two people talking
//!    at once at similar levels do not flap; and changes are more than [`HOLD`] apart.
//!
//! Someone who starts to speak while nobody else does is reported after about 0.6 s (0.2 s
//! for the average to reach the threshold, the hold, the poll interval). When the current
//! speaker stops and another takes over, the change comes about 1 s into the new turn (the
//! old speaker's average has to fall below the new one's by the margin first).
//!
//! When everybody falls silent the last speaker is kept (as Meet does): the speaker becomes
//! nobody only when the current speaker is [removed](SpeakerDetector::remove), and then only
//! if nobody else is active (otherwise the most active other participant takes over at once).
//! A participant that never sends audio levels (no `ssrc-audio-level` extension negotiated)
//! is never the speaker.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Levels (-dBov) at or above this are silence or background noise: activity 0.
pub const SILENCE_LEVEL: u8 = 55;
/// Levels (-dBov) at or below this are full speech: activity 1.
pub const FULL_LEVEL: u8 = 30;
/// Time constant of the smoothed activity.
pub const TIME_CONSTANT: Duration = Duration::from_millis(500);
/// The longest interval one sample stands for; the rest of a longer gap is silence.
pub const SAMPLE_SPAN: Duration = Duration::from_millis(60);
/// The interval the first sample of a participant stands for (one Opus packet).
const FIRST_SPAN: Duration = Duration::from_millis(20);
/// Smoothed activity a participant needs to become the speaker.
pub const MIN_ACTIVITY: f32 = 0.25;
/// How much more active than the current speaker a challenger must be.
pub const MARGIN: f32 = 0.2;
/// How long a challenger must qualify, at every poll, to take over.
pub const HOLD: Duration = Duration::from_millis(400);

/// The activity (0..=1) one audio level stands for.
fn sample_activity(level: u8) -> f32 {
    let level = level.min(127);
    if level >= SILENCE_LEVEL {
        0.0
    } else if level <= FULL_LEVEL {
        1.0
    } else {
        f32::from(SILENCE_LEVEL - level) / f32::from(SILENCE_LEVEL - FULL_LEVEL)
    }
}

/// `exp(-d / TIME_CONSTANT)`: what is left of the average after `d` of silence.
fn decay(d: Duration) -> f32 {
    (-(d.as_secs_f32() / TIME_CONSTANT.as_secs_f32())).exp()
}

#[derive(Debug, Clone, Copy)]
struct Participant {
    /// The smoothed activity as of `updated`.
    activity: f32,
    /// The time of the last sample.
    updated: Instant,
    /// Since when (first poll) this participant has qualified as a challenger.
    qualified_since: Option<Instant>,
}

impl Participant {
    /// The smoothed activity at `now`: silence since the last sample's span decays it.
    fn activity_at(&self, now: Instant) -> f32 {
        let silent = now
            .saturating_duration_since(self.updated)
            .saturating_sub(SAMPLE_SPAN);
        if silent.is_zero() {
            self.activity
        } else {
            self.activity * decay(silent)
        }
    }

    /// Folds in a sample of activity `a` received at `now`.
    fn sample(&mut self, now: Instant, a: f32) {
        let gap = now.saturating_duration_since(self.updated);
        let span = gap.min(SAMPLE_SPAN);
        let silent = gap - span;
        let mut activity = self.activity;
        if !silent.is_zero() {
            activity *= decay(silent);
        }
        let weight = 1.0 - decay(span);
        activity += weight * (a - activity);
        self.activity = activity;
        self.updated = self.updated.max(now);
    }
}

/// Which participant of a room is the dominant speaker (see the module documentation).
#[derive(Debug, Clone)]
pub struct SpeakerDetector<K> {
    participants: HashMap<K, Participant>,
    current: Option<K>,
    /// The current speaker was removed since the last poll.
    vacated: bool,
}

impl<K: Clone + Eq + Hash + Ord> Default for SpeakerDetector<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Clone + Eq + Hash + Ord> SpeakerDetector<K> {
    pub fn new() -> Self {
        SpeakerDetector {
            participants: HashMap::new(),
            current: None,
            vacated: false,
        }
    }

    /// One RFC 6464 audio-level sample of `who` (level 0..=127 in -dBov: 0 loudest, 127
    /// silence; `voice` = the V flag, may be false when the sender does not set it) received
    /// at `now`.
    pub fn on_level(&mut self, now: Instant, who: &K, level: u8, voice: bool) {
        // The V flag is not used (see the module documentation).
        let _ = voice;
        let a = sample_activity(level);
        match self.participants.get_mut(who) {
            Some(p) => p.sample(now, a),
            None => {
                let mut p = Participant {
                    activity: 0.0,
                    updated: now.checked_sub(FIRST_SPAN).unwrap_or(now),
                    qualified_since: None,
                };
                p.sample(now, a);
                self.participants.insert(who.clone(), p);
            }
        }
    }

    /// Forget a participant (left, or stopped publishing audio).
    pub fn remove(&mut self, who: &K) {
        self.participants.remove(who);
        if self.current.as_ref() == Some(who) {
            self.current = None;
            self.vacated = true;
        }
    }

    /// Re-evaluate at `now` (called every ~100 ms). Returns `Some(new)` when the dominant
    /// speaker changed (`new` = None: nobody speaks any more), `None` when unchanged.
    pub fn poll(&mut self, now: Instant) -> Option<Option<K>> {
        if std::mem::take(&mut self.vacated) {
            // Nobody to defend the place: the most active participant takes it at once.
            let next = self.most_active(now, |_, activity| activity >= MIN_ACTIVITY);
            return Some(self.switch_to(next));
        }
        let incumbent = self
            .current
            .as_ref()
            .and_then(|k| self.participants.get(k))
            .map_or(0.0, |p| p.activity_at(now));
        let bar = MIN_ACTIVITY.max(incumbent + MARGIN);
        for (k, p) in &mut self.participants {
            if self.current.as_ref() != Some(k) && p.activity_at(now) >= bar {
                p.qualified_since.get_or_insert(now);
            } else {
                p.qualified_since = None;
            }
        }
        let next = self.most_active(now, |p, _| {
            p.qualified_since
                .is_some_and(|since| now.saturating_duration_since(since) >= HOLD)
        })?;
        Some(self.switch_to(Some(next)))
    }

    pub fn current(&self) -> Option<&K> {
        self.current.as_ref()
    }

    /// The participant with the highest activity at `now` among those `eligible` accepts
    /// (the smallest key on a tie).
    fn most_active(&self, now: Instant, eligible: impl Fn(&Participant, f32) -> bool) -> Option<K> {
        let mut best: Option<(&K, f32)> = None;
        for (k, p) in &self.participants {
            let activity = p.activity_at(now);
            if !eligible(p, activity) {
                continue;
            }
            let better = match best {
                None => true,
                Some((bk, ba)) => activity > ba || (activity == ba && k < bk),
            };
            if better {
                best = Some((k, activity));
            }
        }
        best.map(|(k, _)| k.clone())
    }

    /// Makes `next` the speaker; every challenge starts over.
    fn switch_to(&mut self, next: Option<K>) -> Option<K> {
        for p in self.participants.values_mut() {
            p.qualified_since = None;
        }
        self.current = next.clone();
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP_MS: u64 = 20;
    const POLL_MS: u64 = 100;

    /// Speech-like levels at `ms` into a turn: 500 ms of words (20–40 -dBov) then a 100 ms
    /// pause (60–127 -dBov), over and over.
    fn speech(ms: u64) -> u8 {
        let i = ms / STEP_MS;
        if ms % 600 < 500 {
            20 + (i * 7 % 21) as u8
        } else if i.is_multiple_of(2) {
            60
        } else {
            127
        }
    }

    /// Runs `levels(participant, ms)` (None: no packet) for participants 0..n from `from_ms` to
    /// `to_ms`, a sample every 20 ms and a poll every 100 ms; returns the changes (time, new).
    struct Sim {
        t0: Instant,
        det: SpeakerDetector<u32>,
        changes: Vec<(u64, Option<u32>)>,
    }

    impl Sim {
        fn new() -> Self {
            Sim {
                t0: Instant::now(),
                det: SpeakerDetector::new(),
                changes: Vec::new(),
            }
        }

        fn at(&self, ms: u64) -> Instant {
            self.t0 + Duration::from_millis(ms)
        }

        fn run(
            &mut self,
            n: u32,
            from_ms: u64,
            to_ms: u64,
            levels: impl Fn(u32, u64) -> Option<u8>,
        ) {
            let mut ms = from_ms;
            while ms < to_ms {
                for who in 0..n {
                    if let Some(level) = levels(who, ms) {
                        self.det.on_level(self.at(ms), &who, level, level < 50);
                    }
                }
                if ms.is_multiple_of(POLL_MS) {
                    self.poll(ms);
                }
                ms += STEP_MS;
            }
        }

        fn poll(&mut self, ms: u64) {
            if let Some(new) = self.det.poll(self.at(ms)) {
                assert_eq!(self.det.current(), new.as_ref());
                self.changes.push((ms, new));
            }
        }
    }

    #[test]
    fn activity_of_levels() {
        assert_eq!(sample_activity(0), 1.0);
        assert_eq!(sample_activity(FULL_LEVEL), 1.0);
        assert_eq!(sample_activity(SILENCE_LEVEL), 0.0);
        assert_eq!(sample_activity(70), 0.0);
        assert_eq!(sample_activity(127), 0.0);
        assert_eq!(sample_activity(255), 0.0);
        let mid = sample_activity((SILENCE_LEVEL + FULL_LEVEL) / 2);
        assert!(mid > 0.4 && mid < 0.6, "{mid}");
    }

    #[test]
    fn a_speaker_is_reported_within_a_second() {
        let mut sim = Sim::new();
        // 0 is silent (level 127) until 2 s, then speaks; 1 stays silent.
        sim.run(2, 0, 6000, |who, ms| match who {
            0 if ms >= 2000 => Some(speech(ms - 2000)),
            _ => Some(127),
        });
        assert_eq!(sim.changes.len(), 1, "{:?}", sim.changes);
        let (at, who) = sim.changes[0];
        assert_eq!(who, Some(0));
        assert!((2000..=3000).contains(&at), "reported at {at} ms");
        assert_eq!(sim.det.current(), Some(&0));
    }

    #[test]
    fn alternating_turns_change_once_per_turn() {
        for dtx in [false, true] {
            let mut sim = Sim::new();
            // Turns of 3 s: 0, 1, 0, 1; the listener is silent (or sends nothing: DTX).
            let turn = |ms: u64| (ms / 3000 % 2) as u32;
            sim.run(2, 0, 12_000, |who, ms| {
                if who == turn(ms) {
                    Some(speech(ms % 3000))
                } else if dtx {
                    None
                } else {
                    Some(127)
                }
            });
            let expected: Vec<Option<u32>> = vec![Some(0), Some(1), Some(0), Some(1)];
            let got: Vec<Option<u32>> = sim.changes.iter().map(|c| c.1).collect();
            assert_eq!(got, expected, "dtx {dtx}: {:?}", sim.changes);
            for (i, (at, _)) in sim.changes.iter().enumerate() {
                let start = i as u64 * 3000;
                assert!(
                    (start..start + 1500).contains(at),
                    "dtx {dtx}: turn {i} reported at {at} ms"
                );
            }
        }
    }

    #[test]
    fn a_brief_interjection_changes_nothing() {
        // 1 says "yes" (or coughs) loudly for 300 ms, at various moments of 0's speech,
        // including 0's pauses.
        for start in [2000, 2300, 2400, 4100, 4500] {
            for level in [10, 25] {
                let mut sim = Sim::new();
                sim.run(2, 0, 8000, |who, ms| match who {
                    0 => Some(speech(ms)),
                    _ if (start..start + 300).contains(&ms) => Some(level),
                    _ => Some(127),
                });
                assert_eq!(
                    sim.changes.iter().map(|c| c.1).collect::<Vec<_>>(),
                    vec![Some(0)],
                    "interjection at {start} ms, level {level}: {:?}",
                    sim.changes
                );
            }
        }
    }

    #[test]
    fn the_speaker_stays_through_a_pause_and_a_short_reply() {
        let mut sim = Sim::new();
        // 0 speaks, pauses 600 ms (sending silence), during which 1 answers for 400 ms.
        sim.run(2, 0, 7000, |who, ms| match who {
            0 if !(3000..3600).contains(&ms) => Some(speech(ms)),
            1 if (3100..3500).contains(&ms) => Some(speech(ms - 3100)),
            _ => Some(127),
        });
        assert_eq!(sim.changes.len(), 1, "{:?}", sim.changes);
    }

    #[test]
    fn crosstalk_at_similar_levels_does_not_flap() {
        let mut sim = Sim::new();
        // 0 starts; 1 joins at 1 s and both talk over each other for 10 s, out of phase.
        sim.run(2, 0, 11_000, |who, ms| match who {
            0 => Some(speech(ms)),
            _ if ms >= 1000 => Some(speech(ms + 300)),
            _ => Some(127),
        });
        assert_eq!(sim.changes, vec![(sim.changes[0].0, Some(0))]);
    }

    #[test]
    fn silence_keeps_the_last_speaker() {
        let mut sim = Sim::new();
        sim.run(3, 0, 10_000, |who, ms| match who {
            0 if ms < 2000 => Some(speech(ms)),
            1 => None,
            _ => Some(127),
        });
        assert_eq!(
            sim.changes.iter().map(|c| c.1).collect::<Vec<_>>(),
            vec![Some(0)]
        );
        assert_eq!(sim.det.current(), Some(&0));
    }

    #[test]
    fn a_muted_speaker_is_silent() {
        let mut sim = Sim::new();
        // 0 speaks and then sends nothing at all (muted: no packets); 1 starts talking.
        sim.run(2, 0, 6000, |who, ms| match who {
            0 if ms < 2000 => Some(speech(ms)),
            0 => None,
            _ if ms >= 2000 => Some(speech(ms - 2000)),
            _ => None,
        });
        let got: Vec<_> = sim.changes.iter().map(|c| c.1).collect();
        assert_eq!(got, vec![Some(0), Some(1)], "{:?}", sim.changes);
        assert!(sim.changes[1].0 <= 3500, "{:?}", sim.changes);
    }

    #[test]
    fn removing_the_speaker() {
        // Nobody else active: nobody speaks any more.
        let mut sim = Sim::new();
        sim.run(2, 0, 3000, |who, ms| (who == 0).then(|| speech(ms)));
        assert_eq!(sim.det.current(), Some(&0));
        sim.det.remove(&0);
        assert_eq!(sim.det.current(), None);
        assert_eq!(sim.det.poll(sim.at(3000)), Some(None));
        assert_eq!(sim.det.poll(sim.at(3100)), None);
        // Silence after that changes nothing.
        sim.run(2, 3200, 5000, |_, _| Some(127));
        assert!(sim.changes.iter().all(|c| c.0 < 3000));
        assert_eq!(sim.det.current(), None);

        // Someone else active (joining 0 at 1 s): they take over at once.
        let mut sim = Sim::new();
        sim.run(2, 0, 3000, |who, ms| match who {
            0 => Some(speech(ms)),
            _ if ms >= 1000 => Some(speech(ms + 200)),
            _ => Some(127),
        });
        assert_eq!(sim.det.current(), Some(&0));
        sim.det.remove(&0);
        assert_eq!(sim.det.poll(sim.at(3000)), Some(Some(1)));
        assert_eq!(sim.det.current(), Some(&1));
        assert_eq!(sim.det.poll(sim.at(3100)), None);

        // Removing someone else changes nothing.
        let mut sim = Sim::new();
        sim.run(3, 0, 3000, |who, ms| (who == 0).then(|| speech(ms)));
        sim.det.remove(&1);
        sim.det.remove(&7);
        assert_eq!(sim.det.poll(sim.at(3000)), None);
        assert_eq!(sim.det.current(), Some(&0));
    }

    #[test]
    fn background_noise_never_speaks() {
        let mut sim = Sim::new();
        // 1 has a noisy room (level 70, flagged as voice) from the start; 0 is silent.
        sim.run(2, 0, 10_000, |who, _| Some(if who == 1 { 70 } else { 127 }));
        assert!(sim.changes.is_empty(), "{:?}", sim.changes);
        assert_eq!(sim.det.current(), None);
        // Nor does the noise take over from a speaker who stopped.
        sim.run(2, 10_000, 12_000, |who, ms| {
            Some(if who == 1 { 70 } else { speech(ms) })
        });
        sim.run(2, 12_000, 20_000, |who, _| {
            Some(if who == 1 { 70 } else { 127 })
        });
        let got: Vec<_> = sim.changes.iter().map(|c| c.1).collect();
        assert_eq!(got, vec![Some(0)]);
        // Noise just under the silence threshold is not enough either.
        let mut sim = Sim::new();
        sim.run(2, 0, 10_000, |who, _| {
            Some(if who == 1 { SILENCE_LEVEL - 5 } else { 127 })
        });
        assert!(sim.changes.is_empty(), "{:?}", sim.changes);
    }

    #[test]
    fn samples_out_of_order_are_harmless() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut det = SpeakerDetector::new();
        det.on_level(t0, &"a", 20, true);
        det.on_level(t0 - Duration::from_millis(40), &"a", 20, true);
        det.on_level(t0, &"a", 20, true);
        assert_eq!(det.poll(t0 - Duration::from_secs(1)), None);
        let a = det.participants[&"a"].activity_at(t0);
        assert!(a.is_finite() && (0.0..=1.0).contains(&a), "{a}");
    }
}
