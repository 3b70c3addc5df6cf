//! The SDP a WHIP client sends, read and adjusted as the broadcast needs it: BUNDLE for a
//! single-track offer, rejected m-lines, the ICE ufrag, what it publishes, PATCH fragments.

/// The line ending an SDP uses (CRLF per RFC 8866; some tools write LF).
pub(super) fn eol(sdp: &str) -> &'static str {
    if sdp.contains("\r\n") { "\r\n" } else { "\n" }
}

/// `(kind, port, mid)` of every m-line.
pub(super) fn m_lines(sdp: &str) -> Vec<(String, String, Option<String>)> {
    let mut out: Vec<(String, String, Option<String>)> = Vec::new();
    for line in sdp.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            let mut parts = m.split_whitespace();
            let kind = parts.next().unwrap_or_default().to_owned();
            let port = parts.next().unwrap_or_default().to_owned();
            out.push((kind, port, None));
        } else if let (Some(mid), Some(last)) = (line.strip_prefix("a=mid:"), out.last_mut()) {
            last.2 = Some(mid.trim().to_owned());
        }
    }
    out
}

/// The offer as the broadcast is given it. The WebRTC stack answers an offer without a BUNDLE
/// group by rejecting every m-line, while a client with a single track may well offer none
/// (GStreamer's webrtcbin with one track and `bundle-policy` none): one m-line is one transport
/// either way, so such an offer is given a BUNDLE group of its mid here, and the answer loses
/// it again ([`unbundled`]). `Ok((offer, added))`; several m-lines without BUNDLE are refused
/// (RFC 9725 §4.4.1 requires max-bundle).
pub fn bundled(sdp: &str) -> Result<(String, bool), String> {
    if sdp.lines().any(|l| l.starts_with("a=group:BUNDLE")) {
        return Ok((sdp.to_owned(), false));
    }
    let lines = m_lines(sdp);
    match lines.as_slice() {
        [] => Ok((sdp.to_owned(), false)),
        [(_, _, Some(mid))] => {
            let at = sdp.find("\nm=").map_or(0, |i| i + 1);
            let mut out = String::with_capacity(sdp.len() + 32);
            out.push_str(&sdp[..at]);
            out.push_str(&format!("a=group:BUNDLE {mid}{}", eol(sdp)));
            out.push_str(&sdp[at..]);
            Ok((out, true))
        }
        [_] => Ok((sdp.to_owned(), false)),
        _ => Err(
            "an offer with several m-lines must BUNDLE them (max-bundle, RFC 9725 §4.4.1)".into(),
        ),
    }
}

/// The answer without its BUNDLE group (for an offer that had none).
pub fn unbundled(answer: &str) -> String {
    answer
        .split_inclusive('\n')
        .filter(|l| !l.starts_with("a=group:BUNDLE"))
        .collect()
}

/// The mids of the audio and video m-lines the answer rejects (port 0).
pub fn rejected_mids(answer: &str) -> Vec<String> {
    m_lines(answer)
        .into_iter()
        .filter(|(kind, port, _)| (kind == "audio" || kind == "video") && port == "0")
        .map(|(_, _, mid)| mid.unwrap_or_default())
        .collect()
}

/// The offer's ICE username fragment (session level, or its first m-line's).
pub fn ice_ufrag(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .map(str::trim)
}

/// Which kinds the offer publishes (`media` of the session document).
pub fn published(sdp: &str) -> (bool, bool) {
    let (mut audio, mut video) = (false, false);
    let mut current: Option<(String, bool)> = None;
    let mut close = |m: Option<(String, bool)>| {
        if let Some((kind, sends)) = m
            && sends
        {
            audio |= kind == "audio";
            video |= kind == "video";
        }
    };
    for line in sdp.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            close(current.take());
            let mut parts = m.split_whitespace();
            let kind = parts.next().unwrap_or_default().to_owned();
            let open = parts.next() != Some("0");
            current = Some((kind, open));
        } else if let Some((_, sends)) = current.as_mut()
            && matches!(line, "a=recvonly" | "a=inactive")
        {
            *sends = false;
        }
    }
    close(current);
    (audio, video)
}

/// What a PATCH body (an SDP fragment, RFC 8840) asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patch {
    /// Trickled candidates (or nothing) for the current ICE session.
    Candidates,
    /// New ICE credentials: an ICE restart.
    Restart,
}

pub fn classify_patch(body: &str, ufrag: &str) -> Result<Patch, String> {
    let mut restart = false;
    for line in body.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
        let well_formed = line.len() >= 2
            && line.as_bytes()[1] == b'='
            && line.as_bytes()[0].is_ascii_lowercase();
        if !well_formed {
            return Err(format!(
                "not an SDP fragment line: {:?}",
                line.chars().take(40).collect::<String>()
            ));
        }
        if let Some(u) = line.strip_prefix("a=ice-ufrag:") {
            restart |= u.trim() != ufrag;
        }
    }
    Ok(if restart {
        Patch::Restart
    } else {
        Patch::Candidates
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=ice-ufrag:abcd\r\na=ice-pwd:x\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:v\r\na=sendonly\r\na=rtpmap:96 H264/90000\r\n";

    #[test]
    fn a_single_m_line_without_bundle_is_bundled_for_the_stack_and_unbundled_back() {
        let (offer, added) = bundled(ONE).unwrap();
        assert!(added);
        assert!(
            offer.contains(
                "t=0 0\r\na=ice-ufrag:abcd\r\na=ice-pwd:x\r\na=group:BUNDLE v\r\nm=video"
            )
        );
        let (same, added) = bundled(&offer).unwrap();
        assert!(!added);
        assert_eq!(same, offer);
        let answer = "v=0\r\na=group:BUNDLE v\r\na=ice-lite\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:v\r\n";
        assert_eq!(
            unbundled(answer),
            "v=0\r\na=ice-lite\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:v\r\n"
        );
        let two = format!("{ONE}m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:a\r\n");
        assert!(bundled(&two).is_err(), "max-bundle is required");
    }

    #[test]
    fn reads_rejected_m_lines_ufrag_and_published_kinds() {
        let answer = "v=0\r\nm=audio 9 UDP 111\r\na=mid:0\r\nm=video 0 UDP 96\r\na=mid:1\r\nm=application 0 UDP 5000\r\na=mid:2\r\n";
        assert_eq!(rejected_mids(answer), vec!["1".to_owned()]);
        assert_eq!(ice_ufrag(ONE), Some("abcd"));
        assert_eq!(published(ONE), (false, true));
        let recv = ONE.replace("a=sendonly", "a=recvonly");
        assert_eq!(published(&recv), (false, false));
        let both = format!("{ONE}m=audio 9 UDP 111\r\na=mid:a\r\n");
        assert_eq!(published(&both), (true, true), "sendrecv by default");
    }

    #[test]
    fn patches_are_candidates_or_restarts() {
        let trickle = "a=ice-ufrag:abcd\r\na=ice-pwd:x\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\na=candidate:1 1 udp 1 10.0.0.1 5000 typ host\r\na=end-of-candidates\r\n";
        assert_eq!(classify_patch(trickle, "abcd"), Ok(Patch::Candidates));
        assert_eq!(classify_patch("", "abcd"), Ok(Patch::Candidates));
        assert_eq!(
            classify_patch(&trickle.replace("abcd", "efgh"), "abcd"),
            Ok(Patch::Restart)
        );
        assert!(classify_patch("hello there", "abcd").is_err());
    }
}
