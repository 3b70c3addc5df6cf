//! What the server watches: three narrow listener targets over every room's sessions, and the
//! sweeps that catch what a listener missed.
//!
//! - offers waiting for an answer (`state == "offered"`);
//! - the sessions this instance serves (`instance == me`: re-offers, leaves, deletes);
//! - documents whose `state` is none of the protocol's (they get `invalid-document`).
//!
//! Listeners replay (the emulator re-sends a whole target after every change) and can miss
//! changes and deletes; sweeps re-read what must not be missed and hand it over as
//! [`Observation::Swept`], which skips the replay filter.

use std::time::Duration;

use firestore::{
    FirestoreDb, FirestoreListenEvent, FirestoreListener, FirestoreListenerParams,
    FirestoreListenerTarget, FirestoreMemListenStateStorage,
};
use serde_json::Value;
use tokio::sync::mpsc;

use super::Store;
use crate::docdb::{self, DbError, meter};
use crate::media::SessionKey;
use crate::signalling::protocol::{ROOMS, SESSIONS, SessionState};

const OFFERED_TARGET: FirestoreListenerTarget = FirestoreListenerTarget::new(1);
const MINE_TARGET: FirestoreListenerTarget = FirestoreListenerTarget::new(2);
const UNKNOWN_STATE_TARGET: FirestoreListenerTarget = FirestoreListenerTarget::new(3);

/// Every `state` the protocol knows; anything else is refused.
const STATES: [&str; 6] = [
    "offered",
    "answering",
    "answered",
    "connected",
    "failed",
    "closed",
];

/// What the listener or a sweep saw.
#[derive(Debug, Clone)]
pub enum Observation {
    /// A listener delivered the document (possibly a replay of a version already seen).
    Changed {
        key: SessionKey,
        /// The document's update time, in microseconds since the epoch.
        updated: i64,
        doc: Value,
    },
    /// A sweep read the document (`None`: it does not exist). Acted on even if seen before.
    Swept {
        key: SessionKey,
        doc: Option<Value>,
    },
    Deleted {
        key: SessionKey,
    },
    /// The document left one of our targets: deleted, or changed so it no longer matches.
    Left {
        key: SessionKey,
    },
}

/// `projects/P/databases/D/documents/rooms/R/sessions/S` → (R, S).
pub fn session_key_of(name: &str) -> Option<SessionKey> {
    let path = name.split_once("/documents/")?.1;
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        [ROOMS, room, SESSIONS, session] => Some(SessionKey {
            room: (*room).to_owned(),
            session: (*session).to_owned(),
        }),
        _ => None,
    }
}

fn micros(ts: &firestore::gcloud_sdk::prost_types::Timestamp) -> i64 {
    ts.seconds * 1_000_000 + i64::from(ts.nanos) / 1000
}

fn observe(event: FirestoreListenEvent) -> Option<Observation> {
    match event {
        FirestoreListenEvent::DocumentChange(change) => {
            let doc = change.document?;
            let key = session_key_of(&doc.name)?;
            if change.target_ids.is_empty() {
                // Only removals from targets: the document no longer matches them.
                return Some(Observation::Left { key });
            }
            meter::listened(1);
            let updated = doc.update_time.as_ref().map(micros).unwrap_or_default();
            match FirestoreDb::deserialize_doc_to::<Value>(&doc) {
                Ok(doc) => Some(Observation::Changed { key, updated, doc }),
                Err(e) => {
                    tracing::warn!(%key, "cannot read a session document: {e}");
                    None
                }
            }
        }
        FirestoreListenEvent::DocumentDelete(delete) => {
            session_key_of(&delete.document).map(|key| Observation::Deleted { key })
        }
        FirestoreListenEvent::DocumentRemove(remove) => {
            session_key_of(&remove.document).map(|key| Observation::Left { key })
        }
        _ => None,
    }
}

impl Store {
    /// Starts the session listener; observations go to `tx`.
    pub async fn listen(
        &self,
        tx: mpsc::UnboundedSender<Observation>,
    ) -> anyhow::Result<FirestoreListener<FirestoreDb, FirestoreMemListenStateStorage>> {
        let mut listener = self
            .db
            .create_listener_with_params(
                FirestoreMemListenStateStorage::new(),
                FirestoreListenerParams::new().with_retry_delay(Duration::from_millis(500)),
            )
            .await?;
        let sessions = || self.db.fluent().select().from(SESSIONS).all_descendants();
        sessions()
            .filter(|q| q.for_all([q.field("state").eq(SessionState::Offered.as_str())]))
            .listen()
            .add_target(OFFERED_TARGET, &mut listener)?;
        sessions()
            .filter(|q| q.for_all([q.field("instance").eq(self.instance.as_str())]))
            .listen()
            .add_target(MINE_TARGET, &mut listener)?;
        sessions()
            .filter(|q| q.for_all([q.field("state").is_not_in(STATES)]))
            .listen()
            .add_target(UNKNOWN_STATE_TARGET, &mut listener)?;
        listener
            .start(move |event| {
                let tx = tx.clone();
                async move {
                    if let Some(observation) = observe(event) {
                        tx.send(observation)
                            .map_err(|_| "the signalling driver has stopped")?;
                    }
                    Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
                }
            })
            .await?;
        Ok(listener)
    }

    /// Sessions in `state` (and, with `mine`, held by this instance), as sweep observations.
    async fn sweep(&self, state: SessionState, mine: bool) -> Result<Vec<Observation>, DbError> {
        let me = self.instance.as_str();
        let docs = docdb::timed(
            self.db
                .fluent()
                .select()
                .from(SESSIONS)
                .all_descendants()
                .filter(|q| {
                    q.for_all([
                        q.field("state").eq(state.as_str()),
                        mine.then(|| q.field("instance").eq(me)).flatten(),
                    ])
                })
                .query(),
        )
        .await?;
        meter::read(docs.len().max(1));
        Ok(docs
            .into_iter()
            .filter_map(|doc| {
                let key = session_key_of(&doc.name)?;
                let doc = FirestoreDb::deserialize_doc_to::<Value>(&doc).ok()?;
                Some(Observation::Swept {
                    key,
                    doc: Some(doc),
                })
            })
            .collect())
    }

    /// Every offer waiting for an answer: catches offers a listener missed (the emulator's
    /// listeners occasionally do) and offers whose claim failed.
    pub async fn pending_offers(&self) -> Result<Vec<Observation>, DbError> {
        self.sweep(SessionState::Offered, false).await
    }

    /// This instance's claimed offers still without an answer (a write that failed).
    pub async fn unanswered_claims(&self) -> Result<Vec<Observation>, DbError> {
        self.sweep(SessionState::Answering, true).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_session_keys_from_document_names() {
        let key = session_key_of("projects/p/databases/(default)/documents/rooms/r1/sessions/s9")
            .unwrap();
        assert_eq!((key.room.as_str(), key.session.as_str()), ("r1", "s9"));
        assert!(session_key_of("projects/p/databases/(default)/documents/rooms/r1").is_none());
        assert!(
            session_key_of("projects/p/databases/(default)/documents/x/r1/sessions/s").is_none()
        );
    }
}
