//! The engine's session side: applying offers, keeping the rooms' routing and the forwarding
//! table in step, and telling signalling what each participant now receives.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use super::Engine;
use crate::media::offer::{OfferSummary, inspect_offer};
use crate::media::peer::Peer;
use crate::media::rewrite::Translation;
use crate::media::room::{Changes, Room, TrackRef};
use crate::media::{
    MediaEvent, Negotiated, NegotiationError, PeerId, Roster, SessionEvent, SessionKey,
    SessionOffer, SessionView, SlotSource, SlotView, TrackSource,
};

/// The declared sources of the m-lines that publish (others are ignored: a share that stopped
/// needs only its re-offer), each checked against its m-line's kind.
fn published_sources(
    summary: &OfferSummary,
    declared: BTreeMap<String, TrackSource>,
) -> Result<BTreeMap<String, TrackSource>, NegotiationError> {
    let mut out = BTreeMap::new();
    for (mid, source) in declared {
        let Some(m) = summary.published().find(|m| m.mid == mid) else {
            continue;
        };
        if source.kind() != m.kind {
            return Err(NegotiationError::SourceKind {
                mid,
                what: source.as_str(),
                kind: m.kind.as_str(),
            });
        }
        out.insert(mid, source);
    }
    Ok(out)
}

impl Engine {
    pub(super) fn negotiate(
        &mut self,
        now: Instant,
        offer: SessionOffer,
    ) -> Result<Negotiated, NegotiationError> {
        let SessionOffer {
            key,
            peer: expected,
            display_name,
            sdp,
            receives,
            sources,
            presenters,
            watch,
        } = offer;
        let sdp = sdp.as_str();
        let summary = inspect_offer(sdp, &self.config.codecs)?;
        let sources = published_sources(&summary, sources)?;
        self.check_presenters(&key, &sources, presenters)?;
        // A viewer receives only whom it watches, from its first answer on.
        let focus =
            match &watch {
                Some(w) => Some(self.focus_of(&key.room, w).ok_or_else(|| {
                    NegotiationError::WatchedGone {
                        session: w.as_str().to_owned(),
                    }
                })?),
                None => None,
            };
        let (id, created) = match (self.sessions.get(&key).copied(), expected) {
            (Some(id), Some(expected)) if id == expected => (id, false),
            // A re-offer for a peer that closed meanwhile must not create a new one that its
            // session would never learn about.
            (_, Some(_)) => return Err(NegotiationError::Closed),
            (existing, None) => {
                // A session task that starts over (its earlier task ended) replaces whatever
                // peer its key still had.
                if let Some(old) = existing {
                    self.remove_peer(now, old);
                }
                self.admit(&key)?;
                let id = PeerId(self.next_id);
                self.next_id += 1;
                let peer = Peer::new(id, key.clone(), display_name, &self.setup, now)
                    .map_err(NegotiationError::Rejected)?;
                self.peers.insert(id, peer);
                (id, true)
            }
        };

        // Decide the room's new routing on a copy: it only replaces the room once the stack
        // accepted the offer.
        let mut room = self
            .rooms
            .get(&key.room)
            .cloned()
            .unwrap_or_else(|| Room::new(self.config.limits.media_lines));
        let published = summary
            .published()
            .map(|m| (m.mid.clone(), m.kind))
            .collect();
        let slots = summary.slots().map(|m| (m.mid.clone(), m.kind)).collect();
        room.set_focus(id, focus);
        let changes = room.negotiate_as(id, published, slots, receives);
        let streams: HashMap<String, String> = room
            .slots(id)
            .iter()
            .filter_map(|s| {
                let (session, _) = self.publisher_names(s.source.as_ref()?.publisher)?;
                Some((s.mid.clone(), session.to_owned()))
            })
            .collect();

        let peer = self.peers.get_mut(&id).ok_or(NegotiationError::Closed)?;
        peer.watch = watch;
        let previous_sources = std::mem::replace(&mut peer.sources, sources);
        let answer = peer.negotiate(now, sdp, &summary, |mid| {
            streams
                .get(mid)
                .cloned()
                .unwrap_or_else(|| "firesfu".to_owned())
        });
        let answer = match answer {
            Ok(answer) => answer,
            Err(reason) => {
                if created && let Some(mut peer) = self.peers.remove(&id) {
                    peer.close();
                } else if let Some(peer) = self.peers.get_mut(&id) {
                    peer.sources = previous_sources;
                }
                return Err(NegotiationError::Rejected(reason));
            }
        };
        // The answer's ICE credentials: new ones after an ICE restart (the client's new
        // checks use them; the paths already learned stay until it moves).
        self.demux
            .set_credentials(id, &peer.ufrag, &peer.ice_password);
        if created {
            self.sessions.insert(key.clone(), id);
        }
        self.rooms.insert(key.room.clone(), room);
        self.stats.negotiations += 1;
        self.apply_changes(now, &changes, Some(id));
        // Viewers follow a new publisher, share or track.
        self.refocus(now, &key.room);
        self.dirty.push(id);
        Ok(Negotiated {
            peer: id,
            answer,
            view: self.view_of(id),
            roster: self.roster_of(id),
        })
    }

    /// A screen share fits the room's presenter limit (`presenters`, 0: none): somebody else
    /// of the room who shares a screen already takes a place.
    fn check_presenters(
        &self,
        key: &SessionKey,
        sources: &BTreeMap<String, TrackSource>,
        presenters: u32,
    ) -> Result<(), NegotiationError> {
        if presenters == 0 || !sources.values().any(|s| *s == TrackSource::Screen) {
            return Ok(());
        }
        let Some(room) = self.rooms.get(&key.room) else {
            return Ok(());
        };
        let others: Vec<&str> = room
            .peers()
            .filter_map(|id| self.peers.get(&id))
            .filter(|p| p.key != *key && p.presents())
            .map(|p| p.display_name.as_str())
            .collect();
        match others.first() {
            Some(first) if others.len() >= presenters as usize => {
                Err(NegotiationError::PresenterBusy {
                    presenter: (*first).to_owned(),
                    max: presenters,
                })
            }
            _ => Ok(()),
        }
    }

    /// A new participant fits the room's and the instance's participant limits.
    fn admit(&self, key: &SessionKey) -> Result<(), NegotiationError> {
        let limits = self.config.limits;
        let in_room = self.rooms.get(&key.room).map_or(0, |r| r.len());
        if limits.room_participants > 0 && in_room >= limits.room_participants {
            return Err(NegotiationError::RoomFull {
                max: limits.room_participants,
            });
        }
        if limits.participants > 0 && self.peers.len() >= limits.participants {
            return Err(NegotiationError::InstanceFull {
                max: limits.participants,
            });
        }
        Ok(())
    }

    /// Makes the forwarding state follow the room's new assignments and tells the affected
    /// participants (except `negotiating`, whose view travels with its answer).
    pub(super) fn apply_changes(
        &mut self,
        now: Instant,
        changes: &Changes,
        negotiating: Option<PeerId>,
    ) {
        for slot in &changes.stopped {
            self.forwards.remove_slot(slot);
            if let Some(p) = self.peers.get_mut(&slot.subscriber) {
                p.stop_slot(&slot.mid);
            }
        }
        for (slot, track) in &changes.started {
            let params = match self.sources.get(&track.publisher) {
                Some(source) => source
                    .codecs(&track.mid)
                    .map(|c| (vec![c.clone()], Vec::new())),
                None => self
                    .peers
                    .get(&track.publisher)
                    .and_then(|p| p.publish_params(&track.mid))
                    .map(|(c, e)| (c.to_vec(), e.to_vec())),
            };
            let Some((codecs, exts)) = params else {
                continue;
            };
            let Some(subscriber) = self.peers.get_mut(&slot.subscriber) else {
                continue;
            };
            let Some((sub_codecs, sub_exts)) = subscriber.slot_params(&slot.mid) else {
                continue;
            };
            let translation = Translation::new(&codecs, sub_codecs, &exts, sub_exts, &slot.mid);
            subscriber.start_slot(&slot.mid, track.clone(), translation);
            self.forwards.add(track.clone(), slot.clone());
            // Its layer is chosen (and its keyframe asked for) before the next forwarding.
            self.adapt_now.push(slot.subscriber);
        }
        let _ = now;
        for peer in &changes.views_changed {
            if Some(*peer) != negotiating && self.peers.contains_key(peer) {
                let view = self.view_of(*peer);
                self.emit(*peer, SessionEvent::ViewChanged(view));
            }
        }
    }

    /// A publisher's session id and display name, be it a peer or a source.
    pub(super) fn publisher_names(&self, id: PeerId) -> Option<(&str, &str)> {
        match self.peers.get(&id) {
            Some(p) => Some((&p.key.session, &p.display_name)),
            None => self
                .sources
                .get(&id)
                .map(|s| (s.key.session.as_str(), s.display_name.as_str())),
        }
    }

    pub(super) fn emit(&self, id: PeerId, what: SessionEvent) {
        if let Some(peer) = self.peers.get(&id) {
            let _ = self.events.send(MediaEvent {
                peer: id,
                session: peer.key.clone(),
                what,
            });
        }
    }

    pub(super) fn view_of(&mut self, id: PeerId) -> SessionView {
        self.views_made += 1;
        let version = self.views_made;
        let Some(room) = self
            .peers
            .get(&id)
            .and_then(|p| self.rooms.get(&p.key.room))
        else {
            return SessionView::default();
        };
        SessionView {
            version,
            wants: room.wants(id),
            slots: room
                .slots(id)
                .iter()
                .map(|s| SlotView {
                    mid: s.mid.clone(),
                    kind: s.kind,
                    source: s.source.as_ref().and_then(|t| {
                        let (session, display_name) = self.publisher_names(t.publisher)?;
                        Some(SlotSource {
                            session: session.to_owned(),
                            display_name: display_name.to_owned(),
                            mid: t.mid.clone(),
                        })
                    }),
                })
                .collect(),
        }
    }

    pub(super) fn roster_of(&self, id: PeerId) -> Roster {
        let peer = self.peers.get(&id);
        let tracks: Vec<(String, crate::media::MediaKind)> = peer
            .and_then(|p| self.rooms.get(&p.key.room))
            .map(|r| r.published(id).to_vec())
            .unwrap_or_default();
        let sources = tracks
            .iter()
            .map(|(mid, kind)| {
                let declared = peer.and_then(|p| p.sources.get(mid)).copied();
                (
                    mid.clone(),
                    declared.unwrap_or(TrackSource::default_for(*kind)),
                )
            })
            .collect();
        Roster {
            display_name: peer.map(|p| p.display_name.clone()).unwrap_or_default(),
            tracks,
            sources,
            watching: peer
                .and_then(|p| p.watch.as_ref())
                .map(|w| w.as_str().to_owned()),
        }
    }

    /// Asks the publisher of `track` for a keyframe of `layer` (every layer: `None`). A source
    /// cannot be asked: its subscribers wait for its next keyframe.
    pub(super) fn request_keyframe(&mut self, now: Instant, track: &TrackRef, layer: Option<u8>) {
        if let Some(p) = self.peers.get_mut(&track.publisher) {
            if p.request_keyframe(now, &track.mid, layer) {
                self.stats.keyframe_requests += 1;
            }
            self.dirty.push(track.publisher);
        }
    }
}
