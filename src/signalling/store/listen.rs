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
const MINE_TARGET_ID: i32 = 2;
const MINE_TARGET: FirestoreListenerTarget = FirestoreListenerTarget::new(MINE_TARGET_ID as u32);
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
    /// The target of this instance's sessions was reset and sent again in full: these are the
    /// documents in it. A session held but not among them left it (deleted, or no longer
    /// ours) without a word from the listener, which reports no removals on a reset.
    Resent {
        keys: std::collections::HashSet<SessionKey>,
    },
}

/// Collects the documents a reset target sends again, until it is current.
#[derive(Default)]
struct Resend {
    keys: Option<std::collections::HashSet<SessionKey>>,
}

impl Resend {
    /// Follows one event of the listener; returns the complete resend once it is over.
    fn follow(&mut self, event: &FirestoreListenEvent, target: i32) -> Option<Observation> {
        use firestore::FirestoreListenerTargetChangeType as Change;
        match event {
            FirestoreListenEvent::TargetChange(t) if t.target_ids.contains(&target) => {
                match Change::try_from(t.target_change_type) {
                    Ok(Change::Reset) => self.keys = Some(Default::default()),
                    Ok(Change::Current) => {
                        return self.keys.take().map(|keys| Observation::Resent { keys });
                    }
                    _ => {}
                }
            }
            FirestoreListenEvent::DocumentChange(change) if change.target_ids.contains(&target) => {
                if let (Some(keys), Some(doc)) = (&mut self.keys, &change.document)
                    && let Some(key) = session_key_of(&doc.name)
                {
                    keys.insert(key);
                }
            }
            _ => {}
        }
        None
    }
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
        let resend = std::sync::Arc::new(std::sync::Mutex::new(Resend::default()));
        listener
            .start(move |event| {
                let tx = tx.clone();
                let resent = resend
                    .lock()
                    .ok()
                    .and_then(|mut r| r.follow(&event, MINE_TARGET_ID));
                async move {
                    if let Some(resent) = resent {
                        tx.send(resent)
                            .map_err(|_| "the signalling driver has stopped")?;
                    }
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

    #[test]
    fn a_reset_target_names_the_documents_it_sent_again_once_current() {
        use firestore::FirestoreListenerTargetChangeType as Change;
        use firestore::gcloud_sdk::google::firestore::v1::{
            Document, DocumentChange, TargetChange,
        };
        let target = |change: Change, ids: Vec<i32>| {
            FirestoreListenEvent::TargetChange(TargetChange {
                target_change_type: change as i32,
                target_ids: ids,
                ..Default::default()
            })
        };
        let doc = |session: &str, ids: Vec<i32>| {
            FirestoreListenEvent::DocumentChange(DocumentChange {
                document: Some(Document {
                    name: format!(
                        "projects/p/databases/(default)/documents/rooms/r/sessions/{session}"
                    ),
                    ..Default::default()
                }),
                target_ids: ids,
                ..Default::default()
            })
        };
        let mut r = Resend::default();
        // Documents outside a resend, or of another target, are no resend.
        assert!(r.follow(&doc("a", vec![2]), 2).is_none());
        assert!(r.follow(&target(Change::Current, vec![2]), 2).is_none());
        assert!(r.follow(&target(Change::Reset, vec![2]), 2).is_none());
        r.follow(&doc("a", vec![2]), 2);
        r.follow(&doc("b", vec![1]), 2);
        r.follow(&doc("c", vec![1, 2]), 2);
        let Some(Observation::Resent { keys }) = r.follow(&target(Change::Current, vec![2]), 2)
        else {
            panic!("the resend ends when the target is current")
        };
        let mut names: Vec<&str> = keys.iter().map(|k| k.session.as_str()).collect();
        names.sort();
        assert_eq!(names, ["a", "c"]);
        assert!(r.follow(&target(Change::Current, vec![2]), 2).is_none());
    }
}
