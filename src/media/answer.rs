//! The answer as every mainstream WebRTC stack accepts it.
//!
//! `rtc` 0.21 writes its host candidates only into the first (BUNDLE-tag) m-section, twice per
//! address (components 1 and 2, although every m-line is `rtcp-mux`), and never ends the list.
//! Chromium and str0m cope; stacks that read a bundled transport's candidates from another
//! m-section, or wait for `a=end-of-candidates` from an ICE-lite peer, never send a check
//! (aiortc 1.16 is one). So every m-section that is not rejected carries the same component-1
//! candidates followed by `a=end-of-candidates` (RFC 8840 §8.2; the server gathers nothing
//! later: there is no trickle). The answer is also bounded in size.

/// The largest answer the server writes (a Firestore document holds offer and answer).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("the answer would be {0} bytes; the limit is {MAX_ANSWER_BYTES}")]
    TooLarge(usize),
}

/// `a=candidate:<foundation> <component> ...` → the component.
fn component(line: &str) -> Option<&str> {
    line.strip_prefix("a=candidate:")?.split_whitespace().nth(1)
}

/// A rejected m-section has port 0 (`m=audio 0 ...`).
fn rejected(m_line: &str) -> bool {
    m_line.split_whitespace().nth(1) == Some("0")
}

/// Rewrites the stack's answer: candidates (component 1 only) in every m-section that is not
/// rejected, each list ended by `a=end-of-candidates`.
pub fn finish(sdp: &str) -> Result<String, AnswerError> {
    let lines: Vec<&str> = sdp.lines().map(|l| l.trim_end_matches('\r')).collect();
    let mut candidates: Vec<&str> = Vec::new();
    for line in &lines {
        if component(line) == Some("1") && !candidates.contains(line) {
            candidates.push(line);
        }
    }
    let mut out = String::with_capacity(sdp.len() + lines.len() * 8);
    let mut media_open = false;
    let close = |out: &mut String, open: bool| {
        if open {
            for c in &candidates {
                out.push_str(c);
                out.push_str("\r\n");
            }
            out.push_str("a=end-of-candidates\r\n");
        }
    };
    for line in &lines {
        if line.is_empty() {
            continue;
        }
        if line.starts_with("m=") {
            close(&mut out, media_open);
            media_open = !rejected(line);
        }
        if line.starts_with("a=candidate:") || *line == "a=end-of-candidates" {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    close(&mut out, media_open);
    if out.len() > MAX_ANSWER_BYTES {
        return Err(AnswerError::TooLarge(out.len()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STACK: &str = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1 2\r\na=ice-lite\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtcp-mux\r\na=recvonly\r\n\
a=candidate:1 1 udp 2130706431 10.0.0.1 4443 typ host\r\na=candidate:1 2 udp 2130706431 10.0.0.1 4443 typ host\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=rtcp-mux\r\na=sendonly\r\n\
m=video 0 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:2\r\na=inactive\r\n";

    fn sections(sdp: &str) -> Vec<Vec<&str>> {
        let mut out: Vec<Vec<&str>> = Vec::new();
        for line in sdp.split("\r\n").filter(|l| !l.is_empty()) {
            if line.starts_with("m=") {
                out.push(Vec::new());
            }
            if let Some(s) = out.last_mut() {
                s.push(line);
            }
        }
        out
    }

    #[test]
    fn every_live_section_lists_component_one_and_ends_the_list() {
        let answer = finish(STACK).unwrap();
        let s = sections(&answer);
        assert_eq!(s.len(), 3);
        for live in &s[..2] {
            let candidates: Vec<&str> = live
                .iter()
                .copied()
                .filter(|l| l.starts_with("a=candidate"))
                .collect();
            assert_eq!(
                candidates,
                ["a=candidate:1 1 udp 2130706431 10.0.0.1 4443 typ host"]
            );
            assert_eq!(live.last(), Some(&"a=end-of-candidates"));
        }
        assert!(
            !s[2]
                .iter()
                .any(|l| l.starts_with("a=candidate") || l.contains("end-of"))
        );
        assert!(answer.starts_with("v=0\r\n") && answer.ends_with("\r\n"));
        // The rest is untouched.
        assert!(answer.contains("a=group:BUNDLE 0 1 2\r\na=ice-lite\r\n"));
        assert_eq!(finish(&answer).unwrap(), answer, "idempotent");
    }

    #[test]
    fn refuses_an_answer_beyond_the_limit() {
        let huge = STACK.to_owned() + &"a=x-filler\r\n".repeat(MAX_ANSWER_BYTES / 10);
        assert!(matches!(finish(&huge), Err(AnswerError::TooLarge(_))));
    }
}
