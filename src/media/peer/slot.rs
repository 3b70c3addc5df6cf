//! A peer's receive slots: which source and layer each forwards, what the subscriber asked
//! to receive on it, and rewriting a publisher's packet into it.

use bytes::Bytes;
use rtc::rtcp::sender_report::SenderReport;

use super::*;
use crate::media::layers::{LayerSelector, Verdict};
use crate::media::payload::{FrameInfo, PictureNumbering, VideoCodec};
use crate::media::sync::SlotReport;

/// What a subscriber asked for on one receive slot (the session document's `receive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SlotWish {
    /// The largest picture height wanted; `Some(0)`: paused; `None`: no limit.
    pub max_height: Option<u16>,
    /// More important than the other slots when the downlink is short.
    pub pinned: bool,
}

/// A receive slot of this peer: we send on it.
pub(super) struct Slot {
    pub sender: RTCRtpSenderId,
    pub codecs: Vec<CodecDesc>,
    pub exts: Vec<ExtDesc>,
    pub sequencer: SlotSequencer,
    pub source: Option<(TrackRef, Translation)>,
    pub selector: LayerSelector,
    pub numbering: PictureNumbering,
    /// A video slot: paced.
    pub video: bool,
}

impl Slot {
    pub fn new(
        sender: RTCRtpSenderId,
        codecs: Vec<CodecDesc>,
        exts: Vec<ExtDesc>,
        ssrc: u32,
    ) -> Self {
        let video = codecs
            .first()
            .is_some_and(|c| c.mime.to_ascii_lowercase().starts_with("video/"));
        Slot {
            video,
            sender,
            codecs,
            exts,
            sequencer: SlotSequencer::new(ssrc),
            source: None,
            selector: LayerSelector::default(),
            numbering: PictureNumbering::default(),
        }
    }
}

/// One slot's state for its sender report ([`Peer::report_inputs`]).
pub struct ReportInput {
    pub mid: String,
    pub publisher: PeerId,
    /// The source stream's SSRC and the slot's timestamp offset from it.
    pub source: Option<(u32, u32)>,
    pub clock_rate: u32,
    /// The highest timestamp sent and when.
    pub last_sent: (u32, Instant),
}

/// What became of one packet offered to a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarded {
    Sent,
    /// Sent, and it is the first of a newly selected layer.
    Switched,
    /// The slot forwards another layer now (or is paused).
    NotSelected,
}

/// One publisher packet as the forwarder sees it.
pub struct Inbound<'a> {
    pub packet: &'a rtp::Packet,
    pub layer: u8,
    pub codec: VideoCodec,
    pub info: FrameInfo,
}

impl Peer {
    pub fn start_slot(&mut self, mid: &str, source: TrackRef, translation: Translation) {
        if let Some(slot) = self.slots.get_mut(mid) {
            slot.sequencer.switch_source();
            slot.numbering.rebase();
            slot.selector = LayerSelector::default();
            slot.source = Some((source, translation));
        }
    }

    pub fn stop_slot(&mut self, mid: &str) {
        if let Some(slot) = self.slots.get_mut(mid) {
            slot.source = None;
            slot.selector = LayerSelector::default();
        }
    }

    pub fn slot_sources(&self) -> impl Iterator<Item = &TrackRef> {
        self.slots
            .values()
            .filter_map(|s| s.source.as_ref().map(|(t, _)| t))
    }

    pub fn slot_source(&self, mid: &str) -> Option<&TrackRef> {
        self.slots
            .get(mid)
            .and_then(|s| s.source.as_ref().map(|(t, _)| t))
    }

    /// Every slot with a source: its mid, source, wish and layers (current, target).
    pub fn slot_states(&self) -> impl Iterator<Item = (&str, &TrackRef, SlotWish, &LayerSelector)> {
        self.slots.iter().filter_map(|(mid, s)| {
            let (track, _) = s.source.as_ref()?;
            let wish = self.wishes.get(mid).copied().unwrap_or_default();
            Some((mid.as_str(), track, wish, &s.selector))
        })
    }

    /// Replaces what the subscriber asked for on its slots (absent slots: no limit).
    pub fn set_wishes(&mut self, wishes: HashMap<String, SlotWish>) {
        self.wishes = wishes;
    }

    /// Sets the layer slot `mid` forwards; true when a keyframe of it must be asked for.
    /// `stop_current`: see [`LayerSelector::set_target`].
    pub fn set_slot_target(&mut self, mid: &str, target: Option<u8>, stop_current: bool) -> bool {
        self.slots
            .get_mut(mid)
            .is_some_and(|s| s.selector.set_target(target, stop_current))
    }

    /// Slot `mid` waits for a keyframe of the layer it is to forward.
    pub fn slot_waiting(&self, mid: &str) -> bool {
        self.slots.get(mid).is_some_and(|s| s.selector.waiting())
    }

    /// The layer slot `mid` forwards now or waits for: what a keyframe request concerns.
    pub fn slot_layer(&self, mid: &str) -> Option<u8> {
        let s = self.slots.get(mid)?;
        s.selector.target().or(s.selector.current())
    }

    /// Forwards one publisher packet into slot `mid`, rewritten for this subscriber.
    pub fn forward(
        &mut self,
        now: Instant,
        mid: &str,
        inbound: &Inbound,
    ) -> Result<Forwarded, ForwardError> {
        let slot = self.slots.get_mut(mid).ok_or(ForwardError::NoSlot)?;
        let (_, translation) = slot.source.as_ref().ok_or(ForwardError::NoSlot)?;
        let src = inbound.packet;
        let outcome = match slot
            .selector
            .on_packet(inbound.layer, inbound.info.keyframe_start)
        {
            Verdict::Drop => return Ok(Forwarded::NotSelected),
            Verdict::Switch => {
                slot.sequencer.switch_source();
                slot.numbering.rebase();
                Forwarded::Switched
            }
            Verdict::Forward => Forwarded::Sent,
        };
        let mut header = rtp::header::Header::default();
        slot.sequencer
            .rewrite(translation, &src.header, &mut header, now)
            .map_err(ForwardError::Unforwardable)?;
        // VP8/VP9 picture numbering continues across switches; untouched packets are shared.
        let payload = if slot.numbering.needs_rewrite(inbound.codec, &src.payload) {
            let mut copy = src.payload.to_vec();
            slot.numbering.rewrite(inbound.codec, &mut copy);
            Bytes::from(copy)
        } else {
            src.payload.clone()
        };
        slot.sequencer.count(payload.len());
        let (sender, video) = (slot.sender, slot.video);
        let bytes = payload.len();
        let packet = rtp::Packet { header, payload };
        // Video waits its turn in the pacer (see `pace`); audio leaves at once.
        self.pacer.set_estimate(self.downlink.get());
        if video {
            if let Some((sender, packet)) = self.pacer.offer(now, bytes, (sender, packet)) {
                self.write_rtp(now, sender, packet)?;
            }
        } else {
            self.pacer.bypass(now, bytes);
            self.write_rtp(now, sender, packet)?;
        }
        Ok(outcome)
    }

    fn write_rtp(
        &mut self,
        now: Instant,
        sender: RTCRtpSenderId,
        packet: rtp::Packet,
    ) -> Result<(), ForwardError> {
        self.guarded("write_rtp", |p| {
            p.pc.rtp_sender(sender)
                .ok_or(ForwardError::NoSlot)?
                .write_rtp(now, packet)
                .map_err(|e| ForwardError::Stack(e.to_string()))
        })
        .unwrap_or_else(|| Err(ForwardError::Stack("the stack panicked".into())))
    }

    /// When paced video is next due to leave.
    pub fn pace_deadline(&self) -> Option<Instant> {
        self.pacer.next_release()
    }

    /// Sends the paced video that is due.
    pub fn release_paced(&mut self, now: Instant) {
        let mut due = std::mem::take(&mut self.paced_due);
        self.pacer.release(now, |item| due.push(item));
        for (sender, packet) in due.drain(..) {
            if let Err(e) = self.write_rtp(now, sender, packet) {
                tracing::debug!(peer = self.id.0, "paced packet not sent: {e:?}");
            }
        }
        self.paced_due = due;
    }

    /// What a sender report for each slot with a source needs: the slot's mid, its source,
    /// the source stream's SSRC and timestamp offset, the clock rate, the last timestamp sent
    /// and when.
    pub fn report_inputs(&self, out: &mut Vec<ReportInput>) {
        for (mid, slot) in &self.slots {
            let (Some((track, _)), Some((ts, sent_at))) =
                (slot.source.as_ref(), slot.sequencer.last_sent())
            else {
                continue;
            };
            let Some(clock_rate) = slot.codecs.first().map(|c| c.clock_rate) else {
                continue;
            };
            out.push(ReportInput {
                mid: mid.clone(),
                publisher: track.publisher,
                source: slot.sequencer.source(),
                clock_rate,
                last_sent: (ts, sent_at),
            });
        }
    }

    /// Sends a sender report on slot `mid`, with the slot's SSRC and counts.
    pub fn send_report(&mut self, now: Instant, mid: &str, r: SlotReport) {
        let Some(slot) = self.slots.get(mid) else {
            return;
        };
        let sender = slot.sender;
        let (packet_count, octet_count) = slot.sequencer.counts();
        let report = SenderReport {
            ssrc: slot.sequencer.ssrc(),
            ntp_time: r.ntp64,
            rtp_time: r.rtp,
            packet_count,
            octet_count,
            ..Default::default()
        };
        let sent = self.guarded("write_rtcp", |p| {
            p.pc.rtp_sender(sender)
                .map(|mut s| s.write_rtcp(now, vec![Box::new(report)]))
        });
        if let Some(Some(Err(e))) = sent {
            tracing::debug!(peer = self.id.0, mid, "sender report not sent: {e}");
        }
    }

    pub fn slot_params(&self, mid: &str) -> Option<(&[CodecDesc], &[ExtDesc])> {
        self.slots
            .get(mid)
            .map(|s| (s.codecs.as_slice(), s.exts.as_slice()))
    }
}
