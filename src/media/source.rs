//! Publishers that are not peer connections: media the instance itself brings into a room (an
//! RTSP camera, [`crate::ingest`]).
//!
//! A source joins its room like a participant that publishes and receives nothing: the room
//! gives its tracks slots, subscribers forward its packets as they would a peer's. It sends
//! RTP packets it made (its own payload type, sequence numbers and timestamps, as its
//! [`SourceTrack::codec`] says); it cannot be asked for a keyframe, so a subscriber that starts
//! mid-stream waits for the source's next one.

use std::time::Instant;

use super::allocate::LayerInfo;
use super::payload::VideoCodec;
use super::rate::RateMeter;
use super::rewrite::CodecDesc;
use super::{MediaKind, SessionKey, TrackSource};

/// What a source publishes, as it joins.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// Its room and its session id in the roster and slot sources.
    pub key: SessionKey,
    pub display_name: String,
    pub tracks: Vec<SourceTrack>,
}

#[derive(Debug, Clone)]
pub struct SourceTrack {
    pub mid: String,
    pub kind: MediaKind,
    pub source: TrackSource,
    /// The one codec its packets use (their payload type is `codec.payload_type`).
    pub codec: CodecDesc,
    /// The picture height, if known (it guides which subscribers ask for it in full).
    pub height: Option<u16>,
}

/// Bits per second a source's track is assumed to take before its rate is measured.
const DEFAULT_VIDEO_BPS: u64 = 1_500_000;
const DEFAULT_AUDIO_BPS: u64 = 64_000;

struct TrackState {
    spec: SourceTrack,
    codec: VideoCodec,
    rate: RateMeter,
}

/// A source the engine holds.
pub struct ExternalSource {
    pub key: SessionKey,
    pub display_name: String,
    tracks: Vec<TrackState>,
}

impl ExternalSource {
    pub fn new(spec: SourceSpec) -> ExternalSource {
        ExternalSource {
            key: spec.key,
            display_name: spec.display_name,
            tracks: spec
                .tracks
                .into_iter()
                .map(|t| TrackState {
                    codec: VideoCodec::from_mime(&t.codec.mime),
                    spec: t,
                    rate: RateMeter::default(),
                })
                .collect(),
        }
    }

    /// The published m-lines, as the room records them.
    pub fn published(&self) -> Vec<(String, MediaKind)> {
        self.tracks
            .iter()
            .map(|t| (t.spec.mid.clone(), t.spec.kind))
            .collect()
    }

    pub fn sources(&self) -> impl Iterator<Item = (&str, TrackSource)> {
        self.tracks
            .iter()
            .map(|t| (t.spec.mid.as_str(), t.spec.source))
    }

    /// The codec list a subscriber's translation is made from.
    pub fn codecs(&self, mid: &str) -> Option<&CodecDesc> {
        self.tracks
            .iter()
            .find(|t| t.spec.mid == mid)
            .map(|t| &t.spec.codec)
    }

    /// Counts a packet of track `index`; its mid and codec (`None`: no such track).
    pub fn on_packet(
        &mut self,
        now: Instant,
        index: usize,
        bytes: usize,
    ) -> Option<(&str, VideoCodec)> {
        let t = self.tracks.get_mut(index)?;
        t.rate.on_packet(now, bytes);
        Some((t.spec.mid.as_str(), t.codec))
    }

    /// Whether `mid` is video, and its one layer, as the allocator sees publishers' layers.
    pub fn layer_infos(&self, now: Instant, mid: &str) -> Option<(bool, Vec<LayerInfo>)> {
        let t = self.tracks.iter().find(|t| t.spec.mid == mid)?;
        let video = t.spec.kind == MediaKind::Video;
        let bitrate = match t.rate.bps() {
            0 if video => DEFAULT_VIDEO_BPS,
            0 => DEFAULT_AUDIO_BPS,
            bps => bps,
        };
        Some((
            video,
            vec![LayerInfo {
                live: t.rate.live(now),
                height: t.spec.height,
                bitrate,
            }],
        ))
    }
}
