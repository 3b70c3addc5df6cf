//! The fleet's Firestore side: room assignments (`rooms/{room}.assignment`, written by the
//! leading monitor in transactions fenced by its lease), placement errors, the monitor lease
//! (`fleet/monitorLease`) and the session clean-up that follows a move.

use std::time::{Duration, SystemTime};

use firestore::errors::FirestoreError;
use firestore::{
    FirestoreDb, FirestoreListenEvent, FirestoreListener, FirestoreListenerParams,
    FirestoreListenerTarget, FirestoreMemListenStateStorage, FirestoreTimestamp,
};
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::Assignment;
use super::lease::{self, Lease};
use super::plan::{Reason, RoomState};
use crate::signalling::protocol::{ErrorCode, MEMBERS, PARTICIPANTS, ROOMS, SESSIONS};
use crate::signalling::store::timestamp;

pub const FLEET: &str = "fleet";
pub const LEASE_DOC: &str = "monitorLease";
const ROOMS_TARGET: FirestoreListenerTarget = FirestoreListenerTarget::new(7);

// Typed writes: the Firestore serializer turns `FirestoreTimestamp` into a timestamp value
// (inside `json!` it would become a string, which TTL policies ignore).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssignmentDoc {
    instance: String,
    epoch: i64,
    reason: String,
    assigned_at: FirestoreTimestamp,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssignmentWrite {
    assignment: AssignmentDoc,
    placement_error: Option<Value>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionEnd {
    state: String,
    error: Value,
    updated_at: FirestoreTimestamp,
    expires_at: FirestoreTimestamp,
}

/// The lease document, read in the caller's transaction.
async fn read_lease(db: &FirestoreDb) -> Result<Option<Lease>, FirestoreError> {
    db.fluent()
        .select()
        .by_id_in(FLEET)
        .obj()
        .one(LEASE_DOC)
        .await
}

/// Which instance's sessions a clean-up concerns.
#[derive(Debug, Clone, Copy)]
pub enum On<'a> {
    /// Any session, answered or not.
    Any,
    /// Sessions served by this instance.
    Instance(&'a str),
    /// Sessions served by an instance other than this one (the room's current one).
    OtherThan(&'a str),
}

/// Which sessions a move or a full fleet ends.
struct SessionFilter<'a> {
    on: On<'a>,
    states: &'a [&'a str],
}

impl SessionFilter<'_> {
    fn matches(&self, session: &Value) -> bool {
        let state = session
            .get("state")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let serving = session.get("instance").and_then(Value::as_str);
        self.states.contains(&state)
            && match self.on {
                On::Any => true,
                On::Instance(i) => serving == Some(i),
                On::OtherThan(i) => serving.is_some_and(|s| s != i),
            }
    }
}

/// A room's `assignment` field → an [`Assignment`].
pub fn assignment_of(room: &Value) -> Option<Assignment> {
    let a = room.get("assignment")?;
    Some(Assignment {
        instance: a.get("instance")?.as_str()?.to_owned(),
        epoch: a.get("epoch")?.as_i64()?,
    })
}

#[derive(Clone)]
pub struct FleetStore {
    db: FirestoreDb,
}

/// The write failed because this monitor no longer leads, or the room changed meanwhile.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    Done,
    NotLeader,
    RoomChanged,
}

impl FleetStore {
    pub fn new(db: FirestoreDb) -> Self {
        FleetStore { db }
    }

    /// Every room with its assignment.
    pub async fn rooms(&self) -> Result<Vec<RoomState>, FirestoreError> {
        let docs = self.db.fluent().select().from(ROOMS).query().await?;
        Ok(docs
            .iter()
            .filter_map(|doc| {
                let id = doc.name.rsplit('/').next()?.to_owned();
                let json: Value = FirestoreDb::deserialize_doc_to(doc).ok()?;
                Some(RoomState {
                    id,
                    assignment: assignment_of(&json),
                    unplaceable: json.get("placementError").is_some_and(|e| !e.is_null()),
                })
            })
            .collect())
    }

    /// How many rooms are assigned to `instance` (a draining instance waits for none).
    pub async fn rooms_assigned_to(&self, instance: &str) -> Result<usize, FirestoreError> {
        let docs = self
            .db
            .fluent()
            .select()
            .from(ROOMS)
            .filter(|q| q.for_all([q.field("assignment.instance").eq(instance)]))
            .query()
            .await?;
        Ok(docs.len())
    }

    /// Wakes `notify` whenever a room document changes (creation, assignment, deletion).
    pub async fn watch_rooms(
        &self,
        notify: std::sync::Arc<Notify>,
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
            .from(ROOMS)
            .listen()
            .add_target(ROOMS_TARGET, &mut listener)?;
        listener
            .start(move |event| {
                let notify = notify.clone();
                async move {
                    if matches!(
                        event,
                        FirestoreListenEvent::DocumentChange(_)
                            | FirestoreListenEvent::DocumentDelete(_)
                            | FirestoreListenEvent::DocumentRemove(_)
                    ) {
                        notify.notify_one();
                    }
                    Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
                }
            })
            .await?;
        Ok(listener)
    }

    /// Takes or renews the monitor lease. `Some(lease)` when this monitor leads.
    pub async fn lease(
        &self,
        me: &str,
        now: SystemTime,
        duration: Duration,
    ) -> Result<Option<Lease>, FirestoreError> {
        let me = me.to_owned();
        let now_ms = super::unix_ms(now);
        let duration_ms = duration.as_millis() as i64;
        self.db
            .run_transaction(move |db, tx| {
                let me = me.clone();
                Box::pin(async move {
                    let current = read_lease(&db).await?;
                    let Some(next) = lease::next(current.as_ref(), &me, now_ms, duration_ms) else {
                        return Ok(None);
                    };
                    db.fluent()
                        .update()
                        .in_col(FLEET)
                        .document_id(LEASE_DOC)
                        .object(&next)
                        .add_to_transaction(tx)?;
                    Ok(Some(next))
                })
            })
            .await
    }

    /// Gives the lease up (shutdown), so another monitor leads at once.
    pub async fn release(&self, held: &Lease) -> Result<(), FirestoreError> {
        let released = Lease {
            expires_at_ms: 0,
            ..held.clone()
        };
        let held = held.clone();
        self.db
            .run_transaction(move |db, tx| {
                let (held, released) = (held.clone(), released.clone());
                Box::pin(async move {
                    let current = read_lease(&db).await?;
                    if current.is_some_and(|c| c.holder == held.holder && c.term == held.term) {
                        db.fluent()
                            .update()
                            .in_col(FLEET)
                            .document_id(LEASE_DOC)
                            .object(&released)
                            .add_to_transaction(tx)?;
                    }
                    Ok(())
                })
            })
            .await
    }

    /// Writes the room's new assignment if this monitor still holds `lease` and the room still
    /// has `previous`: two monitors, or a monitor and a late listener event, never move a room
    /// twice.
    pub async fn assign(
        &self,
        room: &str,
        to: &Assignment,
        previous: Option<&Assignment>,
        reason: Reason,
        held: &Lease,
        now: SystemTime,
    ) -> Result<Written, FirestoreError> {
        let (room, to, previous, held) =
            (room.to_owned(), to.clone(), previous.cloned(), held.clone());
        let now_ms = super::unix_ms(now);
        self.db
            .run_transaction(move |db, tx| {
                let (room, to, previous, held) =
                    (room.clone(), to.clone(), previous.clone(), held.clone());
                Box::pin(async move {
                    let current = read_lease(&db).await?;
                    let leads = current.is_some_and(|c| {
                        c.holder == held.holder && c.term == held.term && c.expires_at_ms > now_ms
                    });
                    if !leads {
                        return Ok(Written::NotLeader);
                    }
                    let doc: Option<Value> = db
                        .fluent()
                        .select()
                        .by_id_in(ROOMS)
                        .obj()
                        .one(&room)
                        .await?;
                    let Some(doc) = doc else {
                        return Ok(Written::RoomChanged);
                    };
                    if assignment_of(&doc) != previous {
                        return Ok(Written::RoomChanged);
                    }
                    let fields = AssignmentWrite {
                        assignment: AssignmentDoc {
                            instance: to.instance.clone(),
                            epoch: to.epoch,
                            reason: reason.as_str().to_owned(),
                            assigned_at: timestamp(now),
                        },
                        placement_error: None,
                    };
                    db.fluent()
                        .update()
                        .fields(["assignment", "placementError"])
                        .in_col(ROOMS)
                        .document_id(&room)
                        .object(&fields)
                        .add_to_transaction(tx)?;
                    Ok(Written::Done)
                })
            })
            .await
    }

    pub async fn mark_unplaceable(&self, room: &str, message: &str) -> Result<(), FirestoreError> {
        let fields = json!({
            "placementError": {"code": ErrorCode::FleetFull.as_str(), "message": message},
        });
        let result = self
            .db
            .fluent()
            .update()
            .fields(["placementError"])
            .in_col(ROOMS)
            .precondition(firestore::FirestoreWritePrecondition::Exists(true))
            .document_id(room)
            .object(&fields)
            .execute::<()>()
            .await;
        match result {
            Err(FirestoreError::DataNotFoundError(_)) => Ok(()),
            other => other,
        }
    }

    /// Ends the room's live sessions on `instance` with `code`: their clients join again (and
    /// land on the room's new instance). Returns how many.
    pub async fn end_sessions(
        &self,
        room: &str,
        on: On<'_>,
        states: &[&str],
        code: ErrorCode,
        message: &str,
        now: SystemTime,
    ) -> Result<usize, FirestoreError> {
        let parent = self.db.parent_path(ROOMS, room)?;
        let docs = self
            .db
            .fluent()
            .select()
            .from(SESSIONS)
            .parent(&parent)
            .query()
            .await?;
        let target = SessionFilter { on, states };
        let mut ended = 0;
        for doc in docs {
            let Some(id) = doc.name.rsplit('/').next() else {
                continue;
            };
            let matches = FirestoreDb::deserialize_doc_to::<Value>(&doc)
                .is_ok_and(|json| target.matches(&json));
            if matches
                && self
                    .end_one(parent.as_ref(), id, &target, code, message, now)
                    .await?
            {
                ended += 1;
            }
        }
        Ok(ended)
    }

    /// Ends one session, on the exact version read (a client re-offering, or the server
    /// updating the session meanwhile, makes it read again). True when this call ended it.
    async fn end_one(
        &self,
        parent: &str,
        id: &str,
        target: &SessionFilter<'_>,
        code: ErrorCode,
        message: &str,
        now: SystemTime,
    ) -> Result<bool, FirestoreError> {
        let terminal = if code == ErrorCode::FleetFull {
            "failed"
        } else {
            "closed"
        };
        let fields = SessionEnd {
            state: terminal.to_owned(),
            error: json!({"code": code.as_str(), "message": message, "revision": Value::Null}),
            updated_at: timestamp(now),
            expires_at: timestamp(now + Duration::from_secs(600)),
        };
        for _ in 0..5 {
            let Some(doc) = self
                .db
                .fluent()
                .select()
                .by_id_in(SESSIONS)
                .parent(parent)
                .one(id)
                .await?
            else {
                return Ok(false);
            };
            let json: Value = FirestoreDb::deserialize_doc_to(&doc)?;
            if !target.matches(&json) {
                // Ended already (possibly by our previous attempt, whose reply was lost).
                return Ok(
                    json.pointer("/error/code").and_then(Value::as_str) == Some(code.as_str())
                );
            }
            let Some(version) = doc.update_time else {
                return Ok(false);
            };
            let version = firestore::timestamp_utils::from_timestamp(version)?;
            let written = self
                .db
                .fluent()
                .update()
                .fields(["state", "error", "updatedAt", "expiresAt"])
                .in_col(SESSIONS)
                .precondition(firestore::FirestoreWritePrecondition::UpdateTime(version))
                .document_id(id)
                .parent(parent)
                .object(&fields)
                .execute::<()>()
                .await;
            match written {
                Ok(()) => return Ok(true),
                Err(e) => {
                    tracing::debug!(session = id, "session not ended yet, reading again: {e}")
                }
            }
        }
        Ok(false)
    }

    /// Deletes the roster entries a dead instance left in the room, and the member documents
    /// of users with no other entry left (they would keep reading roster and chat).
    pub async fn remove_roster_of(
        &self,
        room: &str,
        instance: &str,
    ) -> Result<usize, FirestoreError> {
        let parent = self.db.parent_path(ROOMS, room)?;
        let docs = self
            .db
            .fluent()
            .select()
            .from(PARTICIPANTS)
            .parent(&parent)
            .query()
            .await?;
        let mut removed = 0;
        let mut gone_uids = Vec::new();
        let mut remaining_uids = std::collections::HashSet::new();
        for doc in &docs {
            let json: Value = FirestoreDb::deserialize_doc_to(doc).unwrap_or_default();
            let uid = json.get("uid").and_then(Value::as_str).map(str::to_owned);
            if json.get("instance").and_then(Value::as_str) != Some(instance) {
                remaining_uids.extend(uid);
                continue;
            }
            if let Some(id) = doc.name.rsplit('/').next() {
                self.db
                    .fluent()
                    .delete()
                    .from(PARTICIPANTS)
                    .parent(&parent)
                    .document_id(id)
                    .execute()
                    .await?;
                removed += 1;
                gone_uids.extend(uid);
            }
        }
        for uid in gone_uids.iter().filter(|u| !remaining_uids.contains(*u)) {
            self.db
                .fluent()
                .delete()
                .from(MEMBERS)
                .parent(&parent)
                .document_id(uid)
                .execute()
                .await?;
        }
        Ok(removed)
    }
}
