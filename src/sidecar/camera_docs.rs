//! The cameras' Firestore side (`crate::ingest::documents`): each camera of the `cameras` table
//! has a source document (`cameraSources/{camera}`, the sealed settings a broadcast instance
//! pulls it with; no browser may read it) and a public one (`rooms/{room}/cameras/{camera}`).
//!
//! The sidecar owns the source document entirely, and of the public one only `name`, `enabled`
//! and `createdAt`, plus `state` (clearing what the last pull found) when `enabled` changes:
//! field masks leave what the pulling instance writes (`state`, `error`, `codec`, …) alone.
//! Both documents of a camera are written, or deleted, in one Firestore transaction.
//!
//! PostgreSQL is the truth: [`reconcile`] rewrites what is missing or wrong and deletes
//! documents of cameras it does not know. Every change to a camera, in the API and here, holds
//! that camera's lock ([`lock`]) while it reads the row and writes the documents, so a repair
//! never acts on a row a request is changing (a camera being created is not yet visible, but
//! its lock is taken).

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use firestore::{FirestoreDb, FirestoreTimestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::docdb::{self, DbError, doc_id, meter, timed};
use crate::ingest::documents::{
    CAMERAS, CameraSourceDoc, CameraState, FOUND_FIELDS, RtspTransport, SOURCES,
};
use crate::signalling::protocol::ROOMS;

/// A camera as the `cameras` table holds it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CameraRow {
    pub id: Uuid,
    pub room_id: Uuid,
    pub name: String,
    pub sealed: String,
    pub transport: String,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub const COLUMNS: &str = "id, room_id, name, sealed, transport, enabled, created_at, updated_at";

impl CameraRow {
    pub fn transport(&self) -> RtspTransport {
        if self.transport == "udp" {
            RtspTransport::Udp
        } else {
            RtspTransport::Tcp
        }
    }

    /// Its `cameraSources/{id}` document.
    pub fn source(&self) -> CameraSourceDoc {
        CameraSourceDoc {
            v: 1,
            room: self.room_id.to_string(),
            name: self.name.clone(),
            enabled: self.enabled,
            transport: self.transport(),
            sealed: self.sealed.clone(),
        }
    }

    /// The public state a change of `enabled` (or a new camera) starts from.
    fn initial_state(&self) -> CameraState {
        if self.enabled {
            CameraState::Idle
        } else {
            CameraState::Disabled
        }
    }
}

/// The fields of `rooms/{room}/cameras/{id}` the sidecar writes. `error`, `codec`, `width`,
/// `height`, `audio` and `audioError` are in the mask when `state` is, and absent from the
/// object: Firestore deletes them.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PublicFields {
    name: String,
    enabled: bool,
    created_at: FirestoreTimestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<CameraState>,
}

const OWN_FIELDS: [&str; 3] = ["name", "enabled", "createdAt"];

/// Holds the camera's lock until `tx` ends: changes to one camera, and their mirroring into
/// Firestore, happen one at a time.
pub async fn lock(tx: &mut Transaction<'_, Postgres>, camera: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 43))")
        .bind(camera)
        .execute(&mut **tx)
        .await
        .map(|_| ())
}

/// What to write of a camera's documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Writes {
    pub source: bool,
    pub public: bool,
    /// Set `state` (idle or disabled) and clear what the last pull found (`error`, `codec`,
    /// size, sound): the camera is new, `enabled` changed,
    /// or the public state contradicts it.
    pub state: bool,
}

impl Writes {
    pub const ALL: Writes = Writes {
        source: true,
        public: true,
        state: true,
    };
}

/// Writes the camera's documents (those `writes` names) in one transaction.
pub async fn put(db: &FirestoreDb, row: &CameraRow, writes: Writes) -> Result<(), DbError> {
    if !writes.source && !writes.public {
        return Ok(());
    }
    let id = row.id.to_string();
    let parent = db.parent_path(ROOMS, row.room_id.to_string())?;
    let public = PublicFields {
        name: row.name.clone(),
        enabled: row.enabled,
        created_at: docdb::timestamp(SystemTime::from(row.created_at)),
        state: writes.state.then(|| row.initial_state()),
    };
    let source = row.source();
    // With `state`, what the last pull found goes (in the mask, absent from the object).
    let mask: Vec<&str> = if writes.state {
        OWN_FIELDS
            .into_iter()
            .chain(["state"])
            .chain(FOUND_FIELDS)
            .collect()
    } else {
        OWN_FIELDS.to_vec()
    };
    timed(async {
        let mut tx = db.begin_transaction().await?;
        if writes.source {
            db.fluent()
                .update()
                .in_col(SOURCES)
                .document_id(&id)
                .object(&source)
                .add_to_transaction(&mut tx)?;
        }
        if writes.public {
            db.fluent()
                .update()
                .fields(mask.iter().copied())
                .in_col(CAMERAS)
                .document_id(&id)
                .parent(&parent)
                .object(&public)
                .add_to_transaction(&mut tx)?;
        }
        tx.commit().await.map(|_| ())
    })
    .await?;
    meter::transaction();
    meter::wrote(usize::from(writes.source) + usize::from(writes.public));
    Ok(())
}

/// Deletes the camera's source document and its public documents in `rooms` (one
/// transaction; missing documents are no error).
pub async fn delete(db: &FirestoreDb, camera: &str, rooms: &[String]) -> Result<(), DbError> {
    let parents = rooms
        .iter()
        .map(|room| db.parent_path(ROOMS, room))
        .collect::<Result<Vec<_>, _>>()?;
    timed(async {
        let mut tx = db.begin_transaction().await?;
        db.fluent()
            .delete()
            .from(SOURCES)
            .document_id(camera)
            .add_to_transaction(&mut tx)?;
        for parent in &parents {
            db.fluent()
                .delete()
                .from(CAMERAS)
                .parent(parent)
                .document_id(camera)
                .add_to_transaction(&mut tx)?;
        }
        tx.commit().await.map(|_| ())
    })
    .await?;
    meter::transaction();
    meter::wrote(1 + parents.len());
    Ok(())
}

/// Deletes the source documents of a room's cameras (the public ones go with the room's
/// subcollections): a query, so documents PostgreSQL has forgotten go too.
pub async fn delete_room_sources(db: &FirestoreDb, room: &str) -> Result<usize, DbError> {
    let docs = timed(
        db.fluent()
            .select()
            .from(SOURCES)
            .filter(|q| q.for_all([q.field("room").eq(room)]))
            .query(),
    )
    .await?;
    meter::read(docs.len().max(1));
    for doc in &docs {
        let found = docdb::DocRef {
            parent: db.get_documents_path(),
            collection: SOURCES,
            id: doc_id(&doc.name),
        };
        docdb::delete(db, &found).await?;
    }
    Ok(docs.len())
}

/// Every camera document: source documents by camera id, public ones by camera id with the
/// room they are in (a camera id in two rooms would be a fault: both are listed).
struct Snapshot {
    sources: HashMap<String, Option<CameraSourceDoc>>,
    public: HashMap<String, Vec<(String, Value)>>,
}

async fn snapshot(db: &FirestoreDb) -> Result<Snapshot, DbError> {
    let sources = timed(db.fluent().select().from(SOURCES).query()).await?;
    meter::read(sources.len().max(1));
    let public = timed(db.fluent().select().from(CAMERAS).all_descendants().query()).await?;
    meter::read(public.len().max(1));
    let mut snap = Snapshot {
        sources: HashMap::new(),
        public: HashMap::new(),
    };
    for doc in &sources {
        let parsed = FirestoreDb::deserialize_doc_to::<CameraSourceDoc>(doc).ok();
        snap.sources.insert(doc_id(&doc.name).to_owned(), parsed);
    }
    for doc in &public {
        // …/documents/rooms/{room}/cameras/{id}
        let path = doc.name.split_once("/documents/").map_or("", |(_, p)| p);
        if let [ROOMS, room, CAMERAS, id] = path.split('/').collect::<Vec<_>>().as_slice() {
            let json = FirestoreDb::deserialize_doc_to::<Value>(doc).unwrap_or_default();
            snap.public
                .entry((*id).to_owned())
                .or_default()
                .push(((*room).to_owned(), json));
        }
    }
    Ok(snap)
}

/// What the public document `found` needs, for `row`.
fn public_needs(row: &CameraRow, found: Option<&Value>) -> (bool, bool) {
    let Some(doc) = found else {
        return (true, true);
    };
    let own = doc["name"].as_str() != Some(&row.name)
        || doc["enabled"].as_bool() != Some(row.enabled)
        || doc.get("createdAt").is_none();
    let state = doc["state"].as_str();
    let contradicts = if row.enabled {
        matches!(state, None | Some("disabled"))
    } else {
        state != Some("disabled")
    };
    (own || contradicts, contradicts)
}

fn needs_repair(row: &CameraRow, snap: &Snapshot) -> bool {
    let id = row.id.to_string();
    let room = row.room_id.to_string();
    let source_ok = snap.sources.get(&id) == Some(&Some(row.source()));
    let public = snap.public.get(&id).map_or(&[][..], Vec::as_slice);
    let here = public.iter().find(|(r, _)| *r == room).map(|(_, d)| d);
    !source_ok || public.len() != 1 || public_needs(row, here).0
}

/// What a reconciliation pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Repaired {
    pub written: usize,
    pub deleted: usize,
}

/// One pass: every camera whose documents are missing or wrong, and every document of a camera
/// PostgreSQL does not know, is repaired (under the camera's lock, from a fresh read).
pub async fn reconcile(db: &FirestoreDb, pg: &sqlx::PgPool) -> anyhow::Result<Repaired> {
    // Documents first: a camera created meanwhile is then in the rows (and rewritten, the same),
    // never taken for an orphan.
    let snap = snapshot(db).await?;
    let rows: Vec<CameraRow> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM cameras"))
        .fetch_all(pg)
        .await?;
    let known: HashSet<String> = rows.iter().map(|r| r.id.to_string()).collect();
    let mut suspects: Vec<String> = rows
        .iter()
        .filter(|r| needs_repair(r, &snap))
        .map(|r| r.id.to_string())
        .collect();
    let orphans = snap.sources.keys().chain(snap.public.keys());
    suspects.extend(orphans.filter(|id| !known.contains(*id)).cloned());
    suspects.sort();
    suspects.dedup();
    let mut done = Repaired::default();
    for id in suspects {
        let rooms: Vec<String> = snap
            .public
            .get(&id)
            .map(|p| p.iter().map(|(room, _)| room.clone()).collect())
            .unwrap_or_default();
        let Ok(camera) = Uuid::parse_str(&id) else {
            // Not an id this sidecar makes: nothing in PostgreSQL can claim it.
            delete(db, &id, &rooms).await?;
            done.deleted += 1;
            continue;
        };
        match repair(db, pg, camera, &rooms).await? {
            true => done.written += 1,
            false => done.deleted += 1,
        }
    }
    Ok(done)
}

/// Makes one camera's documents what its row says (true), or deletes them if it has no row.
async fn repair(
    db: &FirestoreDb,
    pg: &sqlx::PgPool,
    camera: Uuid,
    public_rooms: &[String],
) -> anyhow::Result<bool> {
    let id = camera.to_string();
    let mut tx = pg.begin().await?;
    lock(&mut tx, camera).await?;
    let row: Option<CameraRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM cameras WHERE id = $1"))
            .bind(camera)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(row) = row else {
        delete(db, &id, public_rooms).await?;
        tx.commit().await?;
        return Ok(false);
    };
    let room = row.room_id.to_string();
    let strays: Vec<String> = public_rooms
        .iter()
        .filter(|r| **r != room)
        .cloned()
        .collect();
    if !strays.is_empty() {
        // A public document in another room (never written by this code): only those go.
        for stray in &strays {
            let parent = db.parent_path(ROOMS, stray)?;
            let doc = docdb::DocRef {
                parent: parent.as_ref(),
                collection: CAMERAS,
                id: &id,
            };
            docdb::delete(db, &doc).await?;
        }
    }
    let parent = db.parent_path(ROOMS, &room)?;
    let found = timed(
        db.fluent()
            .select()
            .by_id_in(CAMERAS)
            .parent(&parent)
            .obj::<Value>()
            .one(&id),
    )
    .await?;
    meter::read(1);
    let (public, state) = public_needs(&row, found.as_ref());
    put(
        db,
        &row,
        Writes {
            source: true,
            public,
            state,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(enabled: bool) -> CameraRow {
        CameraRow {
            id: Uuid::nil(),
            room_id: Uuid::nil(),
            name: "Door".into(),
            sealed: "v1.x".into(),
            transport: "udp".into(),
            enabled,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn the_public_state_is_rewritten_only_when_it_contradicts_enabled() {
        let doc = |state: &str| json!({"name": "Door", "enabled": true, "createdAt": "t", "state": state});
        for live in ["idle", "connecting", "live", "retrying", "failed"] {
            assert_eq!(public_needs(&row(true), Some(&doc(live))), (false, false));
        }
        assert_eq!(
            public_needs(&row(true), Some(&doc("disabled"))),
            (true, true)
        );
        let off = json!({"name": "Door", "enabled": false, "createdAt": "t", "state": "disabled"});
        assert_eq!(public_needs(&row(false), Some(&off)), (false, false));
        let stale = json!({"name": "Door", "enabled": false, "createdAt": "t", "state": "live"});
        assert_eq!(public_needs(&row(false), Some(&stale)), (true, true));
        let renamed = json!({"name": "Gate", "enabled": true, "createdAt": "t", "state": "live"});
        assert_eq!(public_needs(&row(true), Some(&renamed)), (true, false));
        assert_eq!(public_needs(&row(true), None), (true, true));
        assert_eq!(row(false).source().transport, RtspTransport::Udp);
    }
}
