//! Reading a client's offer before it touches a peer connection: which m-lines it carries,
//! which of them publish and which want to receive, and whether we can serve it at all.
//!
//! This runs first so that bad input is rejected with a precise reason, and because the
//! answer-side transceiver fix in `peer.rs` needs each m-line's kind and offered direction
//! (the `rtc` crate reports `Unspecified` kinds right after applying an offer).

use std::io::Cursor;

use rtc::sdp::description::media::MediaDescription;
use rtc::sdp::description::session::SessionDescription;

/// Offers larger than this are refused before parsing (the protocol's documented limit).
pub const MAX_SDP_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MediaKind {
    Audio,
    Video,
}

impl MediaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        }
    }
}

/// The direction an m-line was offered with, from the client's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferedDirection {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

/// What one audio/video m-line of the offer asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedMedia {
    pub mid: String,
    pub kind: MediaKind,
    pub direction: OfferedDirection,
    /// Port 0, or no codec we support: the answer rejects it and nothing flows on it.
    pub usable: bool,
    /// The simulcast layers it sends (`a=simulcast:send`, or its `a=rid:… send` lines), in the
    /// offer's order; empty without simulcast.
    pub rids: Vec<String>,
    /// Without rids: the SSRCs of SSRC-signalled simulcast layers (`a=ssrc-group:SIM`, RFC
    /// 5576 grouping as libwebrtc writes it: low to high), else empty.
    pub sim_ssrcs: Vec<u32>,
    /// The offer's preferred codec that we forward (its encoding name and clock rate).
    pub codec: Option<(String, u32)>,
    /// The offer can receive retransmissions of that codec on an RTX stream (RFC 4588).
    pub rtx: bool,
}

impl OfferedMedia {
    /// The client sends media on this m-line (we answer it `recvonly`).
    pub fn publishes(&self) -> bool {
        self.usable
            && matches!(
                self.direction,
                OfferedDirection::SendOnly | OfferedDirection::SendRecv
            )
    }

    /// A receive slot: the client wants media from us on it (we answer it `sendonly`).
    /// `sendrecv` m-lines are publish lines; only `recvonly` ones are slots.
    pub fn is_slot(&self) -> bool {
        self.usable && self.direction == OfferedDirection::RecvOnly
    }
}

/// The parts of an offer the server acts on, in m-line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferSummary {
    pub media: Vec<OfferedMedia>,
    /// Every m-line of the offer, of any kind (audio, video, data, unknown).
    pub m_lines: usize,
    /// Some m-line negotiates transport-wide sequence numbers (`a=extmap:… transport-wide-cc`):
    /// the client sends congestion-control feedback; without, REMB is its only estimate.
    pub transport_cc: bool,
}

impl OfferSummary {
    pub fn slots(&self) -> impl Iterator<Item = &OfferedMedia> {
        self.media.iter().filter(|m| m.is_slot())
    }

    pub fn published(&self) -> impl Iterator<Item = &OfferedMedia> {
        self.media.iter().filter(|m| m.publishes())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    #[error("the offer is {bytes} bytes; the limit is {MAX_SDP_BYTES}")]
    TooLarge { bytes: usize },
    #[error("the offer is not valid SDP: {0}")]
    Malformed(String),
    #[error("the offer has no usable media: {0}")]
    NoUsableMedia(String),
}

/// The transport-wide sequence number header extension (draft-holmer-rmcat-transport-wide-cc).
const TRANSPORT_CC_URI: &str = "transport-wide-cc-extensions-01";

/// Codec names (case-insensitive, as in `a=rtpmap`) the server accepts per kind.
#[derive(Debug, Clone)]
pub struct CodecSupport {
    pub audio: Vec<String>,
    pub video: Vec<String>,
}

impl CodecSupport {
    fn accepts(&self, kind: MediaKind, name: &str) -> bool {
        let list = match kind {
            MediaKind::Audio => &self.audio,
            MediaKind::Video => &self.video,
        };
        list.iter().any(|c| c.eq_ignore_ascii_case(name))
    }
}

pub fn inspect_offer(sdp: &str, codecs: &CodecSupport) -> Result<OfferSummary, OfferError> {
    if sdp.len() > MAX_SDP_BYTES {
        return Err(OfferError::TooLarge { bytes: sdp.len() });
    }
    if !sdp.starts_with("v=0") {
        return Err(OfferError::Malformed("it must start with \"v=0\"".into()));
    }
    let parsed = SessionDescription::unmarshal(&mut Cursor::new(sdp.as_bytes()))
        .map_err(|e| OfferError::Malformed(e.to_string()))?;

    let mut media = Vec::new();
    let mut seen_mids = std::collections::HashSet::new();
    for (index, m) in parsed.media_descriptions.iter().enumerate() {
        let kind = match m.media_name.media.as_str() {
            "audio" => MediaKind::Audio,
            "video" => MediaKind::Video,
            // Data channels and anything else are answered by the stack as it sees fit; they
            // carry no media we route.
            _ => continue,
        };
        let mid = match m.attribute("mid") {
            Some(Some(mid)) if !mid.is_empty() => mid.to_owned(),
            _ => {
                return Err(OfferError::Malformed(format!(
                    "m-line {index} ({}) has no a=mid; BUNDLE needs one on every m-line",
                    kind.as_str()
                )));
            }
        };
        if !seen_mids.insert(mid.clone()) {
            return Err(OfferError::Malformed(format!("a=mid:{mid} appears twice")));
        }
        let offered = m.codecs();
        // In the offer's order of preference (its format list).
        let chosen = m
            .media_name
            .formats
            .iter()
            .filter_map(|f| offered.get(&f.parse::<u8>().ok()?))
            .chain(offered.values())
            .find(|c| codecs.accepts(kind, &c.name));
        let codec = chosen.map(|c| (c.name.clone(), c.clock_rate));
        // RFC 4588: an `rtx` format whose `apt` names the chosen codec.
        let rtx = chosen.is_some_and(|chosen| {
            let apt = format!("apt={}", chosen.payload_type);
            offered.values().any(|c| {
                c.name.eq_ignore_ascii_case("rtx") && c.fmtp.split(';').any(|p| p.trim() == apt)
            })
        });
        let usable = m.media_name.port.value != 0 && codec.is_some();
        media.push(OfferedMedia {
            mid,
            kind,
            direction: direction_of(m),
            usable,
            sim_ssrcs: sim_ssrcs(m),
            rids: send_rids(m),
            codec,
            rtx,
        });
    }

    let has_flow = media
        .iter()
        .any(|m| m.usable && m.direction != OfferedDirection::Inactive);
    if !has_flow {
        let reason = if media.is_empty() {
            "there is no audio or video m-line".to_owned()
        } else {
            format!(
                "no audio or video m-line is active with a supported codec (audio: {}; video: {})",
                codecs.audio.join(", "),
                codecs.video.join(", ")
            )
        };
        return Err(OfferError::NoUsableMedia(reason));
    }
    let transport_cc = parsed.media_descriptions.iter().any(|m| {
        m.attributes.iter().any(|a| {
            a.key == "extmap"
                && a.value
                    .as_deref()
                    .is_some_and(|v| v.contains(TRANSPORT_CC_URI))
        })
    });
    Ok(OfferSummary {
        media,
        m_lines: parsed.media_descriptions.len(),
        transport_cc,
    })
}

/// The layers of `a=ssrc-group:SIM <ssrc>…` (2 to 4 distinct SSRCs, each also declared by an
/// `a=ssrc` line), when the m-line has no rids; else empty (one stream).
fn sim_ssrcs(m: &MediaDescription) -> Vec<u32> {
    if m.attributes.iter().any(|a| a.key == "rid") {
        return Vec::new();
    }
    let declared = |ssrc: u32| {
        m.attributes.iter().any(|a| {
            a.key == "ssrc"
                && a.value
                    .as_deref()
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|v| v.parse::<u32>().ok())
                    == Some(ssrc)
        })
    };
    m.attributes
        .iter()
        .filter(|a| a.key == "ssrc-group")
        .filter_map(|a| a.value.as_deref()?.strip_prefix("SIM "))
        .map(|list| {
            list.split_whitespace()
                .map(|s| s.parse::<u32>().ok().filter(|v| *v != 0 && declared(*v)))
                .collect::<Option<Vec<u32>>>()
                .unwrap_or_default()
        })
        .find(|ssrcs| {
            (2..=4).contains(&ssrcs.len())
                && ssrcs
                    .iter()
                    .enumerate()
                    .all(|(i, s)| !ssrcs[..i].contains(s))
        })
        .unwrap_or_default()
}

/// The rids of the layers an m-line sends: `a=simulcast:send q;h;f` (alternatives after `,`
/// and paused `~` layers included), else every `a=rid:<id> send`. At most 4 layers (the
/// browsers' maximum is 3).
fn send_rids(m: &MediaDescription) -> Vec<String> {
    fn value<'a>(m: &'a MediaDescription, key: &'a str) -> impl Iterator<Item = &'a str> {
        m.attributes
            .iter()
            .filter(move |a| a.key == key)
            .filter_map(|a| a.value.as_deref())
    }
    let declared: Vec<&str> = value(m, "rid")
        .filter_map(|v| {
            let mut parts = v.split_whitespace();
            let id = parts.next()?;
            (parts.next() == Some("send")).then_some(id)
        })
        .collect();
    let from_simulcast: Vec<&str> = value(m, "simulcast")
        .filter_map(|v| {
            let mut parts = v.split_whitespace();
            while let Some(dir) = parts.next() {
                let list = parts.next()?;
                if dir == "send" {
                    return Some(list);
                }
            }
            None
        })
        .flat_map(|list| list.split([';', ',']))
        .map(|r| r.trim_start_matches('~'))
        .filter(|r| declared.contains(r))
        .collect();
    let rids = if from_simulcast.is_empty() {
        declared
    } else {
        from_simulcast
    };
    let mut out: Vec<String> = Vec::new();
    for rid in rids {
        if !rid.is_empty() && rid.len() <= 16 && !out.iter().any(|r| r == rid) {
            out.push(rid.to_owned());
        }
    }
    out.truncate(4);
    out
}

fn direction_of(m: &MediaDescription) -> OfferedDirection {
    for attr in &m.attributes {
        match attr.key.as_str() {
            "sendrecv" => return OfferedDirection::SendRecv,
            "sendonly" => return OfferedDirection::SendOnly,
            "recvonly" => return OfferedDirection::RecvOnly,
            "inactive" => return OfferedDirection::Inactive,
            _ => {}
        }
    }
    // RFC 4566: sendrecv is the default when no direction attribute is present.
    OfferedDirection::SendRecv
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn codecs() -> CodecSupport {
        CodecSupport {
            audio: vec!["opus".into()],
            video: vec!["VP8".into()],
        }
    }

    /// A minimal browser-like offer: m-lines as (kind, direction, codec).
    pub fn offer_with(lines: &[(&str, &str, &str)]) -> String {
        let mut sdp =
            String::from("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE");
        for i in 0..lines.len() {
            sdp.push_str(&format!(" {i}"));
        }
        sdp.push_str("\r\n");
        for (i, (kind, dir, codec)) in lines.iter().enumerate() {
            let (pt, rate) = if *kind == "audio" {
                (111, "48000/2")
            } else {
                (96, "90000")
            };
            sdp.push_str(&format!(
                "m={kind} 9 UDP/TLS/RTP/SAVPF {pt}\r\nc=IN IP4 0.0.0.0\r\na=mid:{i}\r\na={dir}\r\na=rtcp-mux\r\na=rtpmap:{pt} {codec}/{rate}\r\n"
            ));
        }
        sdp
    }

    #[test]
    fn classifies_publish_and_slot_lines() {
        let sdp = offer_with(&[
            ("audio", "sendonly", "opus"),
            ("video", "sendrecv", "VP8"),
            ("video", "recvonly", "VP8"),
            ("audio", "inactive", "opus"),
        ]);
        let s = inspect_offer(&sdp, &codecs()).unwrap();
        assert_eq!(s.media.len(), 4);
        let published: Vec<_> = s.published().map(|m| m.mid.as_str()).collect();
        assert_eq!(published, ["0", "1"]);
        let slots: Vec<_> = s.slots().map(|m| (m.mid.as_str(), m.kind)).collect();
        assert_eq!(slots, [("2", MediaKind::Video)]);
    }

    #[test]
    fn reads_the_simulcast_layers_a_line_sends() {
        let sdp = offer_with(&[("video", "sendonly", "VP8"), ("video", "sendonly", "VP8")])
            .replacen(
                "a=mid:0\r\n",
                "a=mid:0\r\na=rid:q send\r\na=rid:h send\r\na=rid:f send\r\na=rid:x recv\r\na=simulcast:send q;~h,f\r\n",
                1,
            )
            .replacen("a=mid:1\r\n", "a=mid:1\r\na=rid:b send\r\na=rid:a send\r\n", 1);
        let s = inspect_offer(&sdp, &codecs()).unwrap();
        assert_eq!(s.media[0].rids, ["q", "h", "f"]);
        assert_eq!(
            s.media[1].rids,
            ["b", "a"],
            "a=rid lines without a=simulcast"
        );
        let plain = inspect_offer(&offer_with(&[("video", "sendonly", "VP8")]), &codecs()).unwrap();
        assert!(plain.media[0].rids.is_empty());
    }

    #[test]
    fn reads_ssrc_signalled_simulcast_layers() {
        let ssrcs = "a=ssrc-group:FID 1 11\r\na=ssrc-group:SIM 1 2 3\r\na=ssrc-group:FID 2 12\r\n\
                     a=ssrc:1 cname:c\r\na=ssrc:11 cname:c\r\na=ssrc:2 cname:c\r\na=ssrc:12 cname:c\r\na=ssrc:3 cname:c\r\n";
        let sdp = offer_with(&[("video", "sendonly", "VP8"), ("video", "sendonly", "VP8")])
            .replacen("a=mid:0\r\n", &format!("a=mid:0\r\n{ssrcs}"), 1)
            // An SSRC the m-line never declares: not simulcast.
            .replacen(
                "a=mid:1\r\n",
                "a=mid:1\r\na=ssrc-group:SIM 5 6\r\na=ssrc:5 cname:c\r\n",
                1,
            );
        let s = inspect_offer(&sdp, &codecs()).unwrap();
        assert_eq!(s.media[0].sim_ssrcs, [1, 2, 3]);
        assert!(s.media[0].rids.is_empty());
        assert!(s.media[1].sim_ssrcs.is_empty());
        // With rids, the rids define the layers.
        let both = offer_with(&[("video", "sendonly", "VP8")]).replacen(
            "a=mid:0\r\n",
            &format!("a=mid:0\r\na=rid:q send\r\na=rid:f send\r\n{ssrcs}"),
            1,
        );
        let s = inspect_offer(&both, &codecs()).unwrap();
        assert!(s.media[0].sim_ssrcs.is_empty());
        assert_eq!(s.media[0].rids, ["q", "f"]);
    }

    #[test]
    fn refuses_oversized_offers_before_parsing() {
        let sdp = "v=0\r\n".to_owned() + &"a=x\r\n".repeat(MAX_SDP_BYTES / 4);
        assert!(matches!(
            inspect_offer(&sdp, &codecs()),
            Err(OfferError::TooLarge { .. })
        ));
    }

    #[test]
    fn refuses_text_that_is_not_sdp() {
        assert!(matches!(
            inspect_offer("hello", &codecs()),
            Err(OfferError::Malformed(_))
        ));
        assert!(matches!(
            inspect_offer("v=0\r\nm=audio nonsense\r\n", &codecs()),
            Err(OfferError::Malformed(_))
        ));
    }

    #[test]
    fn refuses_media_lines_without_mid() {
        let sdp = offer_with(&[("audio", "sendonly", "opus")]).replace("a=mid:0\r\n", "");
        let err = inspect_offer(&sdp, &codecs()).unwrap_err();
        assert!(err.to_string().contains("no a=mid"), "{err}");
    }

    #[test]
    fn refuses_offers_without_any_supported_codec() {
        let sdp = offer_with(&[("video", "sendonly", "H265")]);
        assert!(matches!(
            inspect_offer(&sdp, &codecs()),
            Err(OfferError::NoUsableMedia(_))
        ));
        let sdp = offer_with(&[("audio", "inactive", "opus")]);
        assert!(matches!(
            inspect_offer(&sdp, &codecs()),
            Err(OfferError::NoUsableMedia(_))
        ));
    }

    #[test]
    fn a_line_with_an_unsupported_codec_is_kept_but_unusable() {
        let sdp = offer_with(&[("audio", "sendonly", "opus"), ("video", "sendonly", "H265")]);
        let s = inspect_offer(&sdp, &codecs()).unwrap();
        assert!(s.media[0].usable);
        assert!(!s.media[1].usable);
        assert_eq!(s.published().count(), 1);
    }
}
