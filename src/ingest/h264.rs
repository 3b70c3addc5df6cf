//! Reading just enough of an H.264 access unit (Annex B, as the RTSP client hands it over) to
//! refuse what WebRTC cannot carry: B-frames (slices predicted from a later picture need
//! reordering, which browsers' WebRTC receivers do not do for H.264).

/// The NAL units of an Annex B byte stream (start codes of 3 or 4 bytes), without start codes.
pub fn nal_units(annex_b: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = annex_b;
    std::iter::from_fn(move || {
        loop {
            let start = find_start_code(rest)?;
            rest = &rest[start.0 + start.1..];
            let end = find_start_code(rest).map_or(rest.len(), |(at, _)| at);
            let nal = &rest[..end];
            rest = &rest[end..];
            // Trailing zero bytes belong to the next start code (`00 00 00 01`).
            let trimmed = nal.len() - nal.iter().rev().take_while(|&&b| b == 0).count();
            if trimmed > 0 {
                return Some(&nal[..trimmed]);
            }
        }
    })
}

/// Where the next start code begins and its length.
fn find_start_code(data: &[u8]) -> Option<(usize, usize)> {
    let mut zeros = 0;
    for (i, &b) in data.iter().enumerate() {
        match b {
            0 => zeros += 1,
            1 if zeros >= 2 => {
                let len = zeros.min(3) + 1;
                return Some((i + 1 - len, len));
            }
            _ => zeros = 0,
        }
    }
    None
}

/// What the slices of one access unit are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AccessUnit {
    /// An IDR slice: a decoder can start here.
    pub idr: bool,
    /// A B slice (`slice_type` 1 or 6).
    pub b_slice: bool,
    /// It carries an SPS: its `profile_idc` (66: baseline, which has no B-frames).
    pub profile: Option<u8>,
}

pub fn inspect(annex_b: &[u8]) -> AccessUnit {
    let mut au = AccessUnit::default();
    for nal in nal_units(annex_b) {
        match nal[0] & 0x1f {
            5 => au.idr = true,
            7 => au.profile = nal.get(1).copied(),
            _ => {}
        }
        if matches!(nal[0] & 0x1f, 1 | 5) && slice_type(&nal[1..]).is_some_and(|t| t % 5 == 1) {
            au.b_slice = true;
        }
    }
    au
}

/// `slice_type` from the start of a slice header: `first_mb_in_slice` ue(v), `slice_type` ue(v).
fn slice_type(header: &[u8]) -> Option<u32> {
    // Emulation prevention (00 00 03) removed from the few bytes needed.
    let mut bytes = Vec::with_capacity(16);
    let mut zeros = 0;
    for &b in header.iter().take(24) {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        bytes.push(b);
    }
    let mut bits = Bits {
        data: &bytes,
        pos: 0,
    };
    bits.ue()?;
    bits.ue()
}

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<u32> {
        let byte = *self.data.get(self.pos / 8)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(bit as u32)
    }

    /// Exp-Golomb unsigned.
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let mut value = 1u32;
        for _ in 0..zeros {
            value = (value << 1) | self.bit()?;
        }
        Some(value - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slice NAL (type `nal`) whose header starts with first_mb 0 and `slice_type`.
    fn slice(nal: u8, slice_type: u32) -> Vec<u8> {
        // ue(0) = "1"; ue(n) = (n+1) in binary with leading zeros.
        let code = slice_type + 1;
        let width = 32 - code.leading_zeros();
        let mut bits = vec![1u8];
        bits.extend(std::iter::repeat_n(0, width as usize - 1));
        bits.extend((0..width).rev().map(|i| ((code >> i) & 1) as u8));
        bits.resize(bits.len().div_ceil(8) * 8 + 8, 1);
        let mut out = vec![nal];
        out.extend(
            bits.chunks(8)
                .map(|c| c.iter().fold(0, |a, b| (a << 1) | b)),
        );
        out
    }

    fn annex_b(nals: &[Vec<u8>]) -> Vec<u8> {
        nals.iter()
            .flat_map(|n| [0, 0, 0, 1].iter().chain(n.iter()).copied())
            .collect()
    }

    #[test]
    fn splits_annex_b_with_both_start_code_lengths() {
        let data = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4,
        ];
        let nals: Vec<&[u8]> = nal_units(&data).collect();
        assert_eq!(nals, [&[0x67, 1, 2][..], &[0x68, 3], &[0x65, 4]]);
        assert_eq!(nal_units(&[1, 2, 3]).count(), 0);
    }

    #[test]
    fn tells_idr_p_and_b_slices_apart() {
        let idr = inspect(&annex_b(&[vec![0x67, 0x42], vec![0x68, 1], slice(0x65, 7)]));
        assert_eq!(
            idr,
            AccessUnit {
                idr: true,
                b_slice: false,
                profile: Some(0x42)
            }
        );
        assert!(!inspect(&annex_b(&[slice(0x41, 0)])).b_slice, "P");
        assert!(
            !inspect(&annex_b(&[slice(0x41, 5)])).b_slice,
            "P (all slices)"
        );
        assert!(inspect(&annex_b(&[slice(0x01, 1)])).b_slice, "B");
        assert!(
            inspect(&annex_b(&[slice(0x21, 6)])).b_slice,
            "B (all slices)"
        );
        assert!(
            !inspect(&annex_b(&[vec![0x41]])).b_slice,
            "truncated header"
        );
    }
}
