//! One participant session's peer connection: its state, feeding it datagrams and timers,
//! reading what it received, and writing forwarded media into its receive slots. Applying
//! offers is in [`negotiate`].

mod negotiate;
mod publish;
mod slot;

use publish::Publish;
use slot::Slot;
pub use slot::{Forwarded, Inbound, ReportInput, SlotWish};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;
use rtc::ice::tcp_type::TcpType;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::certificate::RTCCertificate;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::{RTCIceConnectionState, RTCPeerConnectionState};
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RTCRtpRtxParameters,
    RtpCodecKind,
};
use rtc::rtp_transceiver::{
    RTCRtpReceiverId, RTCRtpSenderId, RTCRtpTransceiverDirection, RTCRtpTransceiverId,
};
use rtc::sansio::Protocol;
pub use rtc::shared::TransportProtocol;
use rtc::shared::{TaggedBytesMut, TransportContext};
use rtc::statistics::StatsSelector;
use rtc::statistics::report::RTCStatsReportEntry;

use super::ConnectAttempt;
use super::bwe::SharedEstimate;
use super::codecs::{build_media_engine, codec_descs, ext_descs};
use super::keyframe::{DEFAULT_INTERVAL, KeyframeLimiter};
use super::offer::{CodecSupport, MediaKind, OfferSummary};
use super::pace::Pacer;
use super::payload::{self, FrameInfo, VideoCodec};
use super::rewrite::{CodecDesc, ExtDesc, SlotSequencer, Translation, Unforwardable};
use super::room::TrackRef;
use super::sync::PublisherClock;
use super::{PeerId, SessionKey};

/// What every peer connection of this instance shares.
#[derive(Clone)]
pub struct PeerSetup {
    pub certificate: RTCCertificate,
    pub codecs: CodecSupport,
    pub ice_lite: bool,
    /// Our host candidates (advertised address + the shared port).
    pub candidates: Vec<SocketAddr>,
    /// Passive ICE-TCP candidates (advertised address + a TCP port).
    pub tcp_candidates: Vec<SocketAddr>,
}

/// What the engine must act on after feeding a peer.
#[derive(Debug)]
pub enum PeerOutput {
    Connected,
    Failed,
    /// An RTP packet on a publish m-line (of simulcast layer `layer`; 0 without simulcast).
    Media {
        mid: String,
        layer: u8,
        codec: VideoCodec,
        info: FrameInfo,
        /// RFC 6464: level (0–127 -dBov, 127 = silence) and the voice flag, for audio.
        audio_level: Option<(u8, bool)>,
        /// A later packet of the same stream came first (a retransmission, or reordering).
        late: bool,
        packet: rtp::Packet,
    },
    /// The subscriber asks for a keyframe of what its slot `mid` carries.
    KeyframeRequest {
        slot: String,
    },
    /// The subscriber reported lost packets (the stack retransmits them).
    Nack,
    /// The publisher's sender report about its stream `ssrc` (64-bit NTP time, RTP time).
    SenderReport {
        ssrc: u32,
        ntp: u64,
        rtp: u32,
    },
}

pub struct Peer {
    pub id: PeerId,
    pub key: SessionKey,
    pub display_name: String,
    pub ufrag: String,
    /// Our ICE password: what a binding request from a new address must be signed with.
    pub ice_password: String,
    pc: RTCPeerConnection,
    /// Our host candidates, added with the first answer.
    candidates: Vec<SocketAddr>,
    tcp_candidates: Vec<SocketAddr>,
    has_candidates: bool,
    /// What connecting tried (checks by transport, relay candidates offered, ICE reached).
    pub attempt: ConnectAttempt,
    /// The transport media last arrived on: the selected ICE path's.
    pub transport: TransportProtocol,
    /// rtc's track id of each published (received) track → its m-line.
    published_tracks: HashMap<String, String>,
    publishes: HashMap<String, Publish>,
    /// What each published m-line carries, as the offer's document declared it.
    pub sources: std::collections::BTreeMap<String, crate::media::TrackSource>,
    /// Published m-lines the application muted: their packets are not forwarded.
    pub muted: std::collections::BTreeSet<String>,
    /// A viewer session: whom it watches.
    pub watch: Option<crate::media::Watch>,
    slots: HashMap<String, Slot>,
    /// What the subscriber asked to receive per slot mid (kept across re-offers).
    wishes: HashMap<String, SlotWish>,
    /// The downlink estimate toward this peer (from its congestion-control feedback).
    downlink: SharedEstimate,
    /// Video toward this peer waiting its turn, and a reused buffer for what is due.
    pacer: Pacer<(RTCRtpSenderId, rtp::Packet)>,
    paced_due: Vec<(RTCRtpSenderId, rtp::Packet)>,
    /// The peer's offer negotiated no transport-wide congestion control: its REMB is the
    /// estimate.
    remb_only: bool,
    /// What this publisher's sender reports say about its clock and streams.
    pub clock: PublisherClock,
    pub last_heard: Instant,
    pub connected: bool,
    /// The stack panicked inside a call for this peer: it is closed at the next drain.
    broken: bool,
    /// The stack's next timer, cached after every interaction.
    pub deadline: Option<Instant>,
}

impl Peer {
    /// Runs one call into the stack. A panic in it (a bug in `rtc` that a crafted packet may
    /// reach) breaks only this peer, which the engine then closes, instead of the media thread
    /// and with it every room of the instance.
    fn guarded<T>(&mut self, what: &'static str, call: impl FnOnce(&mut Self) -> T) -> Option<T> {
        if self.broken {
            return None;
        }
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call(&mut *self))) {
            Ok(value) => Some(value),
            Err(_) => {
                self.broken = true;
                tracing::error!(
                    peer = self.id.0,
                    what,
                    "the WebRTC stack panicked; closing this peer"
                );
                None
            }
        }
    }

    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        data: &[u8],
        protocol: TransportProtocol,
    ) -> Result<(), String> {
        self.last_heard = now;
        if data.first().is_some_and(|b| *b <= 3) {
            match protocol {
                TransportProtocol::TCP => self.attempt.tcp_checks += 1,
                _ => self.attempt.udp_checks += 1,
            }
        } else {
            self.transport = protocol;
        }
        let message = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: local,
                peer_addr: from,
                ecn: None,
                transport_protocol: protocol,
            },
            message: BytesMut::from(data),
        };
        self.guarded("handle_read", |p| p.pc.handle_read(message))
            .ok_or_else(|| "the stack panicked".to_owned())?
            .map_err(|e| e.to_string())
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(Err(e)) = self.guarded("handle_timeout", |p| p.pc.handle_timeout(now)) {
            tracing::debug!(peer = self.id.0, "timeout handling failed: {e}");
        }
    }

    pub fn refresh_deadline(&mut self) {
        self.deadline = self
            .guarded("poll_timeout", |p| p.pc.poll_timeout())
            .flatten();
    }

    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, TransportProtocol, BytesMut)> {
        self.guarded("poll_write", |p| p.pc.poll_write())
            .flatten()
            .map(|m| {
                (
                    m.transport.peer_addr,
                    m.transport.transport_protocol,
                    m.message,
                )
            })
    }

    /// Drains the stack's events and inbound messages into `out`.
    pub fn poll_outputs(&mut self, now: Instant, out: &mut Vec<PeerOutput>) {
        let start = out.len();
        if self
            .guarded("poll_read", |p| p.poll_stack(now, out))
            .is_none()
        {
            out.truncate(start);
            out.push(PeerOutput::Failed);
        }
    }

    fn poll_stack(&mut self, now: Instant, out: &mut Vec<PeerOutput>) {
        while let Some(event) = self.pc.poll_event() {
            match event {
                RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => match state {
                    RTCPeerConnectionState::Connected if !self.connected => {
                        self.connected = true;
                        out.push(PeerOutput::Connected);
                    }
                    RTCPeerConnectionState::Failed => out.push(PeerOutput::Failed),
                    _ => {}
                },
                RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(
                    RTCIceConnectionState::Connected | RTCIceConnectionState::Completed,
                ) => self.attempt.ice_connected = true,
                RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                    if let Some(mid) = self.published_tracks.get(&init.track_id).cloned() {
                        self.track_opened(now, &mid, init.ssrc, init.rid.as_deref());
                    }
                }
                _ => {}
            }
        }
        while let Some(TaggedRTCMessage { message, .. }) = self.pc.poll_read() {
            match message {
                RTCMessage::RtpPacket(track_id, packet) => {
                    if let Some(mid) = self.published_tracks.get(&track_id).cloned()
                        && let Some(output) = self.received(now, mid, packet)
                    {
                        out.push(output);
                    }
                }
                RTCMessage::RtcpPacket(_, packets) => {
                    // rtc attributes a compound RTCP packet to the track of its *first*
                    // packet's first SSRC: often the browser's own sender report, so a PLI in
                    // the same compound would look like it concerned a published track. Each
                    // feedback packet names the stream it is about: route by that.
                    for packet in &packets {
                        let any = packet.as_any();
                        if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
                            self.keyframe_wanted(pli.media_ssrc, out);
                        } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
                            for entry in &fir.fir {
                                self.keyframe_wanted(entry.ssrc, out);
                            }
                        } else if any.is::<TransportLayerNack>() {
                            out.push(PeerOutput::Nack);
                        } else if let Some(remb) =
                            any.downcast_ref::<ReceiverEstimatedMaximumBitrate>()
                        {
                            // With transport-cc, GCC on its feedback is the estimate.
                            if self.remb_only {
                                self.downlink.set_from_remb(remb.bitrate);
                            }
                        } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
                            out.push(PeerOutput::SenderReport {
                                ssrc: sr.ssrc,
                                ntp: sr.ntp_time,
                                rtp: sr.rtp_time,
                            });
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// A subscriber asked for a keyframe of the stream we send it with `ssrc`.
    fn keyframe_wanted(&self, ssrc: u32, out: &mut Vec<PeerOutput>) {
        if let Some(mid) = self
            .slots
            .iter()
            .find_map(|(mid, slot)| (slot.sequencer.ssrc() == ssrc).then_some(mid))
        {
            out.push(PeerOutput::KeyframeRequest { slot: mid.clone() });
        }
    }

    /// A published stream (a layer) opened: learn which SSRC carries it.
    fn track_opened(&mut self, now: Instant, mid: &str, ssrc: u32, rid: Option<&str>) {
        let Some(p) = self.publishes.get_mut(mid) else {
            return;
        };
        if let Some(layer) = p.layer_of(ssrc, rid) {
            self.layer_started(now, mid, layer);
        }
    }

    /// One RTP packet of a published track: which layer it is, what it says about its frame.
    fn received(&mut self, now: Instant, mid: String, packet: rtp::Packet) -> Option<PeerOutput> {
        let ssrc = packet.header.ssrc;
        let p = self.publishes.get_mut(&mid)?;
        let known = p.layers.iter().any(|l| l.ssrc == Some(ssrc));
        let layer = match p.layer_of(ssrc, None) {
            Some(layer) => layer,
            None => {
                // A simulcast layer whose OnOpen we missed: the receiver's track knows its rid.
                let receiver = p.receiver;
                let rid = self
                    .pc
                    .rtp_receiver(receiver)
                    .and_then(|r| r.track().rid(ssrc).cloned())?;
                self.publishes.get_mut(&mid)?.layer_of(ssrc, Some(&rid))?
            }
        };
        if !known {
            self.layer_started(now, &mid, layer);
        }
        let p = self.publishes.get_mut(&mid)?;
        let codec = p.codec(packet.header.payload_type);
        let mut info = if p.video {
            payload::inspect(codec, &packet.payload)
        } else {
            FrameInfo::default()
        };
        // Only a change of simulcast layer must wait for a keyframe. A single stream (audio,
        // or video without simulcast) starts anywhere, and its subscriber asks for a keyframe.
        if !p.simulcast() || codec == VideoCodec::Other {
            info.keyframe_start = true;
        }
        let late = p.observe(
            now,
            layer,
            packet.header.sequence_number,
            packet.payload.len(),
            info,
        );
        let audio_level = p
            .audio_level_id
            .and_then(|id| packet.header.get_extension(id))
            .and_then(|b| b.first().copied())
            .map(|b| (b & 0x7f, b & 0x80 != 0));
        Some(PeerOutput::Media {
            mid,
            layer,
            codec,
            info,
            audio_level,
            late,
            packet,
        })
    }

    /// The estimated downlink toward this peer, bits per second (`None`: no estimate).
    pub fn downlink_estimate(&self) -> Option<u64> {
        self.downlink.get()
    }

    /// ICE round-trip time (seconds) and the fraction of published packets lost on the way in.
    pub fn quality(&mut self, now: Instant) -> (Option<f64>, Option<f64>) {
        let Some(report) = self.guarded("get_stats", |p| p.pc.get_stats(now, StatsSelector::None))
        else {
            return (None, None);
        };
        let rtt = report
            .candidate_pairs()
            .filter(|p| p.nominated && p.current_round_trip_time > 0.0)
            .map(|p| p.current_round_trip_time)
            .next()
            // An ICE-lite server sends no connectivity checks of its own, so its candidate
            // pair rarely has an RTT; the subscriber's receiver reports on what we forward do.
            .or_else(|| {
                report
                    .iter()
                    .filter_map(|e| match e {
                        RTCStatsReportEntry::RemoteInboundRtp(s) if s.round_trip_time > 0.0 => {
                            Some(s.round_trip_time)
                        }
                        _ => None,
                    })
                    .reduce(f64::min)
            });
        let (mut received, mut lost) = (0u64, 0i64);
        for s in report.inbound_rtp_streams() {
            received += s.received_rtp_stream_stats.packets_received;
            lost += s.received_rtp_stream_stats.packets_lost.max(0);
        }
        let loss = (received > 0).then(|| lost as f64 / (received as f64 + lost as f64));
        (rtt, loss)
    }

    pub fn close(&mut self) {
        let _ = self.guarded("close", |p| p.pc.close());
    }
}

#[derive(Debug)]
pub enum ForwardError {
    NoSlot,
    Unforwardable(Unforwardable),
    Stack(String),
}
