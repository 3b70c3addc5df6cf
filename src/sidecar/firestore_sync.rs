//! The sidecar's Firestore side: room documents mirror the rooms table (broadcast instances
//! refuse offers for rooms that do not exist there), participant counts come from the rosters
//! the broadcast instances write, and erasing data removes documents too.

use std::collections::HashMap;

use firestore::FirestoreDb;
use firestore::errors::FirestoreError;
use serde_json::json;

use crate::ingest::documents::CAMERAS;
use crate::signalling::protocol::{LIVE, MEMBERS, PARTICIPANTS, ROOMS, SESSIONS};

/// Chat messages (written by the web app) live in this subcollection of a room.
pub const MESSAGES: &str = "messages";

/// What a room document carries from the rooms table (the fleet's fields are the monitor's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomFields {
    pub name: String,
    /// How many may share a screen at once (0: any number).
    pub max_presenters: i32,
}

impl RoomFields {
    fn from_doc(doc: &serde_json::Value) -> RoomFields {
        RoomFields {
            name: doc["name"].as_str().unwrap_or_default().to_owned(),
            max_presenters: doc["maxPresenters"].as_i64().map_or(-1, |n| n as i32),
        }
    }
}

pub async fn put_room(db: &FirestoreDb, id: &str, room: &RoomFields) -> Result<(), FirestoreError> {
    db.fluent()
        .update()
        .fields(["name", "maxPresenters"])
        .in_col(ROOMS)
        .document_id(id)
        .object(&json!({ "name": room.name, "maxPresenters": room.max_presenters }))
        .execute::<()>()
        .await
}

/// Writes the room document unless it exists (one read when it does).
pub async fn ensure_room(
    db: &FirestoreDb,
    id: &str,
    room: &RoomFields,
) -> Result<bool, FirestoreError> {
    let existing: Option<serde_json::Value> =
        db.fluent().select().by_id_in(ROOMS).obj().one(id).await?;
    crate::docdb::meter::read(1);
    if existing.is_some() {
        return Ok(false);
    }
    put_room(db, id, room).await?;
    Ok(true)
}

/// Every room document's id and the fields the rooms table owns.
pub async fn room_documents(
    db: &FirestoreDb,
) -> Result<HashMap<String, RoomFields>, FirestoreError> {
    let docs = db.fluent().select().from(ROOMS).query().await?;
    crate::docdb::meter::read(docs.len().max(1));
    Ok(docs
        .iter()
        .map(|d| {
            let doc = FirestoreDb::deserialize_doc_to::<serde_json::Value>(d).unwrap_or_default();
            (
                crate::docdb::doc_id(&d.name).to_owned(),
                RoomFields::from_doc(&doc),
            )
        })
        .collect())
}

/// Deletes a room document, everything under it, and its cameras' source documents.
pub async fn delete_room(db: &FirestoreDb, id: &str) -> Result<(), crate::docdb::DbError> {
    super::camera_docs::delete_room_sources(db, id).await?;
    let parent = db.parent_path(ROOMS, id)?;
    for collection in [SESSIONS, PARTICIPANTS, MESSAGES, MEMBERS, LIVE, CAMERAS] {
        let docs = db
            .fluent()
            .select()
            .from(collection)
            .parent(&parent)
            .query()
            .await?;
        for doc in docs {
            let name = doc.name.rsplit('/').next().unwrap_or_default().to_owned();
            db.fluent()
                .delete()
                .from(collection)
                .parent(&parent)
                .document_id(&name)
                .execute()
                .await?;
        }
    }
    db.fluent()
        .delete()
        .from(ROOMS)
        .document_id(id)
        .execute()
        .await?;
    Ok(())
}

/// Participants per room id: one COUNT aggregation per room (billed as one read per room,
/// whatever the room holds; reading the rosters would cost one read per participant).
pub async fn participant_counts(
    db: &FirestoreDb,
    rooms: &[String],
) -> Result<HashMap<String, usize>, FirestoreError> {
    use futures::StreamExt;
    #[derive(serde::Deserialize)]
    struct Count {
        n: i64,
    }
    let counted: Vec<Result<(String, usize), FirestoreError>> =
        futures::stream::iter(rooms.to_vec())
            .map(|room: String| {
                let db = db.clone();
                async move {
                    let parent = db.parent_path(ROOMS, &room)?;
                    let result: Vec<Count> = db
                        .fluent()
                        .select()
                        .from(PARTICIPANTS)
                        .parent(&parent)
                        .aggregate(|a| a.fields([a.field("n").count()]))
                        .obj()
                        .query()
                        .await?;
                    crate::docdb::meter::read(1);
                    let n = result.first().map_or(0, |c| c.n.max(0) as usize);
                    Ok((room, n))
                }
            })
            .buffer_unordered(8)
            .collect()
            .await;
    counted.into_iter().collect()
}

/// Deletes the user's session and chat documents in every room.
pub async fn delete_user_documents(db: &FirestoreDb, uid: &str) -> Result<usize, FirestoreError> {
    let mut deleted = 0;
    for collection in [SESSIONS, MESSAGES, PARTICIPANTS, MEMBERS] {
        let docs = db
            .fluent()
            .select()
            .from(collection)
            .all_descendants()
            .filter(|q| q.for_all([q.field("uid").eq(uid)]))
            .query()
            .await?;
        for doc in docs {
            let path = doc
                .name
                .split_once("/documents/")
                .map(|(_, p)| p.to_owned())
                .unwrap_or_default();
            // rooms/{room}/{collection}/{id}
            let parts: Vec<&str> = path.split('/').collect();
            if let [ROOMS, room, _, id] = parts.as_slice() {
                let parent = db.parent_path(ROOMS, *room)?;
                db.fluent()
                    .delete()
                    .from(collection)
                    .parent(&parent)
                    .document_id(*id)
                    .execute()
                    .await?;
                deleted += 1;
            }
        }
    }
    Ok(deleted)
}
