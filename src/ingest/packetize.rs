//! A camera's frames as WebRTC RTP packets: H.264 in packetization mode 1 (single NAL units,
//! STAP-A with SPS and PPS ahead of every keyframe, FU-A), G.711 as it came.
//!
//! The packets get their own SSRC, sequence numbers and timestamps, continuous across the
//! camera's reconnections (a new RTSP session restarts its timestamps): subscribers see one
//! stream that paused.

use std::time::Instant;

use bytes::Bytes;
use rtc::rtp;
use rtc::rtp::codec::h264::H264Payloader;
use rtc::rtp::packetizer::Payloader;

/// Payload bytes per packet: room for SRTP, header extensions and a TURN or TCP framing on the
/// subscribers' legs within a 1280-byte IPv6 minimum MTU (MediaMTX uses about the same).
pub const MTU: usize = 1188;

/// Maps a session's timestamps (counted from its first packet) onto the stream's.
#[derive(Debug, Clone)]
pub struct Timeline {
    clock_rate: u32,
    /// The stream's timestamp at the current session's zero.
    base: u32,
    /// The last timestamp given out and when.
    last: Option<(u32, Instant)>,
}

impl Timeline {
    pub fn new(clock_rate: u32, start: u32) -> Timeline {
        Timeline {
            clock_rate,
            base: start,
            last: None,
        }
    }

    /// A new session starts (its timestamps start again at 0): the stream goes on from its last
    /// timestamp plus the wall time that passed.
    pub fn restart(&mut self, now: Instant) {
        if let Some((ts, at)) = self.last {
            let gap = now.saturating_duration_since(at).as_secs_f64() * self.clock_rate as f64;
            self.base = ts.wrapping_add((gap as u32).max(1));
        }
    }

    /// The stream's timestamp for a session timestamp `elapsed` (clock units since its start).
    pub fn map(&mut self, elapsed: i64, now: Instant) -> u32 {
        let ts = self.base.wrapping_add(elapsed as u32);
        self.last = Some((ts, now));
        ts
    }
}

/// Makes RTP packets of one track.
pub struct Packetizer {
    payload_type: u8,
    ssrc: u32,
    sequence: u16,
    h264: Option<H264Payloader>,
    pub timeline: Timeline,
}

impl Packetizer {
    /// H.264 access units (Annex B) into RTP with payload type `payload_type`.
    pub fn h264(payload_type: u8, ssrc: u32, first: (u16, u32)) -> Packetizer {
        Packetizer {
            payload_type,
            ssrc,
            sequence: first.0,
            h264: Some(H264Payloader::default()),
            timeline: Timeline::new(90_000, first.1),
        }
    }

    /// Audio frames sent one per packet (G.711: 8 kHz).
    pub fn audio(payload_type: u8, ssrc: u32, clock_rate: u32, first: (u16, u32)) -> Packetizer {
        Packetizer {
            payload_type,
            ssrc,
            sequence: first.0,
            h264: None,
            timeline: Timeline::new(clock_rate, first.1),
        }
    }

    pub fn payload_type(&self) -> u8 {
        self.payload_type
    }

    /// One frame's packets, the last with the marker bit (the end of the frame).
    pub fn frame(&mut self, timestamp: u32, data: &Bytes, out: &mut Vec<rtp::Packet>) {
        let payloads = match &mut self.h264 {
            Some(h264) => h264.payload(MTU, data).unwrap_or_default(),
            None => vec![data.clone()],
        };
        let count = payloads.len();
        for (i, payload) in payloads.into_iter().enumerate() {
            out.push(rtp::Packet {
                header: rtp::header::Header {
                    version: 2,
                    marker: i + 1 == count,
                    payload_type: self.payload_type,
                    sequence_number: self.sequence,
                    timestamp,
                    ssrc: self.ssrc,
                    ..Default::default()
                },
                payload,
            });
            self.sequence = self.sequence.wrapping_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_keyframe_gets_its_parameter_sets_first_and_large_nal_units_are_fragmented() {
        let mut p = Packetizer::h264(102, 7, (100, 0));
        let mut idr = vec![0, 0, 0, 1, 0x67, 0x42, 0xe0, 0x1f, 0, 0, 0, 1, 0x68, 0xce];
        idr.extend([0, 0, 0, 1, 0x65]);
        idr.extend(std::iter::repeat_n(0x55, 3000));
        let mut out = Vec::new();
        p.frame(9000, &Bytes::from(idr), &mut out);
        assert_eq!(out[0].payload[0] & 0x1f, 24, "STAP-A with SPS and PPS");
        assert!(out[1..].iter().all(|p| p.payload[0] & 0x1f == 28), "FU-A");
        assert!(
            out.iter()
                .all(|p| p.payload.len() <= MTU && p.header.timestamp == 9000)
        );
        assert_eq!(out.iter().filter(|p| p.header.marker).count(), 1);
        assert!(out.last().unwrap().header.marker);
        let seqs: Vec<u16> = out.iter().map(|p| p.header.sequence_number).collect();
        assert_eq!(seqs, (100..100 + out.len() as u16).collect::<Vec<_>>());
        let info = crate::media::payload::inspect(
            crate::media::payload::VideoCodec::H264,
            &out[0].payload,
        );
        assert!(
            info.keyframe_start,
            "the forwarding path sees a keyframe start"
        );
    }

    #[test]
    fn timestamps_go_on_across_a_reconnection() {
        let t0 = Instant::now();
        let mut t = Timeline::new(90_000, 1000);
        assert_eq!(t.map(0, t0), 1000);
        assert_eq!(t.map(90_000, t0 + Duration::from_secs(1)), 91_000);
        // Gone 2 s; the new session counts from 0 again.
        t.restart(t0 + Duration::from_secs(3));
        assert_eq!(t.map(0, t0 + Duration::from_secs(3)), 91_000 + 180_000);
        assert_eq!(t.map(9000, t0 + Duration::from_millis(3100)), 280_000);
    }
}
