//! What a previous process with this instance's id left behind. An instance id is stable (the
//! host or pod name), so a restarted instance finds the sessions and roster entries of its
//! previous life: it ends those sessions with `session-lost` (their clients join again) and
//! removes the roster entries and member documents nobody else backs.

use std::time::SystemTime;

use firestore::FirestoreDb;
use serde_json::Value;

use super::Store;
use crate::docdb::{self, DbError, meter};
use crate::media::SessionKey;
use crate::signalling::protocol::{PARTICIPANTS, ROOMS, SESSIONS};

/// What [`Store::reclaim`] cleaned.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reclaimed {
    pub sessions: usize,
    pub participants: usize,
}

/// `…/rooms/R/<collection>/ID` → (R, ID).
fn room_and_id<'a>(name: &'a str, collection: &str) -> Option<(&'a str, &'a str)> {
    let path = name.split_once("/documents/")?.1;
    match path.split('/').collect::<Vec<_>>().as_slice() {
        [ROOMS, room, c, id] if *c == collection => Some((room, id)),
        _ => None,
    }
}

impl Store {
    /// Ends the previous life's sessions and clears its roster. Run before listening.
    pub async fn reclaim(&self, now: SystemTime) -> Result<Reclaimed, DbError> {
        let mut done = Reclaimed::default();
        let me = self.instance.as_str();
        let sessions = docdb::timed(
            self.db
                .fluent()
                .select()
                .from(SESSIONS)
                .all_descendants()
                .filter(|q| {
                    q.for_all([
                        q.field("instance").eq(me),
                        q.field("state")
                            .is_in(["answering", "answered", "connected"]),
                    ])
                })
                .query(),
        )
        .await?;
        meter::read(sessions.len().max(1));
        for doc in &sessions {
            let Some((room, session)) = room_and_id(&doc.name, SESSIONS) else {
                continue;
            };
            let key = SessionKey {
                room: room.to_owned(),
                session: session.to_owned(),
            };
            if self.mark_lost(&key, now).await? {
                done.sessions += 1;
            }
        }
        let roster = docdb::timed(
            self.db
                .fluent()
                .select()
                .from(PARTICIPANTS)
                .all_descendants()
                .filter(|q| q.for_all([q.field("instance").eq(me)]))
                .query(),
        )
        .await?;
        meter::read(roster.len().max(1));
        for doc in &roster {
            let Some((room, session)) = room_and_id(&doc.name, PARTICIPANTS) else {
                continue;
            };
            let key = SessionKey {
                room: room.to_owned(),
                session: session.to_owned(),
            };
            self.delete_participant(&key).await?;
            let uid = FirestoreDb::deserialize_doc_to::<Value>(doc)
                .ok()
                .and_then(|d| d.get("uid").and_then(Value::as_str).map(str::to_owned));
            if let Some(uid) = uid {
                self.remove_member_unless_present(&key, &uid).await?;
            }
            done.participants += 1;
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_give_room_and_id() {
        let n = "projects/p/databases/(default)/documents/rooms/r1/participants/s1";
        assert_eq!(room_and_id(n, PARTICIPANTS), Some(("r1", "s1")));
        assert_eq!(room_and_id(n, SESSIONS), None);
    }
}
