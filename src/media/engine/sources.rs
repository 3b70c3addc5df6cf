//! The engine's side of sources (publishers that are not peer connections, `media::source`):
//! joining them to their room, forwarding what they send, letting them go.

use std::time::Instant;

use rtc::rtp;

use super::{Engine, Received};
use crate::media::payload::inspect;
use crate::media::room::Room;
use crate::media::source::{ExternalSource, SourceSpec};
use crate::media::{NegotiationError, PeerId};

impl Engine {
    /// Joins a source to its room (one with the same key leaves first); its tracks start
    /// reaching the room's subscribers through their slots.
    pub(super) fn attach_source(
        &mut self,
        now: Instant,
        spec: SourceSpec,
    ) -> Result<PeerId, NegotiationError> {
        if spec.tracks.is_empty() {
            return Err(NegotiationError::Rejected("the source has no track".into()));
        }
        if let Some(old) = self
            .sources
            .iter()
            .find(|(_, s)| s.key == spec.key)
            .map(|(id, _)| *id)
        {
            self.detach_source(now, old);
        }
        let id = PeerId(self.next_id);
        self.next_id += 1;
        let source = ExternalSource::new(spec);
        let room_name = source.key.room.clone();
        let published = source.published();
        self.sources.insert(id, source);
        let room = self
            .rooms
            .entry(room_name.clone())
            .or_insert_with(|| Room::new(self.config.limits.media_lines));
        let changes = room.negotiate_as(id, published, Vec::new(), false);
        self.apply_changes(now, &changes, None);
        self.refocus(now, &room_name);
        Ok(id)
    }

    /// One RTP packet a source made for its track `index`.
    pub(super) fn source_rtp(
        &mut self,
        now: Instant,
        id: PeerId,
        index: usize,
        packet: rtp::Packet,
    ) {
        let Some(source) = self.sources.get_mut(&id) else {
            return;
        };
        let Some((mid, codec)) = source.on_packet(now, index, packet.payload.len()) else {
            return;
        };
        self.stats.rtp_in += 1;
        self.stats.rtp_bytes_in += packet.payload.len() as u64;
        // One stream per track (no simulcast): a subscriber starts anywhere; its decoder
        // waits for the source's next keyframe.
        let mut info = inspect(codec, &packet.payload);
        info.keyframe_start = true;
        self.inbound.push(Received {
            publisher: id,
            mid: mid.to_owned(),
            layer: 0,
            codec,
            info,
            packet,
        });
    }

    /// The source leaves its room; its slots are freed (subscribers are told).
    pub(super) fn detach_source(&mut self, now: Instant, id: PeerId) {
        let Some(source) = self.sources.remove(&id) else {
            return;
        };
        self.forwards.remove_peer(id);
        if let Some(room) = self.rooms.get_mut(&source.key.room) {
            let changes = room.leave(id);
            if room.is_empty() {
                self.rooms.remove(&source.key.room);
            }
            self.apply_changes(now, &changes, None);
            self.refocus(now, &source.key.room);
        }
    }
}
