//! Secrets at rest: AES-256-GCM under a key from the operator's configuration.
//!
//! Camera credentials are sealed by the sidecar (PostgreSQL keeps only the sealed text) and
//! opened by the broadcast instance that pulls the camera; both get the same key
//! (`FIRESFU_CAMERA_KEY`, 32 bytes in base64). The sealed text names its format (`v1.`) and
//! binds the secret to what it belongs to (the associated data, e.g. the camera id): a sealed
//! value copied onto another camera does not open.

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

const PREFIX: &str = "v1.";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the key must be 32 bytes in base64 (e.g. `openssl rand -base64 32`): {0}")]
    BadKey(String),
    #[error("the sealed value is not in a format this version reads")]
    Format,
    #[error("the sealed value does not open with this key (another key, or altered)")]
    Open,
    #[error("sealing failed")]
    Seal,
}

/// A key given on the command line or in the environment; its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct KeyText(String);

impl std::str::FromStr for KeyText {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(KeyText(s.to_owned()))
    }
}

impl std::fmt::Debug for KeyText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyText(…)")
    }
}

/// The camera key from FIRESFU_CAMERA_KEY (`text`) or FIRESFU_CAMERA_KEY_FILE (`file`): none,
/// or a key that parses (anything else is an error naming the reason).
pub fn load_key(
    text: Option<&KeyText>,
    file: Option<&std::path::Path>,
) -> anyhow::Result<Option<SealKey>> {
    use anyhow::Context as _;
    let text = match (text, file) {
        (Some(_), Some(_)) => {
            anyhow::bail!("set FIRESFU_CAMERA_KEY or FIRESFU_CAMERA_KEY_FILE, not both")
        }
        (Some(KeyText(text)), None) => text.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?,
        (None, None) => return Ok(None),
    };
    SealKey::from_base64(&text)
        .map(Some)
        .context("FIRESFU_CAMERA_KEY")
}

/// The key secrets are sealed with. Its `Debug` shows nothing of it.
pub struct SealKey(RandomizedNonceKey);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(…)")
    }
}

impl SealKey {
    /// A key from its base64 text (standard or URL-safe alphabet).
    pub fn from_base64(text: &str) -> Result<SealKey, SealError> {
        let text = text.trim();
        let bytes = STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
            .map_err(|e| SealError::BadKey(e.to_string()))?;
        if bytes.len() != 32 {
            return Err(SealError::BadKey(format!("it is {} bytes", bytes.len())));
        }
        RandomizedNonceKey::new(&AES_256_GCM, &bytes)
            .map(SealKey)
            .map_err(|_| SealError::BadKey("rejected by AES-256-GCM".into()))
    }

    /// Seals `secret` for `context` (the associated data): `v1.` + base64url(nonce ‖ ciphertext ‖ tag).
    pub fn seal(&self, context: &str, secret: &[u8]) -> Result<String, SealError> {
        let mut data = secret.to_vec();
        let nonce = self
            .0
            .seal_in_place_append_tag(Aad::from(context.as_bytes()), &mut data)
            .map_err(|_| SealError::Seal)?;
        let mut out = nonce.as_ref().to_vec();
        out.extend_from_slice(&data);
        Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(out)))
    }

    /// Opens what [`SealKey::seal`] made for the same `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
        let body = sealed.strip_prefix(PREFIX).ok_or(SealError::Format)?;
        let raw = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| SealError::Format)?;
        if raw.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(SealError::Format);
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Format)?;
        let mut data = rest.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut data)
            .map_err(|_| SealError::Open)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_context() {
        let key = SealKey::from_base64(KEY).unwrap();
        let sealed = key.seal("cam-1", b"rtsp://u:p@cam/").unwrap();
        assert!(sealed.starts_with("v1.") && !sealed.contains("cam/"));
        assert_eq!(key.open("cam-1", &sealed).unwrap(), b"rtsp://u:p@cam/");
        assert_eq!(key.open("cam-2", &sealed), Err(SealError::Open));
        let other = SealKey::from_base64(&STANDARD.encode([7u8; 32])).unwrap();
        assert_eq!(other.open("cam-1", &sealed), Err(SealError::Open));
        assert_ne!(
            key.seal("cam-1", b"x").unwrap(),
            key.seal("cam-1", b"x").unwrap()
        );
        let mut altered = sealed.clone();
        let last = altered.pop().unwrap();
        altered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(key.open("cam-1", &altered).is_err());
        assert_eq!(key.open("cam-1", "plain"), Err(SealError::Format));
    }

    #[test]
    fn a_bad_key_is_refused_with_a_reason() {
        assert!(matches!(
            SealKey::from_base64("short"),
            Err(SealError::BadKey(_))
        ));
        assert!(matches!(
            SealKey::from_base64(&STANDARD.encode([1u8; 16])),
            Err(SealError::BadKey(m)) if m.contains("16 bytes")
        ));
        assert_eq!(
            format!("{:?}", SealKey::from_base64(KEY).unwrap()),
            "SealKey(…)"
        );
    }
}
