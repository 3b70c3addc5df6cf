//! The codecs and header extensions the server negotiates, and their conversion into the
//! stack-independent descriptions `rewrite.rs` works with.
//!
//! An SFU forwards what publishers send without transcoding, so every subscriber must accept
//! the publisher's codec. Offering few codecs keeps that true: Opus for audio, and the video
//! codecs the operator enables (VP8 and H264 by default: every browser decodes both; IP cameras
//! send H264). G.711 is accepted on receive slots for cameras' audio.

use rtc::interceptor::{
    CongestionControlBuilder, ReceiverReportBuilder, Registry, Slot, TwccSenderBuilder,
};
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_nack, configure_simulcast_extension_headers, configure_twcc_receiver_only,
};
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_PCMA, MIME_TYPE_PCMU, MIME_TYPE_RTX, MIME_TYPE_VP8,
    MIME_TYPE_VP9, MediaEngine,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpHeaderExtensionCapability,
    RTCRtpParameters, RtpCodecKind,
};

use super::bwe::{DownlinkEstimator, SharedEstimate};
use super::offer::CodecSupport;
use super::rewrite::{CodecDesc, ExtDesc};

pub const SUPPORTED_AUDIO: &[&str] = &["opus"];
pub const SUPPORTED_VIDEO: &[&str] = &["VP8", "H264", "VP9"];

fn video_feedback() -> Vec<RTCPFeedback> {
    [
        ("goog-remb", ""),
        ("ccm", "fir"),
        ("nack", ""),
        ("nack", "pli"),
        ("transport-cc", ""),
    ]
    .into_iter()
    .map(|(typ, parameter)| RTCPFeedback {
        typ: typ.into(),
        parameter: parameter.into(),
    })
    .collect()
}

fn codec(mime: &str, pt: u8, clock_rate: u32, channels: u16, fmtp: &str) -> RTCRtpCodecParameters {
    let feedback = if mime.starts_with("video/") && mime != MIME_TYPE_RTX {
        video_feedback()
    } else {
        vec![]
    };
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: mime.into(),
            clock_rate,
            channels,
            sdp_fmtp_line: fmtp.into(),
            rtcp_feedback: feedback,
        },
        payload_type: pt,
    }
}

/// A media engine with the configured codecs and the interceptors (NACK responder and
/// generator, receiver reports, TWCC feedback), transport-wide sequence numbers on what we send
/// and a downlink estimate from the feedback about them (into `downlink`), plus the relay that
/// lets subscribers' keyframe requests, their REMB and publishers' sender reports reach us.
/// Not rtc's pacer (one fixed rate, unreachable once built): the peer paces video itself at a
/// multiple of its estimate (`super::pace`).
pub fn build_media_engine(
    support: &CodecSupport,
    downlink: SharedEstimate,
) -> Result<(MediaEngine, Registry), rtc::shared::error::Error> {
    let mut engine = MediaEngine::default();
    let wants = |list: &[String], name: &str| list.iter().any(|c| c.eq_ignore_ascii_case(name));
    if wants(&support.audio, "opus") {
        engine.register_codec(
            codec(MIME_TYPE_OPUS, 111, 48000, 2, "minptime=10;useinbandfec=1"),
            RtpCodecKind::Audio,
        )?;
    }
    // G.711, never chosen for what a client publishes (`CodecSupport` picks): subscribers
    // accept it for IP cameras' audio, forwarded as the camera sends it (`crate::ingest`).
    engine.register_codec(codec(MIME_TYPE_PCMU, 0, 8000, 1, ""), RtpCodecKind::Audio)?;
    engine.register_codec(codec(MIME_TYPE_PCMA, 8, 8000, 1, ""), RtpCodecKind::Audio)?;
    let mut video = Vec::new();
    if wants(&support.video, "VP8") {
        video.push(codec(MIME_TYPE_VP8, 96, 90000, 0, ""));
        video.push(codec(MIME_TYPE_RTX, 97, 90000, 0, "apt=96"));
    }
    if wants(&support.video, "VP9") {
        video.push(codec(MIME_TYPE_VP9, 98, 90000, 0, "profile-id=0"));
        video.push(codec(MIME_TYPE_RTX, 99, 90000, 0, "apt=98"));
    }
    if wants(&support.video, "H264") {
        video.push(codec(
            MIME_TYPE_H264,
            102,
            90000,
            0,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
        ));
        video.push(codec(MIME_TYPE_RTX, 103, 90000, 0, "apt=102"));
    }
    for c in video {
        engine.register_codec(c, RtpCodecKind::Video)?;
    }
    // RFC 6464 audio levels: who speaks.
    engine.register_header_extension(
        RTCRtpHeaderExtensionCapability {
            uri: rtc::sdp::extmap::AUDIO_LEVEL_URI.to_owned(),
        },
        RtpCodecKind::Audio,
        None,
    )?;
    // rtc's defaults (`register_default_interceptors`) but its sender reports: ours are
    // translated from the publishers' (lip sync, `super::sync`), sent by the engine. The
    // transport-cc extension and feedback are negotiated here (audio and video).
    let registry = configure_nack(Registry::new(), &mut engine);
    configure_simulcast_extension_headers(&mut engine)?;
    let registry = configure_twcc_receiver_only(registry, &mut engine)?
        .with(Slot::ReceiverReport, ReceiverReportBuilder::new().build())
        .with(Slot::TwccSender, TwccSenderBuilder::new().build())
        .with(
            Slot::CongestionControl,
            CongestionControlBuilder::new(DownlinkEstimator::new(downlink)).build(),
        )
        .with(
            super::rtcp_relay::slot(),
            super::rtcp_relay::RtcpRelay::default(),
        );
    Ok((engine, registry))
}

pub fn codec_descs(params: &RTCRtpParameters) -> Vec<CodecDesc> {
    params
        .codecs
        .iter()
        .map(|c| CodecDesc {
            payload_type: c.payload_type,
            mime: c.rtp_codec.mime_type.clone(),
            fmtp: c.rtp_codec.sdp_fmtp_line.clone(),
            clock_rate: c.rtp_codec.clock_rate,
        })
        .collect()
}

pub fn ext_descs(params: &RTCRtpParameters) -> Vec<ExtDesc> {
    params
        .header_extensions
        .iter()
        .filter(|e| e.id > 0 && e.id < 256)
        .map(|e| ExtDesc {
            id: e.id as u8,
            uri: e.uri.clone(),
        })
        .collect()
}
