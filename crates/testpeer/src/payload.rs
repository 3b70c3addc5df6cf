//! Media payloads that say who sent them and prove they arrived intact.
//!
//! Layout: `[0x10] "FSFU" kind(1) taglen(1) tag seq(4, BE) pattern…`, where byte `i` of the
//! pattern is `seq + i (mod 251)`. The first byte is even so that VP8-aware code treats every
//! frame as a keyframe (the server does not look; str0m's `is_keyframe` does).

use std::sync::Arc;

const MAGIC: &[u8; 4] = b"FSFU";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub tag: String,
    pub kind: u8,
    pub seq: u32,
}

pub fn make(tag: &str, kind: u8, seq: u32, len: usize) -> Arc<[u8]> {
    let mut out = Vec::with_capacity(len.max(16 + tag.len()));
    out.push(0x10);
    out.extend_from_slice(MAGIC);
    out.push(kind);
    out.push(tag.len() as u8);
    out.extend_from_slice(tag.as_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    let mut i = 0u32;
    while out.len() < len {
        out.push(((seq.wrapping_add(i)) % 251) as u8);
        i += 1;
    }
    out.into()
}

/// Whether the payload claims to be one of ours (then it must also `check`).
pub fn is_tagged(data: &[u8]) -> bool {
    data.len() >= 5 && data[0] == 0x10 && &data[1..5] == MAGIC
}

/// `Some` only when the payload is exactly what `make` produced.
pub fn check(data: &[u8]) -> Option<Stamp> {
    if data.len() < 11 || data[0] != 0x10 || &data[1..5] != MAGIC {
        return None;
    }
    let kind = data[5];
    let n = data[6] as usize;
    let tag = std::str::from_utf8(data.get(7..7 + n)?).ok()?.to_owned();
    let seq_bytes: [u8; 4] = data.get(7 + n..11 + n)?.try_into().ok()?;
    let seq = u32::from_be_bytes(seq_bytes);
    let pattern = &data[11 + n..];
    let intact = pattern
        .iter()
        .enumerate()
        .all(|(i, b)| *b == ((seq.wrapping_add(i as u32)) % 251) as u8);
    intact.then_some(Stamp { tag, kind, seq })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_damage() {
        let p = make("alice", b'v', 77, 3000);
        assert_eq!(p.len(), 3000);
        assert_eq!(
            check(&p),
            Some(Stamp {
                tag: "alice".into(),
                kind: b'v',
                seq: 77
            })
        );
        let mut bad = p.to_vec();
        bad[2000] ^= 1;
        assert_eq!(check(&bad), None);
        assert_eq!(
            check(&p[..1500]).map(|s| s.seq),
            Some(77),
            "a prefix is still a pattern"
        );
        assert_eq!(check(b"hello world"), None);
    }
}
