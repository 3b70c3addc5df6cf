//! What one offer may ask of the server: how many m-lines, how many published tracks. Checked
//! for every offer (first and re-offers) before it reaches the media engine; the engine itself
//! enforces the per-room and per-instance participant limits, which depend on who is present.

use super::protocol::{ErrorCode, SessionError};
use crate::media::offer::OfferSummary;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfferLimits {
    /// m-lines (of any kind) in one offer.
    pub max_media_lines: usize,
    /// Tracks one participant publishes (camera, microphone, screen and its audio: 4).
    pub max_published_tracks: usize,
}

impl Default for OfferLimits {
    fn default() -> Self {
        OfferLimits {
            max_media_lines: 64,
            max_published_tracks: 4,
        }
    }
}

impl OfferLimits {
    pub fn check(&self, offer: &OfferSummary) -> Result<(), SessionError> {
        if offer.m_lines > self.max_media_lines {
            return Err(SessionError::new(
                ErrorCode::TooManyMediaLines,
                format!(
                    "the offer has {} m-lines; this server accepts at most {}",
                    offer.m_lines, self.max_media_lines
                ),
            ));
        }
        let published = offer.published().count();
        if published > self.max_published_tracks {
            return Err(SessionError::new(
                ErrorCode::TooManyTracks,
                format!(
                    "the offer publishes {published} tracks; a participant may publish at most {}",
                    self.max_published_tracks
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::offer::inspect_offer;
    use crate::media::offer::tests::{codecs, offer_with};

    #[test]
    fn refuses_offers_beyond_each_limit_with_its_own_code() {
        let limits = OfferLimits {
            max_media_lines: 4,
            max_published_tracks: 2,
        };
        let ok = offer_with(&[
            ("audio", "sendonly", "opus"),
            ("video", "sendonly", "VP8"),
            ("audio", "recvonly", "opus"),
            ("video", "recvonly", "VP8"),
        ]);
        assert_eq!(
            limits.check(&inspect_offer(&ok, &codecs()).unwrap()),
            Ok(())
        );

        let lines: Vec<(&str, &str, &str)> = vec![("video", "recvonly", "VP8"); 5];
        let err = limits
            .check(&inspect_offer(&offer_with(&lines), &codecs()).unwrap())
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::TooManyMediaLines);
        assert!(err.message.contains("5 m-lines"), "{}", err.message);

        let lines: Vec<(&str, &str, &str)> = vec![("audio", "sendonly", "opus"); 3];
        let err = limits
            .check(&inspect_offer(&offer_with(&lines), &codecs()).unwrap())
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::TooManyTracks);
    }
}
