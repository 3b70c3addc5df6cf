//! Who receives what in one room: the routing table of an SFU room, as pure data.
//!
//! Every participant receives every other participant's tracks. A participant publishes on the
//! m-lines it offers `sendonly`/`sendrecv` and receives on the `recvonly` m-lines it offers
//! ("slots"). The room assigns each track of the others to a free slot of the same kind; when
//! there are more tracks than slots the participant is told how many it `wants` and re-offers
//! with more (the server never offers). Slots freed by a leaving publisher are reused.
//!
//! The engine applies the returned [`Changes`]; nothing here does I/O or reads a clock.

use std::collections::{BTreeMap, BTreeSet};

use super::PeerId;
use super::offer::MediaKind;

/// One published track: a publisher and the mid of its publish m-line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackRef {
    pub publisher: PeerId,
    pub mid: String,
}

/// One receive slot: a subscriber and the mid of its `recvonly` m-line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotRef {
    pub subscriber: PeerId,
    pub mid: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub mid: String,
    pub kind: MediaKind,
    pub source: Option<TrackRef>,
}

#[derive(Debug, Clone, Default)]
struct Member {
    /// Publish m-lines in offer order.
    published: Vec<(String, MediaKind)>,
    /// Receive slots in offer order.
    slots: Vec<Slot>,
    /// May not receive (its grants): it wants no slot.
    deaf: bool,
    /// Receives only these tracks, in order of preference (a viewer watching one
    /// participant); `None`: every other member's tracks.
    focus: Option<Vec<TrackRef>>,
}

/// What a negotiation or a departure changed, for the engine to apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Slots that now carry a track (newly, or a different one than before).
    pub started: Vec<(SlotRef, TrackRef)>,
    /// Slots that stopped carrying the track they had (and carry nothing now).
    pub stopped: Vec<SlotRef>,
    /// Participants whose view (slots, wants) changed and must be told.
    pub views_changed: BTreeSet<PeerId>,
    /// Publishers whose list of published tracks changed (the room roster).
    pub rosters_changed: BTreeSet<PeerId>,
}

/// How many receive slots of each kind a participant needs to get every other track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Wants {
    pub audio: usize,
    pub video: usize,
}

impl Wants {
    /// At most `slots` receive slots in all, audio first (a room too large to receive whole
    /// still gives everyone's voice).
    pub fn capped(self, slots: usize) -> Wants {
        let audio = self.audio.min(slots);
        Wants {
            audio,
            video: self.video.min(slots - audio),
        }
    }
}

/// The state `diff` compares against: every slot's source and every member's wants.
struct Snapshot {
    slots: BTreeMap<SlotRef, Option<TrackRef>>,
    wants: BTreeMap<PeerId, Wants>,
}

#[derive(Debug, Clone, Default)]
pub struct Room {
    /// Keyed by peer id, which grows with join order: iteration order is join order, which
    /// makes slot assignment deterministic (earlier publishers fill earlier slots).
    members: BTreeMap<PeerId, Member>,
    /// m-lines one offer may have (0: no limit): `wants` never asks for more slots than fit.
    media_lines: usize,
}

impl Room {
    /// A room whose participants' offers may have at most `media_lines` m-lines (0: no limit).
    pub fn new(media_lines: usize) -> Room {
        Room {
            members: BTreeMap::new(),
            media_lines,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether `peer` is a member that may receive (it offered to, and its grants allow it).
    pub fn receives(&self, peer: PeerId) -> bool {
        self.members.get(&peer).is_some_and(|m| !m.deaf)
    }

    pub fn contains(&self, peer: PeerId) -> bool {
        self.members.contains_key(&peer)
    }

    pub fn peers(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.members.keys().copied()
    }

    /// Records the outcome of a (re)negotiation of `peer`: the publish m-lines it now has and
    /// the receive slots it offered. Slots that existed keep their assignment; slots the new
    /// offer no longer has (made inactive) are dropped.
    pub fn negotiate(
        &mut self,
        peer: PeerId,
        published: Vec<(String, MediaKind)>,
        slots: Vec<(String, MediaKind)>,
    ) -> Changes {
        self.negotiate_as(peer, published, slots, true)
    }

    /// [`Room::negotiate`] for a participant that may (`receives`) or may not receive.
    pub fn negotiate_as(
        &mut self,
        peer: PeerId,
        published: Vec<(String, MediaKind)>,
        slots: Vec<(String, MediaKind)>,
        receives: bool,
    ) -> Changes {
        let before = self.snapshot();
        let member = self.members.entry(peer).or_default();
        member.deaf = !receives;
        let roster_changed = member.published != published;
        member.published = published;
        let old = std::mem::take(&mut member.slots);
        member.slots = slots
            .into_iter()
            .map(|(mid, kind)| {
                let source = old
                    .iter()
                    .find(|s| s.mid == mid && s.kind == kind)
                    .and_then(|s| s.source.clone());
                Slot { mid, kind, source }
            })
            .collect();
        self.reassign();
        let mut changes = self.diff(&before);
        // A (re)negotiating participant is always told its view: its answer carries it.
        changes.views_changed.insert(peer);
        if roster_changed {
            changes.rosters_changed.insert(peer);
        }
        changes
    }

    /// Narrows what `peer` receives to `focus` (in order of preference: a track gets a slot
    /// when one of its kind is free; `None`: every other member's tracks). A member not yet in
    /// the room gets its focus before its first negotiation.
    pub fn set_focus(&mut self, peer: PeerId, focus: Option<Vec<TrackRef>>) -> Changes {
        if self.members.get(&peer).is_some_and(|m| m.focus == focus) {
            return Changes::default();
        }
        let before = self.snapshot();
        self.members.entry(peer).or_default().focus = focus;
        self.reassign();
        self.diff(&before)
    }

    /// The members that receive only what they focus on.
    pub fn focused(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.members
            .iter()
            .filter(|(_, m)| m.focus.is_some())
            .map(|(id, _)| *id)
    }

    /// Removes `peer`; the slots its tracks occupied elsewhere become free (and are refilled
    /// by tracks that were waiting for a slot).
    pub fn leave(&mut self, peer: PeerId) -> Changes {
        let before = self.snapshot();
        if self.members.remove(&peer).is_none() {
            return Changes::default();
        }
        self.reassign();
        let mut changes = self.diff(&before);
        changes.views_changed.remove(&peer);
        changes.rosters_changed.insert(peer);
        changes
    }

    pub fn slots(&self, peer: PeerId) -> &[Slot] {
        self.members
            .get(&peer)
            .map(|m| m.slots.as_slice())
            .unwrap_or(&[])
    }

    pub fn published(&self, peer: PeerId) -> &[(String, MediaKind)] {
        self.members
            .get(&peer)
            .map(|m| m.published.as_slice())
            .unwrap_or(&[])
    }

    /// Total receive slots per kind `peer` needs: one per track published by the others, as
    /// far as they fit beside its own m-lines within the m-line limit.
    pub fn wants(&self, peer: PeerId) -> Wants {
        let wants = self.wants_all(peer);
        match self.media_lines {
            0 => wants,
            limit => wants.capped(limit.saturating_sub(self.published(peer).len())),
        }
    }

    fn wants_all(&self, peer: PeerId) -> Wants {
        let mut wants = Wants::default();
        let Some(member) = self.members.get(&peer) else {
            return wants;
        };
        if member.deaf {
            return wants;
        }
        if let Some(focus) = &member.focus {
            for kind in focus.iter().filter_map(|t| self.kind_of(t)) {
                match kind {
                    MediaKind::Audio => wants.audio += 1,
                    MediaKind::Video => wants.video += 1,
                }
            }
            return wants;
        }
        for (_, kind) in self
            .members
            .iter()
            .filter(|(id, _)| **id != peer)
            .flat_map(|(_, m)| m.published.iter())
        {
            match kind {
                MediaKind::Audio => wants.audio += 1,
                MediaKind::Video => wants.video += 1,
            }
        }
        wants
    }

    /// Subscribers currently receiving `track`.
    pub fn subscribers_of<'a>(&'a self, track: &'a TrackRef) -> impl Iterator<Item = SlotRef> + 'a {
        self.members.iter().flat_map(move |(id, m)| {
            m.slots
                .iter()
                .filter(move |s| s.source.as_ref() == Some(track))
                .map(move |s| SlotRef {
                    subscriber: *id,
                    mid: s.mid.clone(),
                })
        })
    }

    /// The kind of a published track (`None`: nobody publishes it).
    fn kind_of(&self, track: &TrackRef) -> Option<MediaKind> {
        self.members
            .get(&track.publisher)?
            .published
            .iter()
            .find(|(mid, _)| *mid == track.mid)
            .map(|(_, kind)| *kind)
    }

    fn reassign(&mut self) {
        let tracks: Vec<(TrackRef, MediaKind)> = self
            .members
            .iter()
            .flat_map(|(id, m)| {
                m.published.iter().map(move |(mid, kind)| {
                    (
                        TrackRef {
                            publisher: *id,
                            mid: mid.clone(),
                        },
                        *kind,
                    )
                })
            })
            .collect();
        let live: BTreeSet<&TrackRef> = tracks.iter().map(|(t, _)| t).collect();

        for (id, member) in self.members.iter_mut() {
            let wanted = |t: &TrackRef| {
                t.publisher != *id && member.focus.as_ref().is_none_or(|f| f.contains(t))
            };
            // Drop assignments whose track is gone, whose kind no longer matches, or that the
            // member's focus left out.
            for slot in &mut member.slots {
                if let Some(src) = &slot.source
                    && (!live.contains(src)
                        || !tracks.iter().any(|(t, k)| t == src && *k == slot.kind)
                        || !wanted(src))
                {
                    slot.source = None;
                }
            }
            // A focused member takes its tracks in its order of preference.
            let order: Vec<&(TrackRef, MediaKind)> = match &member.focus {
                Some(focus) => focus
                    .iter()
                    .filter_map(|f| tracks.iter().find(|(t, _)| t == f))
                    .filter(|(t, _)| t.publisher != *id)
                    .collect(),
                None => tracks.iter().filter(|(t, _)| t.publisher != *id).collect(),
            };
            for (track, kind) in order {
                if member
                    .slots
                    .iter()
                    .any(|s| s.source.as_ref() == Some(track))
                {
                    continue;
                }
                if let Some(free) = member
                    .slots
                    .iter_mut()
                    .find(|s| s.kind == *kind && s.source.is_none())
                {
                    free.source = Some(track.clone());
                }
            }
        }
    }

    fn snapshot(&self) -> Snapshot {
        let mut slots = BTreeMap::new();
        for (id, m) in &self.members {
            for s in &m.slots {
                slots.insert(
                    SlotRef {
                        subscriber: *id,
                        mid: s.mid.clone(),
                    },
                    s.source.clone(),
                );
            }
        }
        Snapshot {
            slots,
            wants: self.wants_snapshot(),
        }
    }

    fn wants_snapshot(&self) -> BTreeMap<PeerId, Wants> {
        self.members
            .keys()
            .map(|id| (*id, self.wants(*id)))
            .collect()
    }

    fn diff(&self, before: &Snapshot) -> Changes {
        let mut changes = Changes::default();
        let after = self.snapshot();
        for (slot, now) in &after.slots {
            let was = before.slots.get(slot).cloned().flatten();
            if &was == now {
                continue;
            }
            changes.views_changed.insert(slot.subscriber);
            match now {
                Some(track) => changes.started.push((slot.clone(), track.clone())),
                None => changes.stopped.push(slot.clone()),
            }
        }
        // Slots that disappeared while they carried something (the member made them inactive).
        for (slot, was) in &before.slots {
            if was.is_some()
                && !after.slots.contains_key(slot)
                && self.members.contains_key(&slot.subscriber)
            {
                changes.views_changed.insert(slot.subscriber);
                changes.stopped.push(slot.clone());
            }
        }
        for (id, wants) in self.wants_snapshot() {
            if before.wants.get(&id) != Some(&wants) {
                changes.views_changed.insert(id);
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MediaKind::{Audio, Video};

    fn av(prefix: &str) -> Vec<(String, MediaKind)> {
        vec![(format!("{prefix}a"), Audio), (format!("{prefix}v"), Video)]
    }

    fn slots(n_audio: usize, n_video: usize, from: usize) -> Vec<(String, MediaKind)> {
        let mut out = Vec::new();
        for i in 0..n_audio {
            out.push((format!("r{}", from + i), Audio));
        }
        for i in 0..n_video {
            out.push((format!("r{}", from + n_audio + i), Video));
        }
        out
    }

    fn sources(room: &Room, peer: u64) -> Vec<Option<(u64, String)>> {
        room.slots(PeerId(peer))
            .iter()
            .map(|s| s.source.as_ref().map(|t| (t.publisher.0, t.mid.clone())))
            .collect()
    }

    #[test]
    fn two_participants_receive_each_other() {
        let mut room = Room::default();
        let c = room.negotiate(PeerId(1), av("p"), slots(1, 1, 0));
        assert!(c.started.is_empty());
        assert_eq!(room.wants(PeerId(1)), Wants::default());

        let c = room.negotiate(PeerId(2), av("p"), slots(1, 1, 0));
        assert_eq!(c.started.len(), 4, "{c:?}");
        assert_eq!(
            sources(&room, 1),
            [Some((2, "pa".into())), Some((2, "pv".into()))]
        );
        assert_eq!(
            sources(&room, 2),
            [Some((1, "pa".into())), Some((1, "pv".into()))]
        );
        assert_eq!(room.wants(PeerId(1)), Wants { audio: 1, video: 1 });
    }

    #[test]
    fn a_third_participant_needs_a_reoffer_from_the_earlier_ones() {
        let mut room = Room::default();
        room.negotiate(PeerId(1), av("p"), slots(1, 1, 0));
        room.negotiate(PeerId(2), av("p"), slots(1, 1, 0));
        let c = room.negotiate(PeerId(3), av("p"), slots(2, 2, 0));
        // 3 gets both others; 1 and 2 have no free slot for 3's tracks yet.
        assert_eq!(c.started.len(), 4);
        assert!(c.views_changed.contains(&PeerId(1)));
        assert_eq!(room.wants(PeerId(1)), Wants { audio: 2, video: 2 });
        assert_eq!(room.slots(PeerId(1)).len(), 2);

        // 1 re-offers with two more slots: they are filled with 3's tracks.
        let c = room.negotiate(
            PeerId(1),
            av("p"),
            [slots(1, 1, 0), slots(1, 1, 2)].concat(),
        );
        assert_eq!(
            c.started,
            vec![
                (
                    SlotRef {
                        subscriber: PeerId(1),
                        mid: "r2".into()
                    },
                    TrackRef {
                        publisher: PeerId(3),
                        mid: "pa".into()
                    }
                ),
                (
                    SlotRef {
                        subscriber: PeerId(1),
                        mid: "r3".into()
                    },
                    TrackRef {
                        publisher: PeerId(3),
                        mid: "pv".into()
                    }
                ),
            ]
        );
        // Earlier assignments do not move.
        assert_eq!(sources(&room, 1)[0], Some((2, "pa".into())));
    }

    #[test]
    fn leaving_frees_slots_which_are_reused() {
        let mut room = Room::default();
        room.negotiate(PeerId(1), av("p"), slots(1, 1, 0));
        room.negotiate(PeerId(2), av("p"), slots(1, 1, 0));
        room.negotiate(PeerId(3), av("p"), slots(2, 2, 0));
        // 1 has one audio and one video slot, both used by 2; 3 waits.
        let c = room.leave(PeerId(2));
        // 1's slots are handed to 3 without renegotiation; 3 loses 2's tracks.
        assert_eq!(
            sources(&room, 1),
            [Some((3, "pa".into())), Some((3, "pv".into()))]
        );
        assert_eq!(
            sources(&room, 3),
            [Some((1, "pa".into())), None, Some((1, "pv".into())), None]
        );
        assert!(c.stopped.contains(&SlotRef {
            subscriber: PeerId(3),
            mid: "r1".into()
        }));
        assert!(c.rosters_changed.contains(&PeerId(2)));
        assert!(!c.views_changed.contains(&PeerId(2)));
        assert_eq!(room.wants(PeerId(3)), Wants { audio: 1, video: 1 });
    }

    #[test]
    fn a_publisher_that_stops_a_track_frees_its_slots() {
        let mut room = Room::default();
        room.negotiate(PeerId(1), av("p"), slots(1, 1, 0));
        room.negotiate(PeerId(2), av("p"), slots(1, 1, 0));
        // 2 re-offers with its video line inactive (only audio published).
        let c = room.negotiate(PeerId(2), vec![("pa".into(), Audio)], slots(1, 1, 0));
        assert_eq!(
            c.stopped,
            vec![SlotRef {
                subscriber: PeerId(1),
                mid: "r1".into()
            }]
        );
        assert!(c.rosters_changed.contains(&PeerId(2)));
        assert_eq!(room.wants(PeerId(1)), Wants { audio: 1, video: 0 });
    }

    #[test]
    fn a_slot_made_inactive_stops_and_its_track_moves_to_a_free_one() {
        let mut room = Room::default();
        room.negotiate(PeerId(1), vec![], slots(0, 2, 0));
        room.negotiate(PeerId(2), vec![("v".into(), Video)], vec![]);
        assert_eq!(sources(&room, 1), [Some((2, "v".into())), None]);
        // 1 re-offers with r0 inactive: r1 takes the track.
        let c = room.negotiate(PeerId(1), vec![], vec![("r1".into(), Video)]);
        assert_eq!(
            c.stopped,
            vec![SlotRef {
                subscriber: PeerId(1),
                mid: "r0".into()
            }]
        );
        assert_eq!(c.started.len(), 1);
        assert_eq!(sources(&room, 1), [Some((2, "v".into()))]);
    }

    #[test]
    fn slots_only_carry_their_own_kind() {
        let mut room = Room::default();
        room.negotiate(PeerId(1), vec![], slots(0, 2, 0));
        room.negotiate(PeerId(2), vec![("a".into(), Audio)], vec![]);
        assert_eq!(sources(&room, 1), [None, None]);
        assert_eq!(room.wants(PeerId(1)), Wants { audio: 1, video: 0 });
    }

    #[test]
    fn renegotiating_without_change_starts_nothing() {
        let mut room = Room::default();
        room.negotiate(PeerId(1), av("p"), slots(1, 1, 0));
        room.negotiate(PeerId(2), av("p"), slots(1, 1, 0));
        let c = room.negotiate(PeerId(2), av("p"), slots(1, 1, 0));
        assert!(c.started.is_empty() && c.stopped.is_empty());
        assert!(c.rosters_changed.is_empty());
    }

    #[test]
    fn a_participant_that_may_not_receive_wants_nothing() {
        let mut room = Room::default();
        room.negotiate(PeerId(1), av("p"), vec![]);
        room.negotiate_as(PeerId(2), av("p"), vec![], false);
        assert_eq!(room.wants(PeerId(2)), Wants::default());
        assert_eq!(room.wants(PeerId(1)), Wants { audio: 1, video: 1 });
    }

    #[test]
    fn wants_fit_the_m_line_limit_with_audio_first() {
        let mut room = Room::new(6);
        for p in 1..=5 {
            room.negotiate(PeerId(p), av("p"), vec![]);
        }
        // Peer 1 publishes 2 m-lines; 4 slots remain for 4 audio + 4 video tracks.
        assert_eq!(room.wants(PeerId(1)), Wants { audio: 4, video: 0 });
        let mut small = Room::new(8);
        small.negotiate(PeerId(1), av("p"), vec![]);
        small.negotiate(PeerId(2), av("p"), vec![]);
        small.negotiate(PeerId(3), av("p"), vec![]);
        assert_eq!(small.wants(PeerId(1)), Wants { audio: 2, video: 2 });
    }

    #[test]
    fn subscribers_of_lists_every_slot_carrying_a_track() {
        let mut room = Room::default();
        room.negotiate(PeerId(1), av("p"), vec![]);
        room.negotiate(PeerId(2), vec![], slots(1, 1, 0));
        room.negotiate(PeerId(3), vec![], slots(1, 1, 0));
        let t = TrackRef {
            publisher: PeerId(1),
            mid: "pv".into(),
        };
        let subs: Vec<_> = room.subscribers_of(&t).map(|s| s.subscriber.0).collect();
        assert_eq!(subs, [2, 3]);
    }

    fn track(publisher: u64, mid: &str) -> TrackRef {
        TrackRef {
            publisher: PeerId(publisher),
            mid: mid.into(),
        }
    }

    #[test]
    fn a_focused_member_receives_only_its_focus_and_follows_it() {
        let mut room = Room::default();
        room.negotiate(PeerId(1), av("p"), vec![]);
        room.negotiate(PeerId(2), av("q"), vec![]);
        // A viewer with one slot of each kind, focused on peer 2 before it negotiates.
        room.set_focus(PeerId(3), Some(vec![track(2, "qv"), track(2, "qa")]));
        room.negotiate(PeerId(3), vec![], slots(1, 1, 0));
        assert_eq!(
            sources(&room, 3),
            [Some((2, "qa".into())), Some((2, "qv".into()))]
        );
        assert_eq!(room.wants(PeerId(3)), Wants { audio: 1, video: 1 });
        assert_eq!(room.focused().collect::<Vec<_>>(), [PeerId(3)]);

        // Moving the focus to peer 1 switches both slots without a re-offer.
        let c = room.set_focus(PeerId(3), Some(vec![track(1, "pv"), track(1, "pa")]));
        assert_eq!(c.started.len(), 2);
        assert!(c.views_changed.contains(&PeerId(3)));
        assert_eq!(
            sources(&room, 3),
            [Some((1, "pa".into())), Some((1, "pv".into()))]
        );
        // Its focus leaving idles its slots; nothing else fills them.
        room.leave(PeerId(1));
        assert_eq!(sources(&room, 3), [None, None]);
        // The others still receive everybody.
        room.negotiate(PeerId(4), vec![], slots(1, 1, 0));
        assert_eq!(
            sources(&room, 4),
            [Some((2, "qa".into())), Some((2, "qv".into()))]
        );
    }
}
