//! Turning a publisher's RTP packet into one a subscriber's m-line expects.
//!
//! Each subscriber negotiated its own payload types, header-extension ids and (through us) its
//! own SSRC per receive slot, and the stack's `write_rtp` rejects anything not negotiated. A slot
//! can also change source (a publisher leaves and another one's track takes the slot); the
//! subscriber must then still see one continuous stream: sequence numbers go on from the last
//! one sent and the timestamp moves forward by the wall time that passed.

use std::time::Instant;

use bytes::Bytes;
use rtc::rtp::header::{Extension, Header};

/// One negotiated codec of one side, as far as forwarding cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecDesc {
    pub payload_type: u8,
    pub mime: String,
    pub fmtp: String,
    pub clock_rate: u32,
}

/// One negotiated header extension of one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtDesc {
    pub id: u8,
    pub uri: String,
}

const SDES_MID: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
/// Extensions that describe the publisher's transport or layer, not the media: they would be
/// wrong on the subscriber's leg (the stack adds its own transport-wide sequence numbers).
const NOT_FORWARDED: &[&str] = &[
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
];

const DROP: u8 = 0;
const NO_PT: u8 = 0xff;

/// The id and payload-type translation for one (publisher track → subscriber slot) pair.
#[derive(Debug, Clone)]
pub struct Translation {
    payload_types: [u8; 128],
    clock_rates: [u32; 128],
    extension_ids: [u8; 256],
    /// The subscriber's mid extension id and the slot's mid: browsers route by it.
    mid: Option<(u8, Bytes)>,
}

impl Translation {
    pub fn new(
        publisher_codecs: &[CodecDesc],
        subscriber_codecs: &[CodecDesc],
        publisher_exts: &[ExtDesc],
        subscriber_exts: &[ExtDesc],
        subscriber_mid: &str,
    ) -> Self {
        let mut payload_types = [NO_PT; 128];
        let mut clock_rates = [0; 128];
        for codec in publisher_codecs {
            if codec.payload_type >= 128 || codec.mime.to_ascii_lowercase().ends_with("/rtx") {
                continue;
            }
            let same_mime = |c: &&CodecDesc| c.mime.eq_ignore_ascii_case(&codec.mime);
            let target = subscriber_codecs
                .iter()
                .filter(same_mime)
                .find(|c| c.fmtp == codec.fmtp)
                .or_else(|| subscriber_codecs.iter().find(same_mime));
            if let Some(target) = target {
                payload_types[codec.payload_type as usize] = target.payload_type;
                clock_rates[codec.payload_type as usize] = target.clock_rate;
            }
        }
        let mut extension_ids = [DROP; 256];
        let mut mid = None;
        for sub in subscriber_exts {
            if sub.uri == SDES_MID {
                mid = Some((sub.id, Bytes::copy_from_slice(subscriber_mid.as_bytes())));
            }
        }
        for publ in publisher_exts {
            if publ.uri == SDES_MID || NOT_FORWARDED.contains(&publ.uri.as_str()) {
                continue;
            }
            if let Some(sub) = subscriber_exts.iter().find(|s| s.uri == publ.uri) {
                extension_ids[publ.id as usize] = sub.id;
            }
        }
        Translation {
            payload_types,
            clock_rates,
            extension_ids,
            mid,
        }
    }

    /// The subscriber's payload type for a publisher's, if the subscriber can take that codec.
    pub fn payload_type(&self, publisher_pt: u8) -> Option<u8> {
        match self.payload_types.get(publisher_pt as usize) {
            Some(&pt) if pt != NO_PT => Some(pt),
            _ => None,
        }
    }

    fn clock_rate(&self, publisher_pt: u8) -> u32 {
        self.clock_rates
            .get(publisher_pt as usize)
            .copied()
            .unwrap_or(0)
    }

    fn extensions(&self, from: &[Extension], out: &mut Vec<Extension>) {
        out.clear();
        for ext in from {
            let id = self.extension_ids[ext.id as usize];
            // Longer than the two-byte form can carry: it could not be written.
            if id != DROP && ext.payload.len() <= 255 {
                out.push(Extension {
                    id,
                    payload: ext.payload.clone(),
                });
            }
        }
        if let Some((id, value)) = &self.mid {
            out.push(Extension {
                id: *id,
                payload: value.clone(),
            });
        }
    }
}

/// The outgoing numbering of one receive slot; it outlives the sources that feed the slot.
#[derive(Debug, Clone)]
pub struct SlotSequencer {
    ssrc: u32,
    /// The highest sequence number sent, its timestamp and when it was sent.
    last: Option<(u16, u32, Instant)>,
    /// (sequence, timestamp) offsets for the current source; `None` until its first packet.
    offsets: Option<(u16, u32)>,
    /// The SSRC of the current source (a publisher's stream or simulcast layer).
    source: Option<u32>,
    /// Packets and payload octets sent (wrapping, as sender reports count them).
    packets: u32,
    octets: u32,
}

/// Why a packet was not forwarded to a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unforwardable {
    /// The subscriber did not negotiate the codec the publisher sends.
    CodecMismatch,
}

impl SlotSequencer {
    pub fn new(ssrc: u32) -> Self {
        SlotSequencer {
            ssrc,
            last: None,
            offsets: None,
            source: None,
            packets: 0,
            octets: 0,
        }
    }

    /// The current source's SSRC and the timestamp offset from it to this slot.
    pub fn source(&self) -> Option<(u32, u32)> {
        Some((self.source?, self.offsets?.1))
    }

    /// The highest timestamp sent and when.
    pub fn last_sent(&self) -> Option<(u32, Instant)> {
        self.last.map(|(_, ts, at)| (ts, at))
    }

    /// Packets and payload octets sent so far (wrapping).
    pub fn counts(&self) -> (u32, u32) {
        (self.packets, self.octets)
    }

    /// One packet with `payload` octets left through this slot.
    pub fn count(&mut self, payload: usize) {
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload as u32);
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The slot now carries another source: the next packet re-bases the numbering.
    pub fn switch_source(&mut self) {
        self.offsets = None;
    }

    /// Writes `header` as the subscriber must see it. Allocation-free when `out` already holds
    /// the extension vector of a previous packet (the caller reuses the header it clones into).
    pub fn rewrite(
        &mut self,
        translation: &Translation,
        src: &Header,
        out: &mut Header,
        now: Instant,
    ) -> Result<(), Unforwardable> {
        let pt = translation
            .payload_type(src.payload_type)
            .ok_or(Unforwardable::CodecMismatch)?;
        let (seq_off, ts_off) = *self.offsets.get_or_insert_with(|| match self.last {
            None => (0, 0),
            Some((seq, ts, at)) => {
                let rate = translation.clock_rate(src.payload_type) as u128;
                let elapsed = now.saturating_duration_since(at).as_micros() * rate / 1_000_000;
                let next_ts = ts.wrapping_add((elapsed as u32).max(1));
                (
                    seq.wrapping_add(1).wrapping_sub(src.sequence_number),
                    next_ts.wrapping_sub(src.timestamp),
                )
            }
        });
        self.source = Some(src.ssrc);
        let seq = src.sequence_number.wrapping_add(seq_off);
        let ts = src.timestamp.wrapping_add(ts_off);

        out.version = 2;
        out.padding = false;
        out.marker = src.marker;
        out.payload_type = pt;
        out.sequence_number = seq;
        out.timestamp = ts;
        out.ssrc = self.ssrc;
        out.csrc.clear();
        out.csrc.extend_from_slice(&src.csrc);
        translation.extensions(&src.extensions, &mut out.extensions);
        out.extension = !out.extensions.is_empty();
        // One-byte header form while every element fits it (RFC 8285: id 1–14, 1–16 bytes),
        // two-byte form otherwise. A zero-length element needs the two-byte form: written in
        // the one-byte form its length field would underflow (and `rtc` panics on that).
        out.extension_profile = if out
            .extensions
            .iter()
            .all(|e| e.id < 15 && (1..=16).contains(&e.payload.len()))
        {
            0xBEDE
        } else {
            0x1000
        };
        // What `Header::set_extension` (the stack stamping transport-wide sequence numbers)
        // assumes when it adds an element: the padding the current elements need.
        out.extensions_padding = if out.extension {
            (4 - out.get_extension_payload_len() % 4) % 4
        } else {
            0
        };

        let newer = match self.last {
            None => true,
            Some((last_seq, _, _)) => (seq.wrapping_sub(last_seq) as i16) > 0,
        };
        if newer {
            self.last = Some((seq, ts, now));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn codec(pt: u8, mime: &str) -> CodecDesc {
        CodecDesc {
            payload_type: pt,
            mime: mime.into(),
            fmtp: String::new(),
            clock_rate: if mime.contains("opus") { 48000 } else { 90000 },
        }
    }

    fn ext(id: u8, uri: &str) -> ExtDesc {
        ExtDesc {
            id,
            uri: uri.into(),
        }
    }

    fn header(pt: u8, seq: u16, ts: u32, exts: &[(u8, &'static [u8])]) -> Header {
        Header {
            version: 2,
            payload_type: pt,
            sequence_number: seq,
            timestamp: ts,
            ssrc: 0x1111,
            extension: !exts.is_empty(),
            extension_profile: 0xBEDE,
            extensions: exts
                .iter()
                .map(|(id, p)| Extension {
                    id: *id,
                    payload: Bytes::from_static(p),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn translation() -> Translation {
        Translation::new(
            &[codec(96, "video/VP8"), codec(97, "video/rtx")],
            &[codec(120, "video/VP8")],
            &[
                ext(4, "urn:ietf:params:rtp-hdrext:sdes:mid"),
                ext(
                    3,
                    "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
                ),
                ext(
                    5,
                    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
                ),
                ext(6, "urn:3gpp:video-orientation"),
            ],
            &[
                ext(1, "urn:ietf:params:rtp-hdrext:sdes:mid"),
                ext(
                    2,
                    "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
                ),
            ],
            "7",
        )
    }

    #[test]
    fn maps_payload_type_ssrc_and_extensions_by_uri() {
        let t = translation();
        let mut s = SlotSequencer::new(0xabcd);
        let mut out = Header::default();
        let src = header(
            96,
            100,
            5000,
            &[(4, b"0"), (3, b"abc"), (5, b"xy"), (6, b"o")],
        );
        s.rewrite(&t, &src, &mut out, Instant::now()).unwrap();
        assert_eq!(out.payload_type, 120);
        assert_eq!(out.ssrc, 0xabcd);
        assert_eq!((out.sequence_number, out.timestamp), (100, 5000));
        // abs-send-time moved to id 2, mid rewritten to the slot's, transport-cc and the
        // extension the subscriber did not negotiate dropped.
        let exts: Vec<_> = out
            .extensions
            .iter()
            .map(|e| (e.id, e.payload.clone()))
            .collect();
        assert_eq!(
            exts,
            vec![
                (2, Bytes::from_static(b"abc")),
                (1, Bytes::from_static(b"7"))
            ]
        );
    }

    #[test]
    fn elements_the_one_byte_form_cannot_carry_use_the_two_byte_form() {
        let t = translation();
        let mut s = SlotSequencer::new(1);
        let mut out = Header::default();
        // A publisher's zero-length element (legal in its two-byte form).
        s.rewrite(&t, &header(96, 1, 1, &[(3, b"")]), &mut out, Instant::now())
            .unwrap();
        assert_eq!(out.extension_profile, 0x1000);
        let packet = rtc::rtp::Packet {
            header: out.clone(),
            payload: Bytes::from_static(b"x"),
        };
        use rtc::shared::marshal::Marshal;
        let wire = packet.marshal().unwrap();
        assert!(wire.len() > 12);
        // Ordinary elements keep the compact form.
        s.rewrite(
            &t,
            &header(96, 2, 1, &[(3, b"abc")]),
            &mut out,
            Instant::now(),
        )
        .unwrap();
        assert_eq!(out.extension_profile, 0xBEDE);
    }

    #[test]
    fn refuses_codecs_the_subscriber_lacks() {
        let t = translation();
        let mut s = SlotSequencer::new(1);
        let mut out = Header::default();
        assert_eq!(
            s.rewrite(&t, &header(97, 1, 1, &[]), &mut out, Instant::now()),
            Err(Unforwardable::CodecMismatch)
        );
        assert_eq!(
            s.rewrite(&t, &header(100, 1, 1, &[]), &mut out, Instant::now()),
            Err(Unforwardable::CodecMismatch)
        );
    }

    #[test]
    fn prefers_the_codec_with_the_same_fmtp() {
        let mut h264_a = codec(102, "video/H264");
        h264_a.fmtp = "profile-level-id=42e01f;packetization-mode=1".into();
        let mut sub_b = codec(108, "video/H264");
        sub_b.fmtp = "profile-level-id=640c1f;packetization-mode=1".into();
        let mut sub_a = codec(109, "video/H264");
        sub_a.fmtp = h264_a.fmtp.clone();
        let t = Translation::new(&[h264_a], &[sub_b, sub_a], &[], &[], "1");
        assert_eq!(t.payload_type(102), Some(109));
    }

    #[test]
    fn a_new_source_continues_the_slot_numbering() {
        let t = translation();
        let mut s = SlotSequencer::new(9);
        let mut out = Header::default();
        let t0 = Instant::now();
        for i in 0..3u16 {
            s.rewrite(
                &t,
                &header(96, 65534u16.wrapping_add(i), 1000 + i as u32 * 3000, &[]),
                &mut out,
                t0,
            )
            .unwrap();
        }
        assert_eq!(out.sequence_number, 0);
        // Another publisher takes the slot 100 ms later with unrelated numbering.
        s.switch_source();
        let t1 = t0 + Duration::from_millis(100);
        s.rewrite(&t, &header(96, 40000, 777_777, &[]), &mut out, t1)
            .unwrap();
        assert_eq!(out.sequence_number, 1);
        assert_eq!(
            out.timestamp,
            7000 + 9000,
            "100 ms at 90 kHz after the last timestamp"
        );
        s.rewrite(&t, &header(96, 40001, 780_777, &[]), &mut out, t1)
            .unwrap();
        assert_eq!((out.sequence_number, out.timestamp), (2, 19000));
    }

    #[test]
    fn reordered_packets_keep_their_relative_order() {
        let t = translation();
        let mut s = SlotSequencer::new(9);
        let mut out = Header::default();
        let now = Instant::now();
        s.rewrite(&t, &header(96, 10, 0, &[]), &mut out, now)
            .unwrap();
        s.rewrite(&t, &header(96, 12, 0, &[]), &mut out, now)
            .unwrap();
        s.rewrite(&t, &header(96, 11, 0, &[]), &mut out, now)
            .unwrap();
        assert_eq!(out.sequence_number, 11);
        // A later switch continues after the highest number sent, not the last one.
        s.switch_source();
        s.rewrite(&t, &header(96, 500, 0, &[]), &mut out, now)
            .unwrap();
        assert_eq!(out.sequence_number, 13);
    }
}
