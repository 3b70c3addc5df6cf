//! The roster side of the store: `rooms/{room}/participants/{session}` (who is in the room,
//! what they publish and have on, their link quality) and `rooms/{room}/members/{uid}` (who may
//! read the roster and the chat).

use std::time::SystemTime;

use firestore::errors::FirestoreError;
use firestore::{FirestoreTimestamp, FirestoreWritePrecondition};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Store, timestamp};
use crate::media::{Roster, SessionKey};
use crate::signalling::protocol::{MEMBERS, PARTICIPANTS, ROOMS};

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ParticipantDoc {
    display_name: String,
    uid: Option<String>,
    tracks: Vec<Value>,
    /// Which of its tracks the participant has on (the session document's `media`).
    media: Value,
    instance: String,
    joined_at: FirestoreTimestamp,
    updated_at: FirestoreTimestamp,
    expires_at: FirestoreTimestamp,
}

impl Store {
    #[allow(clippy::too_many_arguments)]
    pub async fn put_participant(
        &self,
        key: &SessionKey,
        roster: &Roster,
        media: &Value,
        uid: Option<String>,
        joined: SystemTime,
        expires: SystemTime,
        now: SystemTime,
    ) -> Result<(), FirestoreError> {
        let parent = self.db.parent_path(ROOMS, &key.room)?;
        let doc = ParticipantDoc {
            display_name: roster.display_name.clone(),
            uid,
            tracks: roster
                .tracks
                .iter()
                .map(|(mid, kind)| json!({"mid": mid, "kind": kind.as_str()}))
                .collect(),
            media: media.clone(),
            instance: self.instance.clone(),
            joined_at: timestamp(joined),
            updated_at: timestamp(now),
            expires_at: timestamp(expires),
        };
        self.db
            .fluent()
            .update()
            .in_col(PARTICIPANTS)
            .document_id(&key.session)
            .parent(&parent)
            .object(&doc)
            .execute::<()>()
            .await
    }

    /// Updates some fields of the session's roster entry (media state, quality).
    pub async fn update_participant(
        &self,
        key: &SessionKey,
        fields: Value,
        mask: &[&str],
    ) -> Result<(), FirestoreError> {
        let parent = self.db.parent_path(ROOMS, &key.room)?;
        let result = self
            .db
            .fluent()
            .update()
            .fields(mask.iter().copied())
            .in_col(PARTICIPANTS)
            .precondition(FirestoreWritePrecondition::Exists(true))
            .document_id(&key.session)
            .parent(&parent)
            .object(&fields)
            .execute::<()>()
            .await;
        match result {
            Err(FirestoreError::DataNotFoundError(_)) => Ok(()),
            other => other,
        }
    }

    /// `rooms/{room}/members/{uid}`: the rules let members read the roster and the chat.
    pub async fn put_member(
        &self,
        room: &str,
        uid: &str,
        now: SystemTime,
    ) -> Result<(), FirestoreError> {
        let parent = self.db.parent_path(ROOMS, room)?;
        #[derive(Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Member {
            uid: String,
            since: FirestoreTimestamp,
        }
        self.db
            .fluent()
            .update()
            .in_col(MEMBERS)
            .document_id(uid)
            .parent(&parent)
            .object(&Member {
                uid: uid.to_owned(),
                since: timestamp(now),
            })
            .execute::<()>()
            .await
    }

    /// Removes the member unless another of its sessions is still in the room.
    pub async fn remove_member_unless_present(
        &self,
        key: &SessionKey,
        uid: &str,
    ) -> Result<(), FirestoreError> {
        let parent = self.db.parent_path(ROOMS, &key.room)?;
        let others = self
            .db
            .fluent()
            .select()
            .from(PARTICIPANTS)
            .parent(&parent)
            .filter(|q| q.for_all([q.field("uid").eq(uid)]))
            .query()
            .await?;
        if others
            .iter()
            .any(|d| !d.name.ends_with(&format!("/{}", key.session)))
        {
            return Ok(());
        }
        self.db
            .fluent()
            .delete()
            .from(MEMBERS)
            .parent(&parent)
            .document_id(uid)
            .execute()
            .await
    }

    pub async fn delete_participant(&self, key: &SessionKey) -> Result<(), FirestoreError> {
        let parent = self.db.parent_path(ROOMS, &key.room)?;
        self.db
            .fluent()
            .delete()
            .from(PARTICIPANTS)
            .parent(&parent)
            .document_id(&key.session)
            .execute()
            .await
    }
}
