//! Real VP8 frames from an IVF file (as written by `ffmpeg -c:v libvpx -f ivf`), looped.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};

pub struct IvfClip {
    frames: Vec<Arc<[u8]>>,
    next: usize,
}

impl IvfClip {
    pub fn load(path: &Path) -> anyhow::Result<IvfClip> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        IvfClip::parse(&bytes)
    }

    pub fn parse(bytes: &[u8]) -> anyhow::Result<IvfClip> {
        if bytes.len() < 32 || &bytes[0..4] != b"DKIF" {
            bail!("not an IVF file");
        }
        let header_len = u16::from_le_bytes([bytes[6], bytes[7]]) as usize;
        let mut at = header_len;
        let mut frames = Vec::new();
        while at + 12 <= bytes.len() {
            let size = u32::from_le_bytes(bytes[at..at + 4].try_into()?) as usize;
            let start = at + 12;
            let frame = bytes
                .get(start..start + size)
                .context("truncated IVF frame")?;
            frames.push(Arc::from(frame));
            at = start + size;
        }
        if frames.is_empty() {
            bail!("the IVF file has no frames");
        }
        Ok(IvfClip { frames, next: 0 })
    }

    pub fn next_frame(&mut self) -> Arc<[u8]> {
        let frame = self.frames[self.next].clone();
        self.next = (self.next + 1) % self.frames.len();
        frame
    }
}
