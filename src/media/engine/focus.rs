//! The engine's side of viewer sessions and of tracks the application muted: pointing each
//! viewer's slots at whom it watches (`media::watch`) whenever the room changes, ending a
//! viewer whose watched participant left, and keeping muted tracks off the slots' packets.

use std::collections::BTreeSet;
use std::time::Instant;

use super::Engine;
use crate::media::room::TrackRef;
use crate::media::watch::{Publisher, Watch, focus, watched};
use crate::media::{CloseReason, MediaKind, PeerId, SessionKey, TrackSource};

impl Engine {
    /// Everyone in `room` who publishes, in join order, as the viewers' choice sees them.
    fn publishers(&self, room: &str) -> Vec<Publisher> {
        let Some(r) = self.rooms.get(room) else {
            return Vec::new();
        };
        r.peers()
            .filter_map(|id| {
                let published = r.published(id);
                if published.is_empty() {
                    return None;
                }
                let (session, _) = self.publisher_names(id)?;
                let source_of = |mid: &str, kind: MediaKind| {
                    let declared = match self.peers.get(&id) {
                        Some(p) => p.sources.get(mid).copied(),
                        None => self
                            .sources
                            .get(&id)
                            .and_then(|s| s.sources().find(|(m, _)| *m == mid).map(|(_, s)| s)),
                    };
                    declared.unwrap_or(TrackSource::default_for(kind))
                };
                Some(Publisher {
                    id,
                    session: session.to_owned(),
                    tracks: published
                        .iter()
                        .map(|(mid, kind)| (mid.clone(), *kind, source_of(mid, *kind)))
                        .collect(),
                })
            })
            .collect()
    }

    /// What a viewer watching `watch` in `room` receives now: `None` when it watches a session
    /// that is not there.
    pub(super) fn focus_of(&self, room: &str, watch: &Watch) -> Option<Vec<TrackRef>> {
        let publishers = self.publishers(room);
        match watched(watch, &publishers, self.room_speaker(room)) {
            Some(p) => Some(focus(p)),
            None if matches!(watch, Watch::Presenter) => Some(Vec::new()),
            None => None,
        }
    }

    /// Points every viewer of `room` at whom it watches now (after a join, a leave, a new
    /// share or a new speaker); a viewer whose watched participant left is closed.
    pub(super) fn refocus(&mut self, now: Instant, room: &str) {
        let Some(r) = self.rooms.get(room) else {
            return;
        };
        let viewers: Vec<(PeerId, Watch)> = r
            .focused()
            .filter_map(|id| Some((id, self.peers.get(&id)?.watch.clone()?)))
            .collect();
        if viewers.is_empty() {
            return;
        }
        let mut gone = Vec::new();
        for (id, watch) in viewers {
            let Some(tracks) = self.focus_of(room, &watch) else {
                gone.push(id);
                continue;
            };
            if let Some(r) = self.rooms.get_mut(room) {
                let changes = r.set_focus(id, Some(tracks));
                self.apply_changes(now, &changes, None);
            }
        }
        for id in gone {
            self.close_peer(now, id, CloseReason::WatchedGone);
        }
    }

    /// The application muted (or unmuted) tracks of session `key`. A video track it unmutes
    /// starts again with a keyframe.
    pub(super) fn set_muted(&mut self, now: Instant, key: &SessionKey, mids: BTreeSet<String>) {
        let Some(&id) = self.sessions.get(key) else {
            return;
        };
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let unmuted: Vec<String> = peer.muted.difference(&mids).cloned().collect();
        peer.muted = mids;
        let room = peer.key.room.clone();
        // Whoever the application silenced stops being the room's speaker.
        let silenced = self.rooms.get(&room).is_some_and(|r| {
            r.published(id)
                .iter()
                .any(|(mid, kind)| *kind == MediaKind::Audio && peer.muted.contains(mid))
        });
        if silenced {
            self.forget_speaker(&room, id);
        }
        for mid in unmuted {
            let track = TrackRef { publisher: id, mid };
            self.request_keyframe(now, &track, None);
        }
    }
}
