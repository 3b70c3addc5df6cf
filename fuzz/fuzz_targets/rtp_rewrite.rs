//! A published RTP packet (any bytes) through what forwarding does to it: the payload
//! inspection of each video codec, the translation to a subscriber's payload types and
//! header-extension ids, the renumbering, and the picture-id rewrite. The packet we would send
//! must marshal, and parse back as what we meant to send.
#![no_main]

use std::time::{Duration, Instant};

use firesfu::media::payload::{PictureNumbering, VideoCodec, inspect};
use firesfu::media::rewrite::{CodecDesc, ExtDesc, SlotSequencer, Translation};
use libfuzzer_sys::fuzz_target;
use rtc::rtp::header::Header;
use rtc::rtp::packet::Packet;
use rtc::shared::marshal::{Marshal, MarshalSize, Unmarshal};

fn codec(payload_type: u8, mime: &str, clock_rate: u32) -> CodecDesc {
    CodecDesc {
        payload_type,
        mime: mime.into(),
        fmtp: String::new(),
        clock_rate,
    }
}

fn ext(id: u8, uri: &str) -> ExtDesc {
    ExtDesc {
        id,
        uri: uri.into(),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    let Ok(packet) = Packet::unmarshal(&mut buf) else {
        return;
    };
    for codec in [
        VideoCodec::Vp8,
        VideoCodec::Vp9,
        VideoCodec::H264,
        VideoCodec::Other,
    ] {
        let _ = inspect(codec, &packet.payload);
    }
    let publisher = [
        codec(96, "video/VP8", 90000),
        codec(98, "video/VP9", 90000),
        codec(102, "video/H264", 90000),
        codec(111, "audio/opus", 48000),
    ];
    let subscriber = [
        codec(100, "video/VP8", 90000),
        codec(101, "video/VP9", 90000),
        codec(127, "video/H264", 90000),
        codec(109, "audio/opus", 48000),
    ];
    let publisher_exts = [
        ext(1, "urn:ietf:params:rtp-hdrext:ssrc-audio-level"),
        ext(
            3,
            "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
        ),
        ext(4, "urn:ietf:params:rtp-hdrext:sdes:mid"),
        ext(10, "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"),
        ext(13, "urn:3gpp:video-orientation"),
        ext(200, "urn:example:two-byte"),
    ];
    let subscriber_exts = [
        ext(14, "urn:ietf:params:rtp-hdrext:ssrc-audio-level"),
        ext(2, "urn:ietf:params:rtp-hdrext:sdes:mid"),
        ext(5, "urn:3gpp:video-orientation"),
        ext(250, "urn:example:two-byte"),
    ];
    let translation = Translation::new(
        &publisher,
        &subscriber,
        &publisher_exts,
        &subscriber_exts,
        "7",
    );
    let mut sequencer = SlotSequencer::new(0x1234_5678);
    let mut numbering = PictureNumbering::default();
    let now = Instant::now();
    let mut out = Header::default();
    for (i, switch) in [false, true].into_iter().enumerate() {
        if switch {
            sequencer.switch_source();
            numbering.rebase();
        }
        let at = now + Duration::from_millis(20 * i as u64);
        if sequencer
            .rewrite(&translation, &packet.header, &mut out, at)
            .is_err()
        {
            return;
        }
        let codec = VideoCodec::from_mime(match packet.header.payload_type {
            96 => "video/VP8",
            98 => "video/VP9",
            102 => "video/H264",
            _ => "audio/opus",
        });
        let mut payload = packet.payload.to_vec();
        if numbering.needs_rewrite(codec, &payload) {
            numbering.rewrite(codec, &mut payload);
        }
        let sent = Packet {
            header: out.clone(),
            payload: payload.clone().into(),
        };
        let mut wire = vec![0u8; sent.marshal_size()];
        let n = sent
            .marshal_to(&mut wire)
            .expect("a rewritten packet marshals");
        let mut read = &wire[..n];
        let back = Packet::unmarshal(&mut read).expect("a rewritten packet parses back");
        assert_eq!(back.header.ssrc, 0x1234_5678);
        assert_eq!(back.header.sequence_number, out.sequence_number);
        assert_eq!(&back.payload[..], &payload[..]);
    }
});
