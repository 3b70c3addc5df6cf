//! The fleet's Firestore side: room assignments (`rooms/{room}.assignment`, written by the
//! leading monitor in transactions fenced by its lease), placement errors, the monitor lease
//! (`fleet/monitorLease`) and the session clean-up that follows a move.

use std::time::{Duration, SystemTime};

use firestore::{
    FirestoreDb, FirestoreListenEvent, FirestoreListener, FirestoreListenerParams,
    FirestoreListenerTarget, FirestoreMemListenStateStorage, FirestoreTimestamp,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::Assignment;
use super::lease::{self, Lease};
use super::plan::{Reason, RoomState};
use crate::docdb::{self, Cas, DbError, DocRef, doc_id, meter, timestamp};
use crate::signalling::protocol::assignment_of;
use crate::signalling::protocol::{ErrorCode, MEMBERS, PARTICIPANTS, ROOMS, SESSIONS};

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
async fn read_lease(db: &FirestoreDb) -> Result<Option<Lease>, firestore::errors::FirestoreError> {
    meter::read(1);
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

    /// Every room with its assignment (the monitor's periodic resync).
    pub async fn rooms(&self) -> Result<Vec<RoomState>, DbError> {
        let docs = docdb::timed(self.db.fluent().select().from(ROOMS).query()).await?;
        meter::read(docs.len().max(1));
        Ok(docs
            .iter()
            .filter_map(|doc| {
                let json: Value = FirestoreDb::deserialize_doc_to(doc).ok()?;
                Some(room_state(doc_id(&doc.name), &json))
            })
            .collect())
    }

    /// How many rooms are assigned to `instance` (a draining instance waits for none).
    pub async fn rooms_assigned_to(&self, instance: &str) -> Result<usize, DbError> {
        let docs = docdb::timed(
            self.db
                .fluent()
                .select()
                .from(ROOMS)
                .filter(|q| q.for_all([q.field("assignment.instance").eq(instance)]))
                .query(),
        )
        .await?;
        meter::read(docs.len().max(1));
        Ok(docs.len())
    }

    /// Sends every change of a room document (creation, assignment, deletion) to `tx`, parsed:
    /// the monitor updates its view of the rooms from the change alone, without re-reading.
    pub async fn watch_rooms(
        &self,
        tx: mpsc::UnboundedSender<RoomChange>,
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
                let tx = tx.clone();
                async move {
                    let change = match event {
                        FirestoreListenEvent::DocumentChange(change) => {
                            change.document.and_then(|doc| {
                                meter::listened(1);
                                let json: Value = FirestoreDb::deserialize_doc_to(&doc).ok()?;
                                Some(RoomChange::Upsert(room_state(doc_id(&doc.name), &json)))
                            })
                        }
                        FirestoreListenEvent::DocumentDelete(d) => {
                            Some(RoomChange::Removed(doc_id(&d.document).to_owned()))
                        }
                        FirestoreListenEvent::DocumentRemove(d) => {
                            Some(RoomChange::Removed(doc_id(&d.document).to_owned()))
                        }
                        _ => None,
                    };
                    if let Some(change) = change {
                        tx.send(change).map_err(|_| "the monitor has stopped")?;
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
    ) -> Result<Option<Lease>, DbError> {
        let me = me.to_owned();
        let now_ms = super::unix_ms(now);
        let duration_ms = duration.as_millis() as i64;
        docdb::timed(self.db.run_transaction(move |db, tx| {
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
                meter::wrote(1);
                Ok(Some(next))
            })
        }))
        .await
    }

    /// Gives the lease up (shutdown), so another monitor leads at once.
    pub async fn release(&self, held: &Lease) -> Result<(), DbError> {
        let released = Lease {
            expires_at_ms: 0,
            ..held.clone()
        };
        let held = held.clone();
        docdb::timed(self.db.run_transaction(move |db, tx| {
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
        }))
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
    ) -> Result<Written, DbError> {
        let (room, to, previous, held) =
            (room.to_owned(), to.clone(), previous.cloned(), held.clone());
        let now_ms = super::unix_ms(now);
        docdb::timed(self.db.run_transaction(move |db, tx| {
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
                meter::read(1);
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
                meter::wrote(1);
                Ok(Written::Done)
            })
        }))
        .await
    }

    pub async fn mark_unplaceable(&self, room: &str, message: &str) -> Result<(), DbError> {
        let fields = json!({
            "placementError": {"code": ErrorCode::FleetFull.as_str(), "message": message},
        });
        let result = docdb::timed(
            self.db
                .fluent()
                .update()
                .fields(["placementError"])
                .in_col(ROOMS)
                .precondition(firestore::FirestoreWritePrecondition::Exists(true))
                .document_id(room)
                .object(&fields)
                .execute::<()>(),
        )
        .await;
        meter::wrote(1);
        match result {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }

    /// Ends the room's sessions in `states` on `on` with `code`: their clients join again (and
    /// land on the room's current instance). Only sessions in those states are read. Returns
    /// how many this call ended.
    pub async fn end_sessions(
        &self,
        room: &str,
        on: On<'_>,
        states: &[&str],
        code: ErrorCode,
        message: &str,
        now: SystemTime,
    ) -> Result<usize, DbError> {
        let parent = self.db.parent_path(ROOMS, room)?;
        let docs = docdb::timed(
            self.db
                .fluent()
                .select()
                .from(SESSIONS)
                .parent(&parent)
                .filter(|q| q.for_all([q.field("state").is_in(states.to_vec())]))
                .query(),
        )
        .await?;
        meter::read(docs.len().max(1));
        let target = SessionFilter { on, states };
        let mut ended = 0;
        for doc in docs {
            let matches = FirestoreDb::deserialize_doc_to::<Value>(&doc)
                .is_ok_and(|json| target.matches(&json));
            if matches
                && self
                    .end_one(
                        parent.as_ref(),
                        doc_id(&doc.name),
                        &target,
                        code,
                        message,
                        now,
                    )
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
    ) -> Result<bool, docdb::DbError> {
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
        let doc = DocRef {
            parent,
            collection: SESSIONS,
            id,
        };
        let mask = ["state", "error", "updatedAt", "expiresAt"];
        match docdb::update_if(&self.db, &doc, &mask, &fields, |s| target.matches(s)).await? {
            Cas::Written => Ok(true),
            // Ended already (possibly by our previous attempt, whose reply was lost).
            Cas::Refused(json) => {
                Ok(json.pointer("/error/code").and_then(Value::as_str) == Some(code.as_str()))
            }
            Cas::Missing => Ok(false),
        }
    }

    /// Deletes the roster entries `instance` left in the room and, with `members` (the
    /// instance is dead: nobody else will), the member documents of users with no other entry
    /// left (they would keep reading roster and chat). A live instance removes its sessions'
    /// members itself, and knows when a user re-joining elsewhere still needs theirs.
    pub async fn remove_roster_of(
        &self,
        room: &str,
        instance: &str,
        members: bool,
    ) -> Result<usize, DbError> {
        let parent = self.db.parent_path(ROOMS, room)?.to_string();
        let docs = docdb::timed(
            self.db
                .fluent()
                .select()
                .from(PARTICIPANTS)
                .parent(&parent)
                .query(),
        )
        .await?;
        meter::read(docs.len().max(1));
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
            let entry = DocRef {
                parent: &parent,
                collection: PARTICIPANTS,
                id: doc_id(&doc.name),
            };
            docdb::delete(&self.db, &entry).await?;
            removed += 1;
            gone_uids.extend(uid);
        }
        if !members {
            return Ok(removed);
        }
        for uid in gone_uids.iter().filter(|u| !remaining_uids.contains(*u)) {
            let member = DocRef {
                parent: &parent,
                collection: MEMBERS,
                id: uid,
            };
            docdb::delete(&self.db, &member).await?;
        }
        Ok(removed)
    }
}

/// A change of one room document, as the rooms listener saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomChange {
    Upsert(RoomState),
    Removed(String),
}

/// The fields of a room document the monitor plans with.
pub fn room_state(id: &str, room: &Value) -> RoomState {
    let assignment = room.get("assignment");
    let moved_at_ms = assignment
        .filter(|a| {
            a.get("reason")
                .and_then(Value::as_str)
                .is_some_and(|r| r != "new")
        })
        .and_then(|a| a.get("assignedAt"))
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis());
    RoomState {
        id: id.to_owned(),
        assignment: assignment_of(room),
        unplaceable: room.get("placementError").is_some_and(|e| !e.is_null()),
        moved_at_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_documents_become_room_states() {
        let moved = json!({"name": "x", "assignment": {"instance": "b", "epoch": 2,
            "reason": "instance-dead", "assignedAt": "2026-12-01T10:00:00Z"}});
        let s = room_state("r1", &moved);
        assert_eq!(s.assignment.unwrap().instance, "b");
        assert_eq!(s.moved_at_ms, Some(1_796_119_200_000));
        let new = json!({"assignment": {"instance": "a", "epoch": 1, "reason": "new",
            "assignedAt": "2026-12-01T10:00:00Z"}, "placementError": null});
        assert_eq!(room_state("r2", &new).moved_at_ms, None);
        assert!(!room_state("r2", &new).unplaceable);
        let full = json!({"placementError": {"code": "fleet-full"}});
        assert!(room_state("r3", &full).unplaceable);
    }
}
