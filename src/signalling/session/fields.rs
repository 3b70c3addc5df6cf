//! A session's live fields besides its offers: what the client writes without re-offering
//! (`media`, `hand`, `receive`), what the application sets (`muted`), and what the server
//! mirrors into the roster and the document about them (layers to encode, link quality).

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::{Session, now};
use crate::media::MediaKind;
use crate::signalling::protocol::{ErrorCode, SessionError};
use crate::signalling::quality::{Quality, worth_writing};
use crate::signalling::receive::parse_receive;
use crate::signalling::store::ParticipantEntry;

impl Session {
    /// What the roster says is on: the client's `media` field (or everything it publishes),
    /// less the kinds whose every track the application muted.
    pub(super) fn media_value(&self) -> Value {
        let tracks = self
            .roster
            .as_ref()
            .map(|r| r.tracks.as_slice())
            .unwrap_or(&[]);
        let silenced = |kind: MediaKind| {
            let mut of_kind = tracks.iter().filter(|(_, k)| *k == kind);
            of_kind.clone().next().is_some() && of_kind.all(|(mid, _)| self.muted.contains(mid))
        };
        let mut media = self.media.clone().unwrap_or_else(|| {
            json!({
                "audio": tracks.iter().any(|(_, k)| *k == MediaKind::Audio),
                "video": tracks.iter().any(|(_, k)| *k == MediaKind::Video),
            })
        });
        for kind in [MediaKind::Audio, MediaKind::Video] {
            if silenced(kind)
                && let Some(m) = media.as_object_mut()
            {
                m.insert(kind.as_str().to_owned(), Value::Bool(false));
            }
        }
        media
    }

    /// The application muted or unmuted tracks (the document's `muted`, which only the server
    /// API writes): the engine stops or resumes forwarding them, the roster shows it.
    pub(super) async fn muted_changed(&mut self, muted: BTreeSet<String>) {
        if self.muted == muted {
            return;
        }
        tracing::info!(key = %self.key, muted = ?muted, "muted tracks changed");
        self.muted = muted.clone();
        self.ctx.engine.set_muted(self.key.clone(), muted);
        self.write_participant().await;
    }

    pub(super) async fn media_changed(&mut self, media: Value) {
        if self.media.as_ref() == Some(&media) {
            return;
        }
        self.media = Some(media);
        if self.roster.is_some()
            && let Err(e) = self
                .ctx
                .store
                .update_participant(
                    &self.key,
                    &json!({ "media": self.media_value() }),
                    &["media"],
                )
                .await
        {
            tracing::warn!(key = %self.key, "cannot update the roster's media state: {e}");
        }
    }

    pub(super) async fn hand_changed(&mut self, raised: bool) {
        if raised == self.hand.is_some() {
            return;
        }
        self.hand = raised.then(now);
        if self.roster.is_some()
            && let Err(e) = self.ctx.store.set_hand(&self.key, self.hand).await
        {
            tracing::warn!(key = %self.key, "cannot update the roster's raised hand: {e}");
        }
    }

    pub(super) async fn receive_changed(&mut self, receive: Value) {
        if self.receive == receive {
            return;
        }
        self.receive = receive;
        match parse_receive(&self.receive) {
            Ok(wishes) => {
                self.ctx.engine.set_wishes(self.key.clone(), wishes.clone());
                self.wishes = Some(wishes);
                if self.receive_refused
                    && self
                        .ctx
                        .store
                        .write_notice(&self.key, None, now())
                        .await
                        .is_ok()
                {
                    self.receive_refused = false;
                }
            }
            Err(message) => {
                tracing::info!(key = %self.key, "receive refused: {message}");
                let error = SessionError::new(ErrorCode::InvalidDocument, message);
                match self
                    .ctx
                    .store
                    .write_notice(&self.key, Some(&error), now())
                    .await
                {
                    Ok(()) => self.receive_refused = true,
                    Err(e) => {
                        tracing::warn!(key = %self.key, "cannot report a bad receive field: {e}")
                    }
                }
            }
        }
    }

    pub(super) async fn write_layers(
        &mut self,
        layers: std::collections::BTreeMap<String, std::collections::BTreeMap<String, bool>>,
    ) {
        let value = serde_json::to_value(&layers).unwrap_or_default();
        if let Err(e) = self.ctx.store.write_layers(&self.key, value, now()).await {
            tracing::warn!(key = %self.key, "cannot write the layers to encode: {e}");
        }
    }

    pub(super) async fn quality(&mut self, sample: Quality) {
        if self.roster.is_none() || !worth_writing(self.quality.as_ref(), &sample) {
            return;
        }
        let quality = json!({ "quality": { "rttMs": sample.rtt_ms, "loss": sample.loss } });
        match self
            .ctx
            .store
            .update_participant(&self.key, &quality, &["quality"])
            .await
        {
            Ok(()) => self.quality = Some(sample),
            Err(e) => tracing::warn!(key = %self.key, "cannot update the roster's quality: {e}"),
        }
    }

    pub(super) async fn write_participant(&self) {
        let Some(roster) = &self.roster else {
            return;
        };
        let t = now();
        if let Some(uid) = &self.uid
            && let Err(e) = self.ctx.store.put_member(&self.key.room, uid, t).await
        {
            tracing::warn!(key = %self.key, "cannot write the member document: {e}");
        }
        let media = self.media_value();
        let entry = ParticipantEntry {
            roster,
            media: &media,
            hand: self.hand,
            muted: &self.muted,
            uid: self.uid.clone(),
            joined: self.joined.unwrap_or(t),
            expires: t + self.ctx.live_ttl,
        };
        if let Err(e) = self.ctx.store.put_participant(&self.key, &entry, t).await {
            tracing::warn!(key = %self.key, "cannot write the participant document: {e}");
        }
    }
}
