//! The Firestore adapter of signalling: every read and write the server makes on session
//! documents ([`listen`] watches them, [`claim`] claims offers, [`roster`] keeps the room's
//! participant list).
//!
//! Each write that depends on a document's state is a compare-and-set on the version the pure
//! decision was made on (or runs in a transaction that re-decides on the fresh copy). That is
//! what turns the listener's replays (the emulator replays a whole target after each change)
//! into no-ops: exactly one answer per offer.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use firestore::{FirestoreDb, FirestoreTimestamp, FirestoreWritePrecondition};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::decide::{Decision, Observed, decide};
use super::protocol::{ErrorCode, ROOMS, SESSIONS, SessionError, SessionState};
use crate::docdb::{self, Cas, DbError, DocRef, meter, timestamp};
use crate::media::{SessionKey, SessionView};

mod assigned;
mod claim;
mod listen;
mod origin;
mod reclaim;
mod roster;
pub use roster::ParticipantEntry;

pub use assigned::AssignedRooms;
pub use claim::{Admitted, Claim, ClaimContext, Live};
pub use listen::{Observation, session_key_of};
pub use reclaim::Reclaimed;

/// How long a document of an ended session stays for the client to read its `error`.
pub const ENDED_TTL: Duration = Duration::from_secs(10 * 60);

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
    /// In a fleet: which rooms the monitor assigned here (a cache the claim checks first).
    rooms: Arc<AssignedRooms>,
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
    layers: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_at: Option<FirestoreTimestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<FirestoreTimestamp>,
}

impl SessionWrite {
    fn mask(&self) -> Vec<&'static str> {
        let fields: [(&'static str, bool); 9] = [
            ("state", self.state.is_some()),
            ("answer", self.answer.is_some()),
            ("error", self.error.is_some()),
            ("instance", self.instance.is_some()),
            ("wants", self.wants.is_some()),
            ("slots", self.slots.is_some()),
            ("layers", self.layers.is_some()),
            ("updatedAt", self.updated_at.is_some()),
            ("expiresAt", self.expires_at.is_some()),
        ];
        fields
            .into_iter()
            .filter_map(|(name, set)| set.then_some(name))
            .collect()
    }
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

/// The document still waits for our answer to `revision`.
fn answering(revision: i64, me: &str) -> impl Fn(&Value) -> bool + '_ {
    move |doc| {
        let o = Observed::from_doc(doc);
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

pub fn lost_error() -> SessionError {
    SessionError::new(
        ErrorCode::SessionLost,
        "the server instance that answered this session no longer holds it; join again",
    )
}

impl Store {
    pub fn new(db: FirestoreDb, instance: String) -> Self {
        Store {
            db,
            instance,
            placement: false,
            rooms: Arc::new(AssignedRooms::default()),
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

    pub fn placement(&self) -> bool {
        self.placement
    }

    pub fn assigned_rooms(&self) -> &Arc<AssignedRooms> {
        &self.rooms
    }

    fn parent(&self, room: &str) -> Result<String, DbError> {
        Ok(self.db.parent_path(ROOMS, room)?.to_string())
    }

    pub async fn read(&self, key: &SessionKey) -> Result<Option<Value>, DbError> {
        let parent = self.parent(&key.room)?;
        let doc = docdb::timed(
            self.db
                .fluent()
                .select()
                .by_id_in(SESSIONS)
                .parent(&parent)
                .obj::<Value>()
                .one(&key.session),
        )
        .await?;
        meter::read(1);
        Ok(doc)
    }

    /// Compare-and-set on the session document (see [`docdb::update_if`]).
    async fn write_if(
        &self,
        key: &SessionKey,
        write: &SessionWrite,
        still: impl Fn(&Value) -> bool,
    ) -> Result<bool, DbError> {
        let parent = self.parent(&key.room)?;
        let doc = DocRef {
            parent: &parent,
            collection: SESSIONS,
            id: &key.session,
        };
        Ok(docdb::update_if(&self.db, &doc, &write.mask(), write, still).await? == Cas::Written)
    }

    /// Writes the answer to `answer.revision` if the document still waits for exactly that.
    pub async fn write_answer(
        &self,
        key: &SessionKey,
        answer: &AnswerWrite<'_>,
        now: SystemTime,
    ) -> Result<bool, DbError> {
        #[cfg(feature = "fault-injection")]
        if crate::faults::fail(crate::faults::Fault::AnswerWrite) {
            return Err(DbError::Timeout(docdb::CALL_TIMEOUT));
        }
        let (wants, slots) = view_values(answer.view);
        let write = SessionWrite {
            state: Some(answer.state.as_str().to_owned()),
            answer: Some(json!({"sdp": answer.sdp, "revision": answer.revision})),
            error: Some(Value::Null),
            wants: Some(wants),
            slots: Some(slots),
            updated_at: Some(timestamp(now)),
            expires_at: Some(timestamp(answer.expires)),
            ..Default::default()
        };
        self.write_if(key, &write, answering(answer.revision, &self.instance))
            .await
    }

    /// Reports that the claimed offer `revision` could not be negotiated.
    pub async fn refuse(
        &self,
        key: &SessionKey,
        revision: i64,
        error: &SessionError,
        live: Option<SessionState>,
        now: SystemTime,
    ) -> Result<bool, DbError> {
        let write = refusal_write(error, Some(revision), live, now);
        self.write_if(key, &write, answering(revision, &self.instance))
            .await
    }

    /// `answered` → `connected`, when the document is still ours and not mid-negotiation.
    pub async fn mark_connected(&self, key: &SessionKey, now: SystemTime) -> Result<bool, DbError> {
        let write = SessionWrite {
            state: Some(SessionState::Connected.as_str().to_owned()),
            updated_at: Some(timestamp(now)),
            ..Default::default()
        };
        let me = self.instance.as_str();
        self.write_if(key, &write, |doc| {
            let o = Observed::from_doc(doc);
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
    ) -> Result<bool, DbError> {
        let write = ending_write(state, error, now);
        let me = self.instance.as_str();
        self.write_if(key, &write, |doc| {
            let o = Observed::from_doc(doc);
            o.instance.as_deref() == Some(me)
                && !matches!(o.state, Some(SessionState::Closed | SessionState::Failed))
        })
        .await
    }

    /// Marks a session of ours that this process holds no peer for.
    pub async fn mark_lost(&self, key: &SessionKey, now: SystemTime) -> Result<bool, DbError> {
        let write = ending_write(SessionState::Failed, &lost_error(), now);
        let me = self.instance.as_str();
        self.write_if(key, &write, |doc| {
            decide(&Observed::from_doc(doc), me, false) == Decision::Lost
        })
        .await
    }

    pub async fn write_view(
        &self,
        key: &SessionKey,
        view: &SessionView,
        now: SystemTime,
    ) -> Result<(), DbError> {
        let (wants, slots) = view_values(view);
        let write = SessionWrite {
            wants: Some(wants),
            slots: Some(slots),
            updated_at: Some(timestamp(now)),
            ..Default::default()
        };
        self.update_existing(key, &write).await
    }

    /// Which simulcast layers of its tracks the publisher should encode (dynacast).
    pub async fn write_layers(
        &self,
        key: &SessionKey,
        layers: Value,
        now: SystemTime,
    ) -> Result<(), DbError> {
        let write = SessionWrite {
            layers: Some(layers),
            updated_at: Some(timestamp(now)),
            ..Default::default()
        };
        self.update_existing(key, &write).await
    }

    /// Reports a client field the server could not apply (the session goes on); `None` clears
    /// the report once the field is fixed.
    pub async fn write_notice(
        &self,
        key: &SessionKey,
        error: Option<&SessionError>,
        now: SystemTime,
    ) -> Result<(), DbError> {
        let write = SessionWrite {
            error: Some(error.map_or(Value::Null, |e| error_value(e, None))),
            updated_at: Some(timestamp(now)),
            ..Default::default()
        };
        self.update_existing(key, &write).await
    }

    pub async fn refresh_expiry(
        &self,
        key: &SessionKey,
        expires: SystemTime,
    ) -> Result<(), DbError> {
        let write = SessionWrite {
            expires_at: Some(timestamp(expires)),
            ..Default::default()
        };
        self.update_existing(key, &write).await
    }

    async fn update_existing(&self, key: &SessionKey, write: &SessionWrite) -> Result<(), DbError> {
        let parent = self.parent(&key.room)?;
        let result = docdb::timed(
            self.db
                .fluent()
                .update()
                .fields(write.mask())
                .in_col(SESSIONS)
                .precondition(FirestoreWritePrecondition::Exists(true))
                .document_id(&key.session)
                .parent(&parent)
                .object(write)
                .execute::<()>(),
        )
        .await;
        meter::wrote(1);
        match result {
            // The client deleted its document meanwhile: nothing to tell it any more.
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{MediaKind, SlotSource, SlotView, Wants};

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
