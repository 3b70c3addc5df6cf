//! The engine's dominant-speaker pass: per room, every publisher's RFC 6464 audio levels go
//! into a [`SpeakerDetector`]; a change is told to one session of the room (the speaker's own,
//! else any), which writes the room's `live/speaker` document. At most one change per room per
//! [`MIN_GAP`]: a later one waits, and the room always ends up named correctly.

use std::time::{Duration, Instant};

use super::Engine;
use crate::media::speaker::SpeakerDetector;
use crate::media::{PeerId, SessionEvent};

/// How often the detectors are polled.
pub const SPEAKER_POLL: Duration = Duration::from_millis(100);
/// At most one speaker change written per room per this long (twice a second).
const MIN_GAP: Duration = Duration::from_millis(500);

#[derive(Default)]
pub(super) struct RoomSpeaker {
    detector: SpeakerDetector<PeerId>,
    /// The speaker last told to signalling (`Some(None)`: nobody), and when.
    told: Option<Option<PeerId>>,
    told_at: Option<Instant>,
}

impl Engine {
    pub(super) fn on_audio_level(&mut self, now: Instant, peer: PeerId, level: u8, voice: bool) {
        let Some(room) = self.peers.get(&peer).map(|p| &p.key.room) else {
            return;
        };
        // Allocates the room's entry once; afterwards a lookup by reference.
        if !self.speakers.contains_key(room) {
            self.speakers.insert(room.clone(), RoomSpeaker::default());
        }
        if let Some(r) = self.speakers.get_mut(room) {
            r.detector.on_level(now, &peer, level, voice);
        }
    }

    /// The room's dominant speaker now.
    pub(super) fn room_speaker(&self, room: &str) -> Option<PeerId> {
        self.speakers
            .get(room)
            .and_then(|r| r.detector.current().copied())
    }

    /// `peer` left `room`: it can no longer be its speaker.
    pub(super) fn forget_speaker(&mut self, room: &str, peer: PeerId) {
        if let Some(r) = self.speakers.get_mut(room) {
            r.detector.remove(&peer);
        }
    }

    pub(super) fn poll_speakers(&mut self, now: Instant) {
        let mut tell = Vec::new();
        self.speakers.retain(|room, r| {
            r.detector.poll(now);
            let current = r.detector.current().copied();
            let due = r
                .told_at
                .is_none_or(|t| now.saturating_duration_since(t) >= MIN_GAP);
            if r.told != Some(current) && due && (current.is_some() || r.told.is_some()) {
                r.told = Some(current);
                r.told_at = Some(now);
                tell.push((room.clone(), current));
            }
            // A room nobody is left in needs no detector (its document stays as it was).
            self.rooms.contains_key(room)
        });
        for (room, speaker) in tell {
            let named = speaker.and_then(|id| {
                let p = self.peers.get(&id)?;
                Some((p.key.session.clone(), p.display_name.clone()))
            });
            let writer = speaker
                .filter(|id| self.peers.contains_key(id))
                .or_else(|| self.rooms.get(&room).and_then(|r| r.peers().next()));
            if let Some(writer) = writer {
                self.emit(writer, SessionEvent::Speaker(named));
            }
            // Viewers of the presenter may follow the new speaker.
            self.refocus(now, &room);
        }
    }
}
