//! A peer's publish m-lines: their simulcast layers (one per rid, one per SSRC of an
//! `a=ssrc-group:SIM`, or a single one), which SSRC each layer arrives on, what each measures (rate, height, liveness), and keyframe requests
//! toward a layer.

use super::*;
use crate::media::allocate::LayerInfo;
use crate::media::payload::{FrameInfo, VideoCodec};
use crate::media::rate::RateMeter;

const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// Bitrates assumed for layers never seen yet (worst to best), for allocation and dynacast.
const DEFAULT_LAYER_BPS: [u64; 4] = [150_000, 500_000, 1_500_000, 2_500_000];
const DEFAULT_AUDIO_BPS: u64 = 40_000;

/// One simulcast layer of a publish m-line (or its only stream).
pub(super) struct Layer {
    pub rid: Option<String>,
    /// The SSRC the offer declared for it (SSRC-signalled simulcast).
    pub declared: Option<u32>,
    /// Learned from its first packet (or declared); PLIs are addressed to it.
    pub ssrc: Option<u32>,
    /// A keyframe was asked for before the layer started: ask as soon as it does.
    pub keyframe_waiting: bool,
    pub keyframes: KeyframeLimiter,
    pub rate: RateMeter,
    pub height: Option<u16>,
    /// The highest sequence number seen (RFC 3550 wrap-around order).
    pub highest_seq: Option<u16>,
}

impl Layer {
    fn new((rid, declared): (Option<String>, Option<u32>)) -> Self {
        Layer {
            rid,
            declared,
            ssrc: declared,
            keyframe_waiting: false,
            keyframes: KeyframeLimiter::new(DEFAULT_INTERVAL),
            rate: RateMeter::default(),
            height: None,
            highest_seq: None,
        }
    }
}

/// A publish m-line of this peer.
pub(super) struct Publish {
    pub receiver: RTCRtpReceiverId,
    /// Keyframes exist only in video: audio tracks get no keyframe requests.
    pub video: bool,
    pub layers: Vec<Layer>,
    pub codecs: Vec<CodecDesc>,
    pub exts: Vec<ExtDesc>,
    /// Payload type → codec, to look into payloads.
    pub payload_codecs: [VideoCodec; 128],
    /// When each layer was last wanted by a subscriber (dynacast keeps it a while after).
    pub wanted_at: Vec<Option<Instant>>,
    /// The layer activity last told to the publisher, by rid.
    pub told: Option<Vec<bool>>,
    /// The id of the RFC 6464 audio-level extension, where negotiated (audio).
    pub audio_level_id: Option<u8>,
}

impl Publish {
    pub fn new(
        receiver: RTCRtpReceiverId,
        video: bool,
        rids: &[String],
        sim_ssrcs: &[u32],
        codecs: Vec<CodecDesc>,
        exts: Vec<ExtDesc>,
        old: Option<Publish>,
    ) -> Publish {
        let mut payload_codecs = [VideoCodec::Other; 128];
        if video {
            for c in &codecs {
                if let Some(slot) = payload_codecs.get_mut(c.payload_type as usize) {
                    *slot = VideoCodec::from_mime(&c.mime);
                }
            }
        }
        let wanted: Vec<(Option<String>, Option<u32>)> = if !rids.is_empty() {
            rids.iter().map(|r| (Some(r.clone()), None)).collect()
        } else if !sim_ssrcs.is_empty() {
            sim_ssrcs.iter().map(|s| (None, Some(*s))).collect()
        } else {
            vec![(None, None)]
        };
        // A re-offer keeps what was learned about layers that remain.
        let mut old = old;
        let layers: Vec<Layer> = wanted
            .into_iter()
            .map(|id| {
                let kept = old.as_mut().and_then(|o| {
                    let i = o
                        .layers
                        .iter()
                        .position(|l| l.rid == id.0 && l.declared == id.1)?;
                    Some(o.layers.swap_remove(i))
                });
                kept.unwrap_or_else(|| Layer::new(id))
            })
            .collect();
        let n = layers.len();
        let audio_level_id = exts
            .iter()
            .find(|e| !video && e.uri == AUDIO_LEVEL_URI)
            .map(|e| e.id);
        Publish {
            audio_level_id,
            receiver,
            video,
            layers,
            codecs,
            exts,
            payload_codecs,
            wanted_at: old
                .as_ref()
                .map(|o| o.wanted_at.clone())
                .filter(|w| w.len() == n)
                .unwrap_or_else(|| vec![None; n]),
            told: old.and_then(|o| o.told).filter(|t| t.len() == n),
        }
    }

    pub fn simulcast(&self) -> bool {
        self.layers.len() > 1
    }

    /// The layer an SSRC carries: known, or learned now (from its rid, or the only layer).
    pub fn layer_of(&mut self, ssrc: u32, rid: Option<&str>) -> Option<u8> {
        if let Some(i) = self.layers.iter().position(|l| l.ssrc == Some(ssrc)) {
            return Some(i as u8);
        }
        let i = match rid {
            Some(rid) => self
                .layers
                .iter()
                .position(|l| l.rid.as_deref() == Some(rid))?,
            None if !self.simulcast() => 0,
            None => return None,
        };
        self.layers[i].ssrc = Some(ssrc);
        self.layers[i].highest_seq = None;
        Some(i as u8)
    }

    pub fn codec(&self, payload_type: u8) -> VideoCodec {
        self.payload_codecs
            .get(payload_type as usize)
            .copied()
            .unwrap_or(VideoCodec::Other)
    }

    /// Measures one packet of `layer`; true when a later one came first (it is late).
    pub fn observe(
        &mut self,
        now: Instant,
        layer: u8,
        seq: u16,
        bytes: usize,
        info: FrameInfo,
    ) -> bool {
        let Some(l) = self.layers.get_mut(layer as usize) else {
            return false;
        };
        l.rate.on_packet(now, bytes);
        if info.height.is_some() {
            l.height = info.height;
        }
        match l.highest_seq {
            Some(h) if (seq.wrapping_sub(h) as i16) <= 0 => true,
            _ => {
                l.highest_seq = Some(seq);
                false
            }
        }
    }

    pub fn layer_infos(&self, now: Instant) -> Vec<LayerInfo> {
        self.layers
            .iter()
            .enumerate()
            .map(|(i, l)| LayerInfo {
                live: l.rate.live(now),
                height: l.height,
                bitrate: match l.rate.bps() {
                    0 if !self.video => DEFAULT_AUDIO_BPS,
                    0 => DEFAULT_LAYER_BPS[i.min(DEFAULT_LAYER_BPS.len() - 1)],
                    bps => bps,
                },
            })
            .collect()
    }
}

impl Peer {
    /// Asks this publisher for a keyframe of `layer` on `mid` (all layers: `None`), within the
    /// rate limit. True when one was sent. Before a layer started the request waits for its
    /// first packet.
    pub fn request_keyframe(&mut self, now: Instant, mid: &str, layer: Option<u8>) -> bool {
        let Some(p) = self.publishes.get_mut(mid).filter(|p| p.video) else {
            return false;
        };
        let mut due = Vec::new();
        for (i, l) in p.layers.iter_mut().enumerate() {
            if layer.is_some_and(|want| want as usize != i) {
                continue;
            }
            match l.ssrc {
                None => l.keyframe_waiting = true,
                Some(ssrc) if l.keyframes.request(now) => due.push(ssrc),
                Some(_) => {}
            }
        }
        let receiver = p.receiver;
        due.into_iter()
            .filter(|ssrc| self.send_pli(now, receiver, *ssrc))
            .count()
            > 0
    }

    /// Sends keyframe requests that waited for the rate limit. Returns how many.
    pub fn poll_keyframes(&mut self, now: Instant) -> usize {
        let mut due = Vec::new();
        for p in self.publishes.values_mut() {
            for l in &mut p.layers {
                if let Some(ssrc) = l.ssrc
                    && l.keyframes.poll(now)
                {
                    due.push((p.receiver, ssrc));
                }
            }
        }
        due.into_iter()
            .filter(|(receiver, ssrc)| self.send_pli(now, *receiver, *ssrc))
            .count()
    }

    pub fn keyframe_deadline(&self) -> Option<Instant> {
        self.publishes
            .values()
            .flat_map(|p| p.layers.iter().filter_map(|l| l.keyframes.deadline()))
            .min()
    }

    /// A layer's first packet arrived: send the keyframe request that waited for it.
    pub(super) fn layer_started(&mut self, now: Instant, mid: &str, layer: u8) {
        let Some(p) = self.publishes.get_mut(mid) else {
            return;
        };
        let Some(l) = p.layers.get_mut(layer as usize) else {
            return;
        };
        if std::mem::take(&mut l.keyframe_waiting) {
            self.request_keyframe(now, mid, Some(layer));
        }
    }

    fn send_pli(&mut self, now: Instant, receiver: RTCRtpReceiverId, media_ssrc: u32) -> bool {
        let Some(mut r) = self.pc.rtp_receiver(receiver) else {
            return false;
        };
        let sent = r.write_rtcp(
            now,
            vec![Box::new(PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc,
            })],
        );
        tracing::debug!(peer = self.id.0, media_ssrc, ?sent, "keyframe request");
        sent.is_ok()
    }

    pub fn published_count(&self) -> usize {
        self.publishes.len()
    }

    /// Whether the published track `mid` is video, and what each of its layers measures now.
    pub fn layer_infos(&self, now: Instant, mid: &str) -> Option<(bool, Vec<LayerInfo>)> {
        self.publishes
            .get(mid)
            .map(|p| (p.video, p.layer_infos(now)))
    }

    /// The publish mids that carry simulcast.
    pub fn simulcast_mids(&self) -> Vec<String> {
        self.publishes
            .iter()
            .filter(|(_, p)| p.simulcast())
            .map(|(mid, _)| mid.clone())
            .collect()
    }

    /// What the publisher was last told to encode: publish mid → (layer, active), a layer
    /// named by its rid, or by its position in `a=ssrc-group:SIM` ("0" lowest) without rids.
    pub fn layer_activity(&self) -> Vec<(String, Vec<(String, bool)>)> {
        self.publishes
            .iter()
            .filter_map(|(mid, p)| {
                let told = p.told.as_ref()?;
                let rids = p
                    .layers
                    .iter()
                    .zip(told)
                    .enumerate()
                    .map(|(i, (l, a))| (l.rid.clone().unwrap_or_else(|| i.to_string()), *a))
                    .collect();
                Some((mid.clone(), rids))
            })
            .collect()
    }

    /// Records which layers of the simulcast track `mid` some subscriber wants now; `Some` when
    /// what the publisher must be told changed (see [`Peer::layer_activity`]): a layer stays active while
    /// wanted and `hold` after, the worst layer always (a joining subscriber starts on it).
    pub fn layers_wanted(
        &mut self,
        now: Instant,
        mid: &str,
        wanted: &[bool],
        hold: std::time::Duration,
    ) -> Option<()> {
        let p = self.publishes.get_mut(mid).filter(|p| p.simulcast())?;
        let infos = p.layer_infos(now);
        let worst = crate::media::allocate::ranked(&infos).first().copied();
        let mut active = Vec::with_capacity(p.layers.len());
        for i in 0..p.layers.len() {
            if wanted.get(i).copied().unwrap_or(false) {
                p.wanted_at[i] = Some(now);
            }
            let recent = p.wanted_at[i].is_some_and(|t| now.saturating_duration_since(t) < hold);
            active.push(recent || worst == Some(i as u8));
        }
        if p.told.as_ref() == Some(&active) {
            return None;
        }
        // Nothing to pause that was never paused: stay silent until something changes.
        if p.told.is_none() && active.iter().all(|a| *a) {
            p.told = Some(active);
            return None;
        }
        p.told = Some(active);
        Some(())
    }
}
