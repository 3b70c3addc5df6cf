//! The engine's adaptation pass: per subscriber, which simulcast layer each of its slots
//! forwards (what it asked for, what its downlink takes, who matters most), and per publisher,
//! which layers anyone receives at all (dynacast).
//!
//! Runs every [`ADAPT_EVERY`] for everyone, and at once for a subscriber whose slots or wishes
//! changed. The decisions are [`crate::media::allocate`]'s; this only gathers and applies.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::Engine;
use crate::media::allocate::{Demand, LayerInfo, allocate, ranked};
use crate::media::room::TrackRef;
use crate::media::{PeerId, SessionEvent};

/// How often every subscriber's layers are reconsidered.
pub const ADAPT_EVERY: Duration = Duration::from_millis(500);
/// A layer nobody received for this long stops being encoded.
const DYNACAST_HOLD: Duration = Duration::from_secs(3);

/// One slot's decision.
struct Decision {
    mid: String,
    track: TrackRef,
    target: Option<u8>,
    /// Down for lack of bandwidth: stop the current layer now.
    stop_current: bool,
}

impl Engine {
    /// Reconsiders the layers of `subscribers` (all connected peers when `None`, which also
    /// updates what publishers are told to encode).
    pub(super) fn adapt(&mut self, now: Instant, subscribers: Option<&[PeerId]>) {
        let ids: Vec<PeerId> = match subscribers {
            Some(ids) => ids.to_vec(),
            None => self.peers.keys().copied().collect(),
        };
        // What every source involved measures, read once.
        let mut infos: HashMap<TrackRef, (bool, Vec<LayerInfo>)> = HashMap::new();
        for id in &ids {
            let Some(peer) = self.peers.get(id) else {
                continue;
            };
            for (_, track, _, _) in peer.slot_states() {
                if !infos.contains_key(track)
                    && let Some(info) = match self.sources.get(&track.publisher) {
                        Some(source) => source.layer_infos(now, &track.mid),
                        None => self
                            .peers
                            .get(&track.publisher)
                            .and_then(|p| p.layer_infos(now, &track.mid)),
                    }
                {
                    infos.insert(track.clone(), info);
                }
            }
        }
        let mut wanted: HashMap<TrackRef, Vec<bool>> = HashMap::new();
        let (mut constrained, mut paused) = (0u64, 0u64);
        for id in &ids {
            let Some(peer) = self.peers.get(id) else {
                continue;
            };
            let speaker = self.room_speaker(&peer.key.room);
            let mut video = Vec::new();
            let mut audio_bps = 0;
            let mut decisions = Vec::new();
            for (mid, track, wish, selector) in peer.slot_states() {
                let Some((is_video, layers)) = infos.get(track) else {
                    continue;
                };
                if !is_video {
                    audio_bps += layers.first().map_or(0, |l| l.bitrate);
                    decisions.push(Decision {
                        mid: mid.to_owned(),
                        track: track.clone(),
                        target: Some(0),
                        stop_current: false,
                    });
                    continue;
                }
                video.push((
                    mid,
                    track,
                    Demand {
                        layers,
                        max_height: wish.max_height,
                        // Pinned first, then whoever speaks, then the rest.
                        priority: u8::from(wish.pinned) * 2
                            + u8::from(speaker == Some(track.publisher)),
                        current: selector.current(),
                    },
                ));
            }
            let demands: Vec<Demand> = video.iter().map(|(_, _, d)| *d).collect();
            let choices = allocate(peer.downlink_estimate(), audio_bps, &demands);
            for ((mid, track, demand), choice) in video.iter().zip(&choices) {
                if demand.max_height == Some(0) {
                    paused += 1;
                } else if choice.constrained {
                    constrained += 1;
                }
                if let Some(layer) = choice.wanted {
                    let w = wanted.entry((*track).clone()).or_default();
                    if w.len() <= layer as usize {
                        w.resize(layer as usize + 1, false);
                    }
                    w[layer as usize] = true;
                }
                // A lower layer (or none) for lack of bandwidth: the current one stops now.
                let ranks = ranked(demand.layers);
                let rank = |l: Option<u8>| l.and_then(|l| ranks.iter().position(|&r| r == l));
                let stop_current = choice.constrained
                    && demand.current.is_some()
                    && rank(choice.target) < rank(demand.current);
                decisions.push(Decision {
                    mid: (*mid).to_owned(),
                    track: (*track).clone(),
                    target: choice.target,
                    stop_current,
                });
            }
            let Some(peer) = self.peers.get_mut(id) else {
                continue;
            };
            let mut keyframes = Vec::new();
            for d in decisions {
                // A new target needs its keyframe; one still awaited is asked for again (the
                // publisher's limiter keeps that to one request per second per layer).
                if peer.set_slot_target(&d.mid, d.target, d.stop_current)
                    || peer.slot_waiting(&d.mid)
                {
                    keyframes.push((d.track, d.target));
                }
            }
            let connected = peer.connected;
            for (track, layer) in keyframes {
                if connected {
                    self.request_keyframe(now, &track, layer);
                }
            }
        }
        if subscribers.is_none() {
            self.stats.slots_constrained = constrained;
            self.stats.slots_paused = paused;
            self.dynacast(now, &wanted);
        }
    }

    /// Tells each simulcast publisher which of its layers someone receives.
    fn dynacast(&mut self, now: Instant, wanted: &HashMap<TrackRef, Vec<bool>>) {
        let mut tell = Vec::new();
        for (id, peer) in self.peers.iter_mut() {
            let mut changed = false;
            for mid in peer.simulcast_mids() {
                let track = TrackRef {
                    publisher: *id,
                    mid: mid.clone(),
                };
                let w = wanted.get(&track).map(Vec::as_slice).unwrap_or(&[]);
                changed |= peer.layers_wanted(now, &mid, w, DYNACAST_HOLD).is_some();
            }
            if changed {
                let layers: BTreeMap<String, BTreeMap<String, bool>> = peer
                    .layer_activity()
                    .into_iter()
                    .map(|(mid, rids)| (mid, rids.into_iter().collect()))
                    .collect();
                tell.push((*id, layers));
            }
        }
        for (id, layers) in tell {
            self.emit(id, SessionEvent::Layers(layers));
        }
    }
}
