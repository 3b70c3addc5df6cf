//! An offer's SDP, any text: what the server reads from it (m-lines, directions, codecs,
//! simulcast rids and SSRC groups, transport-cc) must never panic, and what it reports must
//! be consistent (a publish line and a slot are usable; at most 4 layers).
#![no_main]

use firesfu::media::CodecSupport;
use firesfu::media::offer::inspect_offer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(sdp) = std::str::from_utf8(data) else {
        return;
    };
    let codecs = CodecSupport {
        audio: vec!["opus".into()],
        video: vec!["VP8".into(), "VP9".into(), "H264".into()],
    };
    if let Ok(summary) = inspect_offer(sdp, &codecs) {
        assert!(summary.media.len() <= summary.m_lines);
        for m in &summary.media {
            assert!(m.rids.len() <= 4 && m.sim_ssrcs.len() <= 4);
            assert!(m.rids.is_empty() || m.sim_ssrcs.is_empty());
            if m.publishes() || m.is_slot() {
                assert!(m.usable && m.codec.is_some());
            }
        }
    }
});
