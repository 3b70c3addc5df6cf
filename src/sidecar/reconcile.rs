//! PostgreSQL is the source of truth for rooms and cameras; Firestore's documents follow it. At
//! start and every `FIRESFU_ROOM_RECONCILE_SECS`, every room of the database whose document is
//! missing in Firestore (lost to a mistaken deletion, a restore, an emulator restart) or carries
//! another name or presenter limit is written again. Room documents the database does not know
//! are left alone: other applications may create rooms (docs/signalling.md). Camera documents
//! are the sidecar's alone: missing or wrong ones are rewritten, those of cameras the database
//! does not know are deleted (`camera_docs::reconcile`). Rows of WHIP sessions that ended without
//! a DELETE are forgotten (`whip::sweep`).

use std::time::Duration;

use super::AppState;
use super::firestore_sync::{RoomFields, put_room, room_documents};

/// One pass; returns how many room documents it wrote.
pub async fn rooms_once(state: &AppState) -> anyhow::Result<usize> {
    let rows: Vec<(uuid::Uuid, String, i32)> =
        sqlx::query_as("SELECT id, name, max_presenters FROM rooms")
            .fetch_all(&state.db)
            .await?;
    let documents = room_documents(&state.firestore).await?;
    let mut written = 0;
    for (id, name, max_presenters) in rows {
        let id = id.to_string();
        let fields = RoomFields {
            name,
            max_presenters,
        };
        if documents.get(&id) != Some(&fields) {
            put_room(&state.firestore, &id, &fields).await?;
            written += 1;
        }
    }
    Ok(written)
}

pub async fn run(state: AppState, every: Duration) {
    let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match rooms_once(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rooms = n, "room documents restored in Firestore"),
            Err(e) => tracing::warn!("cannot reconcile the room documents: {e:#}"),
        }
        match super::camera_docs::reconcile(&state.firestore, &state.db).await {
            Ok(done) if done == Default::default() => {}
            Ok(done) => tracing::info!(
                written = done.written,
                deleted = done.deleted,
                "camera documents reconciled in Firestore"
            ),
            Err(e) => tracing::warn!("cannot reconcile the camera documents: {e:#}"),
        }
        match super::whip::sweep(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(sessions = n, "ended WHIP sessions forgotten"),
            Err(e) => tracing::warn!("cannot sweep the WHIP sessions: {e:#}"),
        }
    }
}
