//! In a fleet, which rooms the monitor assigned to this instance: a listener on
//! `rooms where assignment.instance == me` keeps the set, so that offers for other instances'
//! rooms are passed over without a transaction (every instance sees every offer of the fleet).
//!
//! The set is a hint. A room it lacks is skipped; a room it wrongly holds costs one
//! transaction, which re-checks the assignment. A room that becomes ours wakes the sweep of
//! pending offers at once, so its waiting joiners are answered without waiting for a tick.

use std::collections::HashSet;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use firestore::{
    FirestoreDb, FirestoreListenEvent, FirestoreListener, FirestoreListenerParams,
    FirestoreListenerTarget, FirestoreListenerTargetChangeType, FirestoreMemListenStateStorage,
};
use serde_json::Value;
use tokio::sync::Notify;

use super::Store;
use crate::docdb::{doc_id, meter};
use crate::signalling::protocol::{ROOMS, assignment_of};

const ASSIGNED_TARGET: FirestoreListenerTarget = FirestoreListenerTarget::new(11);

#[derive(Default)]
pub struct AssignedRooms {
    rooms: RwLock<HashSet<String>>,
    /// Until the listener's first snapshot, every room may be ours.
    ready: AtomicBool,
    /// Woken when a room becomes ours.
    pub gained: Notify,
}

impl AssignedRooms {
    pub fn may_be_mine(&self, room: &str) -> bool {
        !self.ready.load(Ordering::Acquire) || self.rooms.read().is_ok_and(|r| r.contains(room))
    }

    fn set(&self, room: &str, mine: bool) {
        let Ok(mut rooms) = self.rooms.write() else {
            return;
        };
        let changed = if mine {
            rooms.insert(room.to_owned())
        } else {
            rooms.remove(room)
        };
        if mine && changed {
            self.gained.notify_one();
        }
    }

    fn mark_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }
}

impl Store {
    /// Starts the listener that keeps [`AssignedRooms`] (fleet mode only).
    pub async fn watch_assignments(
        &self,
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
            .filter(|q| q.for_all([q.field("assignment.instance").eq(self.instance.as_str())]))
            .listen()
            .add_target(ASSIGNED_TARGET, &mut listener)?;
        let rooms = self.rooms.clone();
        let me = self.instance.clone();
        listener
            .start(move |event| {
                let (rooms, me) = (rooms.clone(), me.clone());
                async move {
                    match event {
                        FirestoreListenEvent::DocumentChange(change) => {
                            if let Some(doc) = change.document {
                                meter::listened(1);
                                let mine = !change.target_ids.is_empty()
                                    && FirestoreDb::deserialize_doc_to::<Value>(&doc)
                                        .ok()
                                        .and_then(|d| assignment_of(&d))
                                        .is_some_and(|a| a.instance == me);
                                rooms.set(doc_id(&doc.name), mine);
                            }
                        }
                        FirestoreListenEvent::DocumentDelete(d) => {
                            rooms.set(doc_id(&d.document), false)
                        }
                        FirestoreListenEvent::DocumentRemove(d) => {
                            rooms.set(doc_id(&d.document), false)
                        }
                        // The first consistent snapshot: the set is complete from now on.
                        FirestoreListenEvent::TargetChange(t)
                            if FirestoreListenerTargetChangeType::try_from(
                                t.target_change_type,
                            ) == Ok(FirestoreListenerTargetChangeType::Current) =>
                        {
                            rooms.mark_ready();
                        }
                        _ => {}
                    }
                    Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
                }
            })
            .await?;
        Ok(listener)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_room_may_be_ours_until_the_first_snapshot() {
        let a = AssignedRooms::default();
        assert!(a.may_be_mine("r1"));
        a.mark_ready();
        assert!(!a.may_be_mine("r1"));
        a.set("r1", true);
        assert!(a.may_be_mine("r1"));
        a.set("r1", false);
        assert!(!a.may_be_mine("r1"));
    }
}
