//! The per-packet lookup: which subscriber slots a published track goes to.
//!
//! The room decides assignments; this table mirrors them in the shape the hot path needs (a
//! lookup by publisher and mid that allocates nothing) and changes only with assignments.

use std::collections::HashMap;

use super::PeerId;
use super::room::{SlotRef, TrackRef};

#[derive(Debug, Default)]
pub struct ForwardTable {
    by_publisher: HashMap<PeerId, HashMap<String, Vec<SlotRef>>>,
}

impl ForwardTable {
    /// Publishers with routes, and routes (track → slot).
    pub fn sizes(&self) -> [(&'static str, usize); 2] {
        let routes = self
            .by_publisher
            .values()
            .flat_map(|tracks| tracks.values())
            .map(Vec::len)
            .sum();
        [
            ("forwardPublishers", self.by_publisher.len()),
            ("forwardRoutes", routes),
        ]
    }

    pub fn add(&mut self, track: TrackRef, slot: SlotRef) {
        let slots = self
            .by_publisher
            .entry(track.publisher)
            .or_default()
            .entry(track.mid)
            .or_default();
        if !slots.contains(&slot) {
            slots.push(slot);
        }
    }

    /// Removes `slot` from whichever track feeds it.
    pub fn remove_slot(&mut self, slot: &SlotRef) {
        for tracks in self.by_publisher.values_mut() {
            for slots in tracks.values_mut() {
                slots.retain(|s| s != slot);
            }
            tracks.retain(|_, slots| !slots.is_empty());
        }
        self.by_publisher.retain(|_, tracks| !tracks.is_empty());
    }

    /// Forgets everything `peer` publishes or receives.
    pub fn remove_peer(&mut self, peer: PeerId) {
        self.by_publisher.remove(&peer);
        for tracks in self.by_publisher.values_mut() {
            for slots in tracks.values_mut() {
                slots.retain(|s| s.subscriber != peer);
            }
            tracks.retain(|_, slots| !slots.is_empty());
        }
        self.by_publisher.retain(|_, tracks| !tracks.is_empty());
    }

    pub fn slots_of(&self, publisher: PeerId, mid: &str) -> &[SlotRef] {
        self.by_publisher
            .get(&publisher)
            .and_then(|tracks| tracks.get(mid))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(p: u64, mid: &str) -> TrackRef {
        TrackRef {
            publisher: PeerId(p),
            mid: mid.into(),
        }
    }
    fn s(p: u64, mid: &str) -> SlotRef {
        SlotRef {
            subscriber: PeerId(p),
            mid: mid.into(),
        }
    }

    #[test]
    fn tracks_slots_per_track_and_forgets_peers() {
        let mut f = ForwardTable::default();
        f.add(t(1, "0"), s(2, "5"));
        f.add(t(1, "0"), s(3, "5"));
        f.add(t(1, "0"), s(3, "5"));
        f.add(t(2, "0"), s(1, "4"));
        assert_eq!(f.slots_of(PeerId(1), "0"), [s(2, "5"), s(3, "5")]);
        f.remove_slot(&s(2, "5"));
        assert_eq!(f.slots_of(PeerId(1), "0"), [s(3, "5")]);
        f.remove_peer(PeerId(1));
        assert!(f.slots_of(PeerId(1), "0").is_empty());
        assert!(
            f.slots_of(PeerId(2), "0").is_empty(),
            "1 was the only subscriber of 2's track"
        );
    }
}
