//! The server API's Firestore side: a room's roster entries, ending one session with
//! `removed`, and muting a session's track (compare-and-sets on the live session, as the
//! monitor ends moved sessions).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use firestore::{FirestoreDb, FirestoreTimestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::docdb::{self, Cas, DbError, DocRef, doc_id, meter, timestamp};
use crate::signalling::protocol::{ErrorCode, PARTICIPANTS, ROOMS, SESSIONS};

/// Session states a participant is in (or on the way into) the room.
const LIVE: [&str; 4] = ["offered", "answering", "answered", "connected"];

/// The session document's state is one a participant is in (or on the way into) the room in.
fn live(d: &Value) -> bool {
    d.get("state")
        .and_then(Value::as_str)
        .is_some_and(|s| LIVE.contains(&s))
}

/// The room's roster entries: (session id, document).
pub async fn entries(db: &FirestoreDb, room: &str) -> Result<Vec<(String, Value)>, DbError> {
    let parent = db.parent_path(ROOMS, room)?;
    let docs = docdb::timed(
        db.fluent()
            .select()
            .from(PARTICIPANTS)
            .parent(&parent)
            .query(),
    )
    .await?;
    meter::read(docs.len().max(1));
    Ok(docs
        .iter()
        .filter_map(|d| {
            let json = FirestoreDb::deserialize_doc_to::<Value>(d).ok()?;
            Some((doc_id(&d.name).to_owned(), json))
        })
        .collect())
}

/// One roster entry (`None`: the session is not in the room).
pub async fn entry(db: &FirestoreDb, room: &str, session: &str) -> Result<Option<Value>, DbError> {
    let parent = db.parent_path(ROOMS, room)?.to_string();
    let doc = DocRef {
        parent: &parent,
        collection: PARTICIPANTS,
        id: session,
    };
    docdb::get(db, &doc).await
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Muting {
    muted: BTreeMap<String, bool>,
    updated_at: FirestoreTimestamp,
}

/// The mids a session document's `muted` map sets.
fn muted_of(doc: &Value) -> BTreeMap<String, bool> {
    doc.get("muted")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(_, v)| v.as_bool() == Some(true))
                .map(|(mid, _)| (mid.clone(), true))
                .collect()
        })
        .unwrap_or_default()
}

/// Sets or clears `muted[mid]` in the live session `session` of `room` (the broadcast reads
/// it). False when there is no such live session.
pub async fn set_muted(
    db: &FirestoreDb,
    room: &str,
    session: &str,
    mid: &str,
    muted: bool,
    now: SystemTime,
) -> Result<bool, DbError> {
    let parent = db.parent_path(ROOMS, room)?.to_string();
    let doc = session_ref(&parent, session);
    // Read, decide the new map, and write it only onto a document whose map is still the one
    // read (another key's change in between makes it read again).
    for attempt in 0..5u32 {
        let Some(current) = docdb::get(db, &doc).await? else {
            return Ok(false);
        };
        if !live(&current) {
            return Ok(false);
        }
        let before = muted_of(&current);
        let mut after = before.clone();
        if muted {
            after.insert(mid.to_owned(), true);
        } else {
            after.remove(mid);
        }
        if after == before {
            return Ok(true);
        }
        let write = Muting {
            muted: after,
            updated_at: timestamp(now),
        };
        let still = |d: &Value| live(d) && muted_of(d) == before;
        match docdb::update_if(db, &doc, &["muted", "updatedAt"], &write, still).await {
            Ok(Cas::Written) => return Ok(true),
            Ok(Cas::Missing) => return Ok(false),
            Ok(Cas::Refused(_)) => {}
            Err(e) if attempt < 3 => {
                tracing::info!(room, session, "muting a track, trying again: {e}");
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

fn session_ref<'a>(parent: &'a str, session: &'a str) -> DocRef<'a> {
    DocRef {
        parent,
        collection: SESSIONS,
        id: session,
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Ending {
    state: String,
    error: Value,
    updated_at: FirestoreTimestamp,
    expires_at: FirestoreTimestamp,
}

/// Ends the session `session` of `room` with `removed` if it is live. False when there is no
/// such live session.
pub async fn remove(
    db: &FirestoreDb,
    room: &str,
    session: &str,
    now: SystemTime,
) -> Result<bool, DbError> {
    let parent = db.parent_path(ROOMS, room)?.to_string();
    let doc = session_ref(&parent, session);
    let ending = Ending {
        state: "closed".into(),
        error: json!({
            "code": ErrorCode::Removed.as_str(),
            "message": "the application removed you from the room",
            "revision": Value::Null,
        }),
        updated_at: timestamp(now),
        expires_at: timestamp(now + Duration::from_secs(600)),
    };
    let mask = ["state", "error", "updatedAt", "expiresAt"];
    // A compare-and-set: trying again after a transient error is safe.
    let mut attempt = 0;
    let written = loop {
        match docdb::update_if(db, &doc, &mask, &ending, live).await {
            Err(e) if attempt < 3 => {
                attempt += 1;
                tracing::info!(room, session, "removing a participant, trying again: {e}");
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            other => break other?,
        }
    };
    Ok(match written {
        Cas::Written => true,
        // Removed already (a retried request whose first answer was lost).
        Cas::Refused(d) => {
            d.pointer("/error/code").and_then(Value::as_str) == Some(ErrorCode::Removed.as_str())
        }
        Cas::Missing => false,
    })
}
