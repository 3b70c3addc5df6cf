//! The Firestore side of cameras for a broadcast instance: finding a room's cameras, following
//! their changes, and writing each one's public state.

use std::time::{Duration, SystemTime};

use firestore::{
    FirestoreDb, FirestoreListenEvent, FirestoreListener, FirestoreListenerParams,
    FirestoreListenerTarget, FirestoreMemListenStateStorage, FirestoreTimestamp,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

use super::documents::{CAMERAS, CameraError, CameraSourceDoc, CameraState, FOUND_FIELDS, SOURCES};
use crate::docdb::{self, Cas, DbError, DocRef, meter, timestamp};

/// What the listener or a sweep of a room's cameras saw.
#[derive(Debug, Clone)]
pub enum SourceEvent {
    /// A camera's source document (possibly a replay).
    Seen {
        camera: String,
        doc: CameraSourceDoc,
    },
    /// Deleted, or no longer of this room.
    Gone { camera: String },
    /// A sweep's complete list for `room`: cameras not in it are gone.
    Swept {
        room: String,
        cameras: Vec<(String, CameraSourceDoc)>,
    },
}

/// What the instance pulling a camera says about it (`rooms/{room}/cameras/{camera}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CameraStatus {
    pub state: CameraState,
    pub error: Option<CameraError>,
    pub codec: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// The forwarded audio codec (`PCMU`/`PCMA`), if any.
    pub audio: Option<String>,
    /// Why the camera's audio is not forwarded, if it has some.
    pub audio_error: Option<CameraError>,
    pub instance: String,
    pub updated_at: FirestoreTimestamp,
}

/// `state`, what the pull found, and who wrote it when.
fn status_fields() -> impl Iterator<Item = &'static str> {
    ["state", "instance", "updatedAt"]
        .into_iter()
        .chain(FOUND_FIELDS)
}

#[derive(Clone)]
pub struct CameraStore {
    db: FirestoreDb,
    instance: String,
}

fn source_of(doc: &firestore::FirestoreDocument) -> Option<(String, CameraSourceDoc)> {
    let parsed = FirestoreDb::deserialize_doc_to::<CameraSourceDoc>(doc).ok()?;
    Some((docdb::doc_id(&doc.name).to_owned(), parsed))
}

impl CameraStore {
    pub fn new(db: FirestoreDb, instance: String) -> CameraStore {
        CameraStore { db, instance }
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The room's camera sources, read now.
    pub async fn sweep(&self, room: &str) -> Result<SourceEvent, DbError> {
        let docs = docdb::timed(
            self.db
                .fluent()
                .select()
                .from(SOURCES)
                .filter(|q| q.for_all([q.field("room").eq(room)]))
                .query(),
        )
        .await?;
        meter::read(docs.len().max(1));
        Ok(SourceEvent::Swept {
            room: room.to_owned(),
            cameras: docs.iter().filter_map(source_of).collect(),
        })
    }

    /// Follows the room's camera sources; events go to `tx`.
    pub async fn watch(
        &self,
        room: &str,
        tx: mpsc::UnboundedSender<(String, SourceEvent)>,
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
            .from(SOURCES)
            .filter(|q| q.for_all([q.field("room").eq(room)]))
            .listen()
            .add_target(FirestoreListenerTarget::new(1), &mut listener)?;
        let room = room.to_owned();
        listener
            .start(move |event| {
                let tx = tx.clone();
                let room = room.clone();
                async move {
                    let event = match event {
                        FirestoreListenEvent::DocumentChange(change) => {
                            meter::listened(1);
                            change
                                .document
                                .as_ref()
                                .and_then(source_of)
                                .map(|(camera, doc)| SourceEvent::Seen { camera, doc })
                        }
                        FirestoreListenEvent::DocumentDelete(d) => Some(SourceEvent::Gone {
                            camera: docdb::doc_id(&d.document).to_owned(),
                        }),
                        FirestoreListenEvent::DocumentRemove(r) => Some(SourceEvent::Gone {
                            camera: docdb::doc_id(&r.document).to_owned(),
                        }),
                        _ => None,
                    };
                    if let Some(event) = event {
                        tx.send((room, event))
                            .map_err(|_| "the camera supervisor has stopped")?;
                    }
                    Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
                }
            })
            .await?;
        Ok(listener)
    }

    /// Writes a camera's public state, unless its owner disabled it meanwhile (their
    /// `disabled` stays) or, for `idle`, another instance pulls it now. False when not written.
    pub async fn set_status(
        &self,
        room: &str,
        camera: &str,
        status: &CameraStatus,
    ) -> Result<bool, DbError> {
        let parent = self.db.parent_path("rooms", room)?;
        let parent: String = parent.into();
        let me = self.instance.clone();
        let idle = status.state == CameraState::Idle;
        let outcome = docdb::update_if(
            &self.db,
            &DocRef {
                parent: &parent,
                collection: CAMERAS,
                id: camera,
            },
            &status_fields().collect::<Vec<_>>(),
            status,
            |doc: &Value| {
                let enabled = doc.get("enabled").and_then(Value::as_bool) != Some(false);
                let ours = doc.get("instance").and_then(Value::as_str) == Some(me.as_str());
                enabled && (!idle || ours)
            },
        )
        .await?;
        Ok(outcome == Cas::Written)
    }

    pub fn status(
        &self,
        state: CameraState,
        error: Option<CameraError>,
        now: SystemTime,
    ) -> CameraStatus {
        CameraStatus {
            state,
            error,
            codec: None,
            width: None,
            height: None,
            audio: None,
            audio_error: None,
            instance: self.instance.clone(),
            updated_at: timestamp(now),
        }
    }
}
