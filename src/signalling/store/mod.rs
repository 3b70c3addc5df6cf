//! The Firestore adapter: the session listener and every write the server makes.
//!
//! Each write that depends on a document's state re-reads it in a transaction and re-runs the
//! pure decision on the fresh copy. That is what turns the listener's replays (the emulator
//! replays a whole target after each change) into no-ops: exactly one answer per offer.

use std::time::{Duration, SystemTime};

use firestore::errors::{BackoffError, FirestoreError};
use firestore::{
    FirestoreDb, FirestoreListenEvent, FirestoreListener, FirestoreListenerParams,
    FirestoreListenerTarget, FirestoreMemListenStateStorage, FirestoreTimestamp,
    FirestoreWritePrecondition,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::admission::Admission;
use super::decide::{Decision, Observed, decide};
use super::protocol::{ErrorCode, JOIN_TOKENS, ROOMS, SESSIONS, SessionError, SessionState};
use super::validate::{OfferRequest, validate_offer};
use crate::jointoken::JoinClaims;
use crate::media::{CodecSupport, SessionKey, SessionView};
use std::sync::Arc;

mod roster;

const OFFERED_TARGET: FirestoreListenerTarget = FirestoreListenerTarget::new(1);
const MINE_TARGET: FirestoreListenerTarget = FirestoreListenerTarget::new(2);

/// How long a document of an ended session stays for the client to read its `error`.
pub const ENDED_TTL: Duration = Duration::from_secs(10 * 60);

/// What the listener saw.
#[derive(Debug, Clone)]
pub enum Observation {
    Changed {
        key: SessionKey,
        /// The document's update time, in microseconds since the epoch.
        updated: i64,
        doc: Value,
    },
    Deleted {
        key: SessionKey,
    },
    /// The document left one of our targets: deleted, or changed so it no longer matches.
    Left {
        key: SessionKey,
    },
}

/// The outcome of trying to claim an offer.
#[derive(Debug, Clone)]
pub enum Claim {
    /// Ours to answer (the document now says `answering`).
    Answer(OfferRequest),
    /// The offer was refused; the error is in the document.
    Rejected(SessionError),
    /// Nothing to do: already handled, or the document is gone.
    Nothing,
}

/// An answer to write into a session document.
pub struct AnswerWrite<'a> {
    pub revision: i64,
    pub sdp: &'a str,
    pub view: &'a SessionView,
    /// `answered`, or `connected` when answering a re-offer of a connected session.
    pub state: SessionState,
    pub expires: SystemTime,
}

pub struct Store {
    db: FirestoreDb,
    instance: String,
    /// In a fleet, answer only sessions of rooms assigned to this instance.
    placement: bool,
}

/// Writes to a session document; `None` fields are left untouched (the update mask is
/// derived from which fields are set).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionWrite {
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    answer: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wants: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    slots: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_at: Option<FirestoreTimestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<FirestoreTimestamp>,
}

impl SessionWrite {
    fn mask(&self) -> Vec<&'static str> {
        let mut m = Vec::new();
        let fields: [(&'static str, bool); 8] = [
            ("state", self.state.is_some()),
            ("answer", self.answer.is_some()),
            ("error", self.error.is_some()),
            ("instance", self.instance.is_some()),
            ("wants", self.wants.is_some()),
            ("slots", self.slots.is_some()),
            ("updatedAt", self.updated_at.is_some()),
            ("expiresAt", self.expires_at.is_some()),
        ];
        for (name, set) in fields {
            if set {
                m.push(name);
            }
        }
        m
    }
}

pub fn timestamp(t: SystemTime) -> FirestoreTimestamp {
    FirestoreTimestamp::try_from(t).unwrap_or_else(|_| FirestoreTimestamp::now())
}

pub fn error_value(error: &SessionError, revision: Option<i64>) -> Value {
    json!({"code": error.code.as_str(), "message": error.message, "revision": revision})
}

pub fn view_values(view: &SessionView) -> (Value, Value) {
    let wants = json!({"audio": view.wants.audio, "video": view.wants.video});
    let slots: serde_json::Map<String, Value> = view
        .slots
        .iter()
        .map(|s| {
            let source = match &s.source {
                Some(src) => json!({
                    "participant": src.session,
                    "displayName": src.display_name,
                    "kind": s.kind.as_str(),
                    "sourceMid": src.mid,
                }),
                None => Value::Null,
            };
            (s.mid.clone(), source)
        })
        .collect();
    (wants, Value::Object(slots))
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

type TxResult<T> = Result<T, BackoffError<FirestoreError>>;

impl Store {
    pub fn new(db: FirestoreDb, instance: String) -> Self {
        Store {
            db,
            instance,
            placement: false,
        }
    }

    /// Serves only the rooms the monitor assigned to this instance (`rooms/{room}.assignment`).
    pub fn with_placement(mut self, placement: bool) -> Self {
        self.placement = placement;
        self
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn db(&self) -> &FirestoreDb {
        &self.db
    }

    /// Watches the two narrow targets the server needs: offers waiting for an answer, and the
    /// sessions this instance serves (to see re-offers, leaves and deletes).
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
        self.db
            .fluent()
            .select()
            .from(SESSIONS)
            .all_descendants()
            .filter(|q| q.for_all([q.field("state").eq(SessionState::Offered.as_str())]))
            .listen()
            .add_target(OFFERED_TARGET, &mut listener)?;
        self.db
            .fluent()
            .select()
            .from(SESSIONS)
            .all_descendants()
            .filter(|q| q.for_all([q.field("instance").eq(self.instance.as_str())]))
            .listen()
            .add_target(MINE_TARGET, &mut listener)?;
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

    /// Every session waiting for an answer, as listener observations. The sweep that calls
    /// this catches offers a listener missed (the emulator's listeners occasionally do);
    /// handling is idempotent, so offers seen twice cost nothing.
    pub async fn pending_offers(&self) -> Result<Vec<Observation>, FirestoreError> {
        let docs = self
            .db
            .fluent()
            .select()
            .from(SESSIONS)
            .all_descendants()
            .filter(|q| q.for_all([q.field("state").eq(SessionState::Offered.as_str())]))
            .query()
            .await?;
        Ok(docs
            .into_iter()
            .filter_map(|doc| {
                let key = session_key_of(&doc.name)?;
                let updated = doc.update_time.as_ref().map(micros).unwrap_or_default();
                let doc = FirestoreDb::deserialize_doc_to::<Value>(&doc).ok()?;
                Some(Observation::Changed { key, updated, doc })
            })
            .collect())
    }

    pub async fn read(&self, key: &SessionKey) -> Result<Option<Value>, FirestoreError> {
        let parent = self.db.parent_path(ROOMS, &key.room)?;
        let doc = self
            .db
            .fluent()
            .select()
            .by_id_in(SESSIONS)
            .parent(&parent)
            .one(&key.session)
            .await?;
        doc.map(|d| FirestoreDb::deserialize_doc_to::<Value>(&d))
            .transpose()
    }

    /// Claims the session's current offer if it still needs an answer. `live` is the state to
    /// return to after a refused re-offer (the session keeps its previous negotiation); `None`
    /// when there is no peer yet, which makes a refusal terminal.
    pub async fn claim(
        &self,
        key: &SessionKey,
        live: Option<SessionState>,
        admission: Arc<Admission>,
        codecs: Arc<CodecSupport>,
        now: SystemTime,
    ) -> Result<Claim, FirestoreError> {
        let (key, me, placement) = (key.clone(), self.instance.clone(), self.placement);
        let unix_now = now
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        self.db
            .run_transaction(move |db, tx| {
                let (key, me, admission, codecs) =
                    (key.clone(), me.clone(), admission.clone(), codecs.clone());
                Box::pin(async move {
                    let parent = db.parent_path(ROOMS, &key.room)?;
                    let room = db.fluent().select().by_id_in(ROOMS).one(&key.room).await?;
                    let doc = db
                        .fluent()
                        .select()
                        .by_id_in(SESSIONS)
                        .parent(&parent)
                        .one(&key.session)
                        .await?;
                    let Some(doc) = doc else {
                        return Ok(Claim::Nothing);
                    };
                    let json: Value = FirestoreDb::deserialize_doc_to(&doc)?;
                    // In a fleet, another instance's room is left to it (and an unplaced one
                    // to the monitor, which places it or fails the session with fleet-full).
                    if placement && let Some(room) = &room {
                        let span =
                            tracing::info_span!("placement.lookup", mine = tracing::field::Empty);
                        let _entered = span.enter();
                        let room: Value = FirestoreDb::deserialize_doc_to(room)?;
                        let mine = crate::fleet::store::assignment_of(&room)
                            .is_some_and(|a| a.instance == me);
                        span.record("mine", mine);
                        if !mine {
                            return Ok(Claim::Nothing);
                        }
                    }
                    let observed = Observed::from_doc(&json);
                    let refusal = match decide(&observed, &me, live.is_some()) {
                        Decision::Answer { .. } if room.is_none() => SessionError::new(
                            ErrorCode::RoomNotFound,
                            format!("room \"{}\" does not exist", key.room),
                        ),
                        Decision::Answer { .. } => {
                            match validate_offer(&json, admission.requires_token()) {
                                Ok(mut request) => {
                                    // A session is admitted by the token of its first offer.
                                    if live.is_none() {
                                        let admitted = admission
                                            .check(
                                                request.token.as_deref(),
                                                request.uid.as_deref(),
                                                &key.room,
                                                &request.sdp,
                                                &codecs,
                                                unix_now,
                                            )
                                            .await;
                                        let refusal = match admitted {
                                            Err(e) => Some(e),
                                            Ok(None) => None,
                                            Ok(Some(claims)) => {
                                                request.display_name = claims.name.clone();
                                                use_token_once(&db, tx, &key, &claims).await?
                                            }
                                        };
                                        if let Some(refusal) = refusal {
                                            let revision =
                                                observed.offer_revision.filter(|r| *r >= 1);
                                            add_session_write(
                                                &db,
                                                tx,
                                                &parent,
                                                &key.session,
                                                &refusal_write(&refusal, revision, live, now),
                                            )?;
                                            return Ok(Claim::Rejected(refusal));
                                        }
                                    }
                                    let write = SessionWrite {
                                        state: Some(SessionState::Answering.as_str().to_owned()),
                                        instance: Some(me.clone()),
                                        updated_at: Some(timestamp(now)),
                                        ..Default::default()
                                    };
                                    add_session_write(&db, tx, &parent, &key.session, &write)?;
                                    return Ok(Claim::Answer(request));
                                }
                                Err(e) => e,
                            }
                        }
                        Decision::Reject(e) => e,
                        _ => return Ok(Claim::Nothing),
                    };
                    let revision = observed.offer_revision.filter(|r| *r >= 1);
                    let write = refusal_write(&refusal, revision, live, now);
                    add_session_write(&db, tx, &parent, &key.session, &write)?;
                    Ok(Claim::Rejected(refusal))
                })
            })
            .await
    }

    /// Writes the answer to `answer.revision` if the document still waits for exactly that.
    pub async fn write_answer(
        &self,
        key: &SessionKey,
        answer: &AnswerWrite<'_>,
        now: SystemTime,
    ) -> Result<bool, FirestoreError> {
        let (wants, slots) = view_values(answer.view);
        let revision = answer.revision;
        let write = SessionWrite {
            state: Some(answer.state.as_str().to_owned()),
            answer: Some(json!({"sdp": answer.sdp, "revision": revision})),
            error: Some(Value::Null),
            wants: Some(wants),
            slots: Some(slots),
            updated_at: Some(timestamp(now)),
            expires_at: Some(timestamp(answer.expires)),
            ..Default::default()
        };
        self.conditional(key, write, answering(revision)).await
    }

    /// Reports that the claimed offer `revision` could not be negotiated.
    pub async fn refuse(
        &self,
        key: &SessionKey,
        revision: i64,
        error: &SessionError,
        live: Option<SessionState>,
        now: SystemTime,
    ) -> Result<bool, FirestoreError> {
        let write = refusal_write(error, Some(revision), live, now);
        self.conditional(key, write, answering(revision)).await
    }

    /// `answered` → `connected`, when the document is still ours and not mid-negotiation.
    pub async fn mark_connected(
        &self,
        key: &SessionKey,
        now: SystemTime,
    ) -> Result<bool, FirestoreError> {
        let write = SessionWrite {
            state: Some(SessionState::Connected.as_str().to_owned()),
            updated_at: Some(timestamp(now)),
            ..Default::default()
        };
        self.conditional(key, write, |o, me| {
            o.state == Some(SessionState::Answered) && o.instance.as_deref() == Some(me)
        })
        .await
    }

    /// Ends a session the server stops serving, unless the client already ended it.
    pub async fn end(
        &self,
        key: &SessionKey,
        state: SessionState,
        error: &SessionError,
        now: SystemTime,
    ) -> Result<bool, FirestoreError> {
        let write = ending_write(state, error, now);
        self.conditional(key, write, |o, me| {
            o.instance.as_deref() == Some(me)
                && !matches!(o.state, Some(SessionState::Closed | SessionState::Failed))
        })
        .await
    }

    /// Marks a session of ours that this process holds no peer for.
    pub async fn mark_lost(
        &self,
        key: &SessionKey,
        now: SystemTime,
    ) -> Result<bool, FirestoreError> {
        let error = SessionError::new(
            ErrorCode::SessionLost,
            "the server instance that answered this session no longer holds it; join again",
        );
        let write = ending_write(SessionState::Failed, &error, now);
        self.conditional(key, write, |o, me| decide(o, me, false) == Decision::Lost)
            .await
    }

    pub async fn write_view(
        &self,
        key: &SessionKey,
        view: &SessionView,
        now: SystemTime,
    ) -> Result<(), FirestoreError> {
        let (wants, slots) = view_values(view);
        let write = SessionWrite {
            wants: Some(wants),
            slots: Some(slots),
            updated_at: Some(timestamp(now)),
            ..Default::default()
        };
        self.update_existing(key, &write).await
    }

    pub async fn refresh_expiry(
        &self,
        key: &SessionKey,
        expires: SystemTime,
    ) -> Result<(), FirestoreError> {
        let write = SessionWrite {
            expires_at: Some(timestamp(expires)),
            ..Default::default()
        };
        self.update_existing(key, &write).await
    }

    /// Applies `write` if `still` holds on the fresh document: a compare-and-set on the
    /// document's update time, so the write lands only on exactly the version the decision
    /// was made on (a concurrent change makes it decide again on the new version).
    async fn conditional(
        &self,
        key: &SessionKey,
        write: SessionWrite,
        still: impl Fn(&Observed, &str) -> bool,
    ) -> Result<bool, FirestoreError> {
        let parent = self.db.parent_path(ROOMS, &key.room)?;
        for _ in 0..5 {
            let doc = self
                .db
                .fluent()
                .select()
                .by_id_in(SESSIONS)
                .parent(&parent)
                .one(&key.session)
                .await?;
            let Some(doc) = doc else {
                return Ok(false);
            };
            let json: Value = FirestoreDb::deserialize_doc_to(&doc)?;
            if !still(&Observed::from_doc(&json), &self.instance) {
                return Ok(false);
            }
            let Some(version) = doc.update_time else {
                return Ok(false);
            };
            let version = firestore::timestamp_utils::from_timestamp(version)?;
            let result = self
                .db
                .fluent()
                .update()
                .fields(write.mask())
                .in_col(SESSIONS)
                .precondition(FirestoreWritePrecondition::UpdateTime(version))
                .document_id(&key.session)
                .parent(&parent)
                .object(&write)
                .execute::<()>()
                .await;
            match result {
                Ok(()) => return Ok(true),
                Err(FirestoreError::DatabaseError(e)) if e.public.code == "FailedPrecondition" => {
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    async fn update_existing(
        &self,
        key: &SessionKey,
        write: &SessionWrite,
    ) -> Result<(), FirestoreError> {
        let parent = self.db.parent_path(ROOMS, &key.room)?;
        let result = self
            .db
            .fluent()
            .update()
            .fields(write.mask())
            .in_col(SESSIONS)
            .precondition(FirestoreWritePrecondition::Exists(true))
            .document_id(&key.session)
            .parent(&parent)
            .object(write)
            .execute::<()>()
            .await;
        match result {
            // The client deleted its document meanwhile: nothing to tell it any more.
            Err(FirestoreError::DataNotFoundError(_)) => Ok(()),
            other => other,
        }
    }
}

/// Records that the token admitted this session; refuses it if it admitted another one.
async fn use_token_once(
    db: &FirestoreDb,
    tx: &mut firestore::FirestoreTransaction<'_>,
    key: &SessionKey,
    claims: &JoinClaims,
) -> TxResult<Option<SessionError>> {
    let session = format!("{}/{}", key.room, key.session);
    let used: Option<Value> = db
        .fluent()
        .select()
        .by_id_in(JOIN_TOKENS)
        .obj()
        .one(&claims.jti)
        .await?;
    if let Some(used) = used {
        if used.get("session").and_then(Value::as_str) != Some(session.as_str()) {
            return Ok(Some(SessionError::new(
                ErrorCode::TokenReused,
                "this join token already admitted another session",
            )));
        }
        return Ok(None);
    }
    let expires = std::time::UNIX_EPOCH + std::time::Duration::from_secs(claims.exp.max(0) as u64);
    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Used {
        session: String,
        expires_at: FirestoreTimestamp,
    }
    db.fluent()
        .update()
        .in_col(JOIN_TOKENS)
        .document_id(&claims.jti)
        .object(&Used {
            session,
            expires_at: timestamp(expires),
        })
        .add_to_transaction(tx)?;
    Ok(None)
}

/// The document still waits for our answer to `revision`.
fn answering(revision: i64) -> impl Fn(&Observed, &str) -> bool {
    move |o, me| {
        o.state == Some(SessionState::Answering)
            && o.instance.as_deref() == Some(me)
            && o.offer_revision == Some(revision)
    }
}

/// A terminal state with its reason; the document then expires soon.
fn ending_write(state: SessionState, error: &SessionError, now: SystemTime) -> SessionWrite {
    SessionWrite {
        state: Some(state.as_str().to_owned()),
        error: Some(error_value(error, None)),
        updated_at: Some(timestamp(now)),
        expires_at: Some(timestamp(now + ENDED_TTL)),
        ..Default::default()
    }
}

fn refusal_write(
    refusal: &SessionError,
    revision: Option<i64>,
    live: Option<SessionState>,
    now: SystemTime,
) -> SessionWrite {
    SessionWrite {
        state: Some(live.unwrap_or(SessionState::Failed).as_str().to_owned()),
        error: Some(error_value(refusal, revision)),
        updated_at: Some(timestamp(now)),
        expires_at: live.is_none().then(|| timestamp(now + ENDED_TTL)),
        ..Default::default()
    }
}

fn add_session_write(
    db: &FirestoreDb,
    tx: &mut firestore::FirestoreTransaction<'_>,
    parent: &impl AsRef<str>,
    session: &str,
    write: &SessionWrite,
) -> TxResult<()> {
    db.fluent()
        .update()
        .fields(write.mask())
        .in_col(SESSIONS)
        .document_id(session)
        .parent(parent.as_ref())
        .object(write)
        .add_to_transaction(tx)?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{MediaKind, SlotSource, SlotView, Wants};

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
    fn views_become_wants_and_a_slot_map() {
        let view = SessionView {
            version: 1,
            wants: Wants { audio: 2, video: 1 },
            slots: vec![
                SlotView {
                    mid: "2".into(),
                    kind: MediaKind::Audio,
                    source: Some(SlotSource {
                        session: "bob".into(),
                        display_name: "Bob".into(),
                        mid: "0".into(),
                    }),
                },
                SlotView {
                    mid: "3".into(),
                    kind: MediaKind::Video,
                    source: None,
                },
            ],
        };
        let (wants, slots) = view_values(&view);
        assert_eq!(wants, json!({"audio": 2, "video": 1}));
        assert_eq!(
            slots,
            json!({"2": {"participant": "bob", "displayName": "Bob", "kind": "audio", "sourceMid": "0"}, "3": null})
        );
    }

    #[test]
    fn the_update_mask_names_exactly_the_fields_set() {
        let w = SessionWrite {
            state: Some("answered".into()),
            error: Some(Value::Null),
            ..Default::default()
        };
        assert_eq!(w.mask(), ["state", "error"]);
        let v = serde_json::to_value(&w).unwrap();
        assert_eq!(v, json!({"state": "answered", "error": null}));
    }
}
