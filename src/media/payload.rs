//! What the forwarder reads and rewrites inside RTP payloads: whether a packet starts a
//! keyframe (a subscriber can only switch to another simulcast layer there), the picture size a
//! keyframe announces, and the VP8/VP9 picture numbering a decoder follows across switches.
//!
//! Formats: VP8 RFC 7741 (payload descriptor) and RFC 6386 §9.1 (keyframe header); VP9
//! RFC 9628 (payload descriptor and scalability structure); H.264 RFC 6184 (NAL units, STAP-A,
//! FU-A). Everything here is pure and bounds-checked: payloads come from the network.

/// The video codecs whose payloads we look into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    Vp8,
    Vp9,
    H264,
    /// Anything else (audio included): never a keyframe, nothing to rewrite.
    Other,
}

impl VideoCodec {
    pub fn from_mime(mime: &str) -> VideoCodec {
        let name = mime.rsplit('/').next().unwrap_or(mime);
        if name.eq_ignore_ascii_case("VP8") {
            VideoCodec::Vp8
        } else if name.eq_ignore_ascii_case("VP9") {
            VideoCodec::Vp9
        } else if name.eq_ignore_ascii_case("H264") {
            VideoCodec::H264
        } else {
            VideoCodec::Other
        }
    }
}

/// What a packet tells about the frame it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameInfo {
    /// The packet is the first of a keyframe (a decoder can start here).
    pub keyframe_start: bool,
    /// The keyframe's picture height, where the payload says it.
    pub height: Option<u16>,
}

pub fn inspect(codec: VideoCodec, payload: &[u8]) -> FrameInfo {
    match codec {
        VideoCodec::Vp8 => vp8(payload),
        VideoCodec::Vp9 => vp9(payload),
        VideoCodec::H264 => FrameInfo {
            keyframe_start: h264_keyframe_start(payload),
            height: None,
        },
        VideoCodec::Other => FrameInfo::default(),
    }
}

/// The VP8 descriptor's layout: where the picture id and TL0PICIDX are, and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Vp8Descriptor {
    start_of_partition_0: bool,
    /// Offset and width (7 or 15 bits) of the picture id.
    picture_id: Option<(usize, u8)>,
    tl0: Option<usize>,
    len: usize,
}

fn vp8_descriptor(p: &[u8]) -> Option<Vp8Descriptor> {
    let b0 = *p.first()?;
    let mut d = Vp8Descriptor {
        start_of_partition_0: b0 & 0x10 != 0 && b0 & 0x0f == 0,
        len: 1,
        ..Default::default()
    };
    if b0 & 0x80 != 0 {
        let x = *p.get(1)?;
        d.len = 2;
        if x & 0x80 != 0 {
            let m = *p.get(d.len)? & 0x80 != 0;
            d.picture_id = Some((d.len, if m { 15 } else { 7 }));
            d.len += if m { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            d.tl0 = Some(d.len);
            d.len += 1;
        }
        if x & 0x30 != 0 {
            d.len += 1;
        }
    }
    (p.len() >= d.len).then_some(d)
}

fn vp8(p: &[u8]) -> FrameInfo {
    let Some(d) = vp8_descriptor(p) else {
        return FrameInfo::default();
    };
    let frame = &p[d.len..];
    // The frame tag's P bit is 0 on keyframes (RFC 6386 §9.1).
    if !d.start_of_partition_0 || frame.first().is_none_or(|b| b & 0x01 != 0) {
        return FrameInfo::default();
    }
    // 3-byte frame tag, start code 9d 01 2a, then 14-bit width and height (2 scaling bits).
    let height = (frame.len() >= 10 && frame[3..6] == [0x9d, 0x01, 0x2a])
        .then(|| u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff);
    FrameInfo {
        keyframe_start: true,
        height,
    }
}

/// The VP9 descriptor's layout (flexible or not), as far as numbering and keyframes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Vp9Descriptor {
    keyframe_start: bool,
    picture_id: Option<(usize, u8)>,
    tl0: Option<usize>,
    height: Option<u16>,
}

fn vp9_descriptor(p: &[u8]) -> Option<Vp9Descriptor> {
    let b0 = *p.first()?;
    let (i, inter, l, f, b, v) = (
        b0 & 0x80 != 0,
        b0 & 0x40 != 0,
        b0 & 0x20 != 0,
        b0 & 0x10 != 0,
        b0 & 0x08 != 0,
        b0 & 0x02 != 0,
    );
    let mut d = Vp9Descriptor::default();
    let mut at = 1;
    if i {
        let m = *p.get(at)? & 0x80 != 0;
        d.picture_id = Some((at, if m { 15 } else { 7 }));
        at += if m { 2 } else { 1 };
    }
    let mut spatial = 0;
    if l {
        spatial = (*p.get(at)? >> 1) & 0x07;
        at += 1;
        if !f {
            d.tl0 = Some(at);
            at += 1;
        }
    }
    if f && inter {
        // Up to 3 reference indices, each with an N bit saying another follows.
        for _ in 0..3 {
            let r = *p.get(at)?;
            at += 1;
            if r & 0x01 == 0 {
                break;
            }
        }
    }
    if v {
        let ss = *p.get(at)?;
        at += 1;
        if ss & 0x10 != 0 {
            // Y: width and height of each spatial layer; the first is the base layer's.
            let h = p.get(at + 2..at + 4)?;
            d.height = Some(u16::from_be_bytes([h[0], h[1]]));
        }
    }
    d.keyframe_start = !inter && b && spatial == 0;
    // Every field named above lies before `at`: a truncated descriptor is none (a 15-bit
    // picture id or a TL0PICIDX cut off by the payload's end would be read out of bounds).
    (p.len() >= at).then_some(d)
}

fn vp9(p: &[u8]) -> FrameInfo {
    match vp9_descriptor(p) {
        Some(d) => FrameInfo {
            keyframe_start: d.keyframe_start,
            height: d.height.filter(|_| d.keyframe_start),
        },
        None => FrameInfo::default(),
    }
}

/// An IDR slice, or the SPS that precedes one, starts this packet (single NAL unit, STAP-A or
/// the first fragment of an FU-A).
fn h264_keyframe_start(p: &[u8]) -> bool {
    let Some(&header) = p.first() else {
        return false;
    };
    let starts_key = |nal_type: u8| nal_type == 5 || nal_type == 7;
    match header & 0x1f {
        24 => {
            let mut at = 1;
            while let Some(size) = p.get(at..at + 2) {
                let size = u16::from_be_bytes([size[0], size[1]]) as usize;
                match p.get(at + 2) {
                    Some(nal) if size > 0 => {
                        if starts_key(nal & 0x1f) {
                            return true;
                        }
                    }
                    _ => return false,
                }
                at += 2 + size;
            }
            false
        }
        28 => p.get(1).is_some_and(|fu| fu & 0x80 != 0 && fu & 0x1f == 5),
        t => starts_key(t),
    }
}

/// Keeps the picture ids and TL0PICIDX a subscriber sees continuous when its slot changes
/// source (another simulcast layer or another publisher): decoders track them to find missing
/// frames. Offsets apply from the first packet after [`PictureNumbering::rebase`].
#[derive(Debug, Clone, Default)]
pub struct PictureNumbering {
    /// Highest picture id and TL0PICIDX sent (15-bit space).
    last_pid: Option<u16>,
    last_tl0: Option<u8>,
    pid_offset: u16,
    tl0_offset: u8,
    rebase: bool,
}

impl PictureNumbering {
    /// The next packet comes from another source: re-base on it.
    pub fn rebase(&mut self) {
        self.rebase = true;
    }

    /// Rewrites `payload` in place when its numbering needs shifting; returns whether it did
    /// (the caller copies the payload only then).
    pub fn needs_rewrite(&mut self, codec: VideoCodec, payload: &[u8]) -> bool {
        let Some((pid, tl0)) = read_numbering(codec, payload) else {
            return false;
        };
        if std::mem::take(&mut self.rebase) {
            if let (Some((value, bits)), Some(last)) = (pid, self.last_pid) {
                let mask = mask(bits);
                self.pid_offset = last.wrapping_add(1).wrapping_sub(value) & mask;
            }
            if let (Some(value), Some(last)) = (tl0, self.last_tl0) {
                self.tl0_offset = last.wrapping_add(1).wrapping_sub(value);
            }
        }
        if let Some((value, bits)) = pid {
            let out = value.wrapping_add(self.pid_offset) & mask(bits);
            let newer = self
                .last_pid
                .is_none_or(|l| (out.wrapping_sub(l) & mask(bits)) < (mask(bits) / 2 + 1));
            if newer {
                self.last_pid = Some(out);
            }
        }
        if let Some(value) = tl0 {
            let out = value.wrapping_add(self.tl0_offset);
            if self
                .last_tl0
                .is_none_or(|l| (out.wrapping_sub(l) as i8) >= 0)
            {
                self.last_tl0 = Some(out);
            }
        }
        (pid.is_some() && self.pid_offset != 0) || (tl0.is_some() && self.tl0_offset != 0)
    }

    /// Applies the current offsets to `payload` (which [`needs_rewrite`] said to copy).
    pub fn rewrite(&self, codec: VideoCodec, payload: &mut [u8]) {
        let (pid_at, tl0_at) = match codec {
            VideoCodec::Vp8 => match vp8_descriptor(payload) {
                Some(d) => (d.picture_id, d.tl0),
                None => return,
            },
            VideoCodec::Vp9 => match vp9_descriptor(payload) {
                Some(d) => (d.picture_id, d.tl0),
                None => return,
            },
            _ => return,
        };
        if let Some((at, bits)) = pid_at {
            if bits == 15 {
                let v = u16::from_be_bytes([payload[at] & 0x7f, payload[at + 1]]);
                let out = v.wrapping_add(self.pid_offset) & 0x7fff;
                payload[at] = 0x80 | (out >> 8) as u8;
                payload[at + 1] = out as u8;
            } else {
                let out = u16::from(payload[at] & 0x7f).wrapping_add(self.pid_offset) & 0x7f;
                payload[at] = out as u8;
            }
        }
        if let Some(at) = tl0_at {
            payload[at] = payload[at].wrapping_add(self.tl0_offset);
        }
    }
}

fn mask(bits: u8) -> u16 {
    if bits == 15 { 0x7fff } else { 0x7f }
}

/// A picture id: its value and width (7 or 15 bits).
type PictureId = (u16, u8);

/// The picture id and TL0PICIDX of a VP8/VP9 payload.
fn read_numbering(codec: VideoCodec, p: &[u8]) -> Option<(Option<PictureId>, Option<u8>)> {
    let (pid_at, tl0_at) = match codec {
        VideoCodec::Vp8 => {
            let d = vp8_descriptor(p)?;
            (d.picture_id, d.tl0)
        }
        VideoCodec::Vp9 => {
            let d = vp9_descriptor(p)?;
            (d.picture_id, d.tl0)
        }
        _ => return None,
    };
    let pid = pid_at.map(|(at, bits)| {
        let v = if bits == 15 {
            u16::from_be_bytes([p[at] & 0x7f, p[at + 1]])
        } else {
            u16::from(p[at] & 0x7f)
        };
        (v, bits)
    });
    Some((pid, tl0_at.map(|at| p[at])))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VP8 keyframe's first packet: X, S, PID 0; I (15-bit id), L; then the frame tag,
    /// start code and 640×360.
    fn vp8_key(pid: u16, tl0: u8) -> Vec<u8> {
        let mut p = vec![0x90, 0xc0, 0x80 | (pid >> 8) as u8, pid as u8, tl0];
        p.extend_from_slice(&[0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a]);
        p.extend_from_slice(&640u16.to_le_bytes());
        p.extend_from_slice(&360u16.to_le_bytes());
        p.extend_from_slice(&[0u8; 8]);
        p
    }

    fn vp8_delta(pid: u16, tl0: u8) -> Vec<u8> {
        vec![
            0x90,
            0xc0,
            0x80 | (pid >> 8) as u8,
            pid as u8,
            tl0,
            0x31,
            0,
            0,
        ]
    }

    /// Found by `fuzz/fuzz_targets/rtp_rewrite.rs` (fuzz/regressions/rtp_rewrite/): a VP9
    /// descriptor whose 15-bit picture id (or TL0PICIDX) runs past the payload's end made the
    /// media thread index out of bounds when it renumbered the packet.
    #[test]
    fn truncated_vp9_descriptors_are_not_read_past_their_end() {
        // I with a 15-bit id cut after its first byte; L without F, TL0PICIDX cut off (the
        // fuzzer's input: P, L, Z).
        for payload in [&[0x80u8, 0x80][..], &[0x20, 0x00], &[0x61, 0x5f]] {
            let mut numbering = PictureNumbering::default();
            numbering.rebase();
            assert!(
                !numbering.needs_rewrite(VideoCodec::Vp9, payload),
                "{payload:?}"
            );
            let _ = inspect(VideoCodec::Vp9, payload);
        }
        // The same descriptor, complete, is read.
        let mut numbering = PictureNumbering::default();
        assert!(read_numbering(VideoCodec::Vp9, &[0x80, 0x80, 0x05]).is_some());
        assert!(!numbering.needs_rewrite(VideoCodec::Vp9, &[0x80, 0x80, 0x05]));
    }

    #[test]
    fn vp8_keyframes_and_their_height_are_recognised() {
        assert_eq!(
            inspect(VideoCodec::Vp8, &vp8_key(5, 1)),
            FrameInfo {
                keyframe_start: true,
                height: Some(360)
            }
        );
        assert!(!inspect(VideoCodec::Vp8, &vp8_delta(6, 1)).keyframe_start);
        // A continuation packet (S = 0) of a keyframe does not start one.
        let mut cont = vp8_key(5, 1);
        cont[0] = 0x80;
        assert!(!inspect(VideoCodec::Vp8, &cont).keyframe_start);
        // Truncated or empty payloads are no keyframes and no panics.
        for n in 0..6 {
            let _ = inspect(VideoCodec::Vp8, &vp8_key(5, 1)[..n]);
        }
        assert_eq!(inspect(VideoCodec::Vp8, &[]), FrameInfo::default());
    }

    #[test]
    fn h264_idr_sps_and_fragments_are_recognised() {
        assert!(h264_keyframe_start(&[0x65, 1, 2]), "IDR slice");
        assert!(!h264_keyframe_start(&[0x41, 1, 2]), "non-IDR slice");
        // STAP-A with SPS (7) and PPS (8).
        assert!(h264_keyframe_start(&[0x78, 0, 2, 0x67, 1, 0, 2, 0x68, 1]));
        assert!(!h264_keyframe_start(&[0x78, 0, 2, 0x41, 1]));
        assert!(!h264_keyframe_start(&[0x78, 0, 9, 0x41]), "truncated");
        // FU-A: start of an IDR, middle of an IDR.
        assert!(h264_keyframe_start(&[0x7c, 0x85, 1]));
        assert!(!h264_keyframe_start(&[0x7c, 0x05, 1]));
    }

    #[test]
    fn vp9_keyframes_carry_their_height_in_the_scalability_structure() {
        // I (15-bit), B, V; SS with Y, N_S = 1: 1280×720; no G.
        let p = [0x8a, 0x80, 0x07, 0x10, 0x05, 0x00, 0x02, 0xd0, 0xaa];
        assert_eq!(
            inspect(VideoCodec::Vp9, &p),
            FrameInfo {
                keyframe_start: true,
                height: Some(720)
            }
        );
        // P set: an inter frame.
        assert!(!inspect(VideoCodec::Vp9, &[0xc8, 0x80, 0x07, 0xaa]).keyframe_start);
    }

    #[test]
    fn picture_ids_continue_across_a_switch() {
        let mut n = PictureNumbering::default();
        for pid in 100..103 {
            assert!(!n.needs_rewrite(VideoCodec::Vp8, &vp8_delta(pid, 7)));
        }
        // Another layer with unrelated numbering takes over at a keyframe.
        n.rebase();
        let mut key = vp8_key(9000, 200);
        assert!(n.needs_rewrite(VideoCodec::Vp8, &key));
        n.rewrite(VideoCodec::Vp8, &mut key);
        assert_eq!(
            read_numbering(VideoCodec::Vp8, &key),
            Some((Some((103, 15)), Some(8)))
        );
        assert_eq!(
            inspect(VideoCodec::Vp8, &key).height,
            Some(360),
            "frame untouched"
        );
        let mut next = vp8_delta(9001, 200);
        assert!(n.needs_rewrite(VideoCodec::Vp8, &next));
        n.rewrite(VideoCodec::Vp8, &mut next);
        assert_eq!(
            read_numbering(VideoCodec::Vp8, &next),
            Some((Some((104, 15)), Some(8)))
        );
        // Wrapping at 15 bits.
        let mut w = PictureNumbering::default();
        w.needs_rewrite(VideoCodec::Vp8, &vp8_delta(0x7fff, 255));
        w.rebase();
        let mut p = vp8_key(10, 3);
        assert!(w.needs_rewrite(VideoCodec::Vp8, &p));
        w.rewrite(VideoCodec::Vp8, &mut p);
        assert_eq!(
            read_numbering(VideoCodec::Vp8, &p),
            Some((Some((0, 15)), Some(0)))
        );
    }
}
