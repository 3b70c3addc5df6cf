//! The roster side of the store: `rooms/{room}/participants/{session}` (who is in the room,
//! what they publish and have on, their link quality) and `rooms/{room}/members/{uid}` (who may
//! read the roster and the chat).

use std::time::SystemTime;

use firestore::{FirestoreTimestamp, FirestoreWritePrecondition};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Store;
use crate::docdb::{self, DbError, DocRef, doc_id, meter, timestamp};
use crate::media::{Roster, SessionKey, TrackSource};
use crate::signalling::protocol::{LIVE, MEMBERS, PARTICIPANTS, SPEAKER_DOC};

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ParticipantDoc {
    display_name: String,
    uid: Option<String>,
    tracks: Vec<Value>,
    /// Which of its tracks the participant has on (the session document's `media`).
    media: Value,
    /// Since when the participant's hand is raised (null: it is not).
    hand_raised_at: Option<FirestoreTimestamp>,
    /// A viewer session: whom it watches (clients show no tile for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    watching: Option<String>,
    instance: String,
    joined_at: FirestoreTimestamp,
    updated_at: FirestoreTimestamp,
    expires_at: FirestoreTimestamp,
}

/// One roster entry as the session task writes it.
pub struct ParticipantEntry<'a> {
    pub roster: &'a Roster,
    pub media: &'a Value,
    pub hand: Option<SystemTime>,
    /// Published mids the application muted.
    pub muted: &'a std::collections::BTreeSet<String>,
    pub uid: Option<String>,
    pub joined: SystemTime,
    pub expires: SystemTime,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpeakerDoc {
    session: Option<String>,
    display_name: Option<String>,
    updated_at: FirestoreTimestamp,
}

impl Store {
    /// Names the room's dominant speaker (`None`: nobody) in `rooms/{room}/live/speaker`.
    pub async fn write_speaker(
        &self,
        room: &str,
        speaker: Option<(&str, &str)>,
        now: SystemTime,
    ) -> Result<(), DbError> {
        let doc = SpeakerDoc {
            session: speaker.map(|(s, _)| s.to_owned()),
            display_name: speaker.map(|(_, n)| n.to_owned()),
            updated_at: timestamp(now),
        };
        self.put_room_doc(room, LIVE, SPEAKER_DOC, &doc).await
    }

    /// Writes (creates or replaces) `rooms/{room}/{collection}/{id}`.
    async fn put_room_doc<T: Serialize + for<'de> Deserialize<'de> + Sync + Send>(
        &self,
        room: &str,
        collection: &str,
        id: &str,
        doc: &T,
    ) -> Result<(), DbError> {
        let parent = self.parent(room)?;
        let result = docdb::timed(
            self.db
                .fluent()
                .update()
                .in_col(collection)
                .document_id(id)
                .parent(&parent)
                .object(doc)
                .execute::<()>(),
        )
        .await;
        meter::wrote(1);
        result
    }

    pub async fn put_participant(
        &self,
        key: &SessionKey,
        entry: &ParticipantEntry<'_>,
        now: SystemTime,
    ) -> Result<(), DbError> {
        let doc = ParticipantDoc {
            display_name: entry.roster.display_name.clone(),
            uid: entry.uid.clone(),
            tracks: entry
                .roster
                .tracks
                .iter()
                .map(|(mid, kind)| {
                    let source = entry.roster.sources.get(mid).copied();
                    let source = source.unwrap_or(TrackSource::default_for(*kind));
                    json!({
                        "mid": mid,
                        "kind": kind.as_str(),
                        "source": source.as_str(),
                        "muted": entry.muted.contains(mid),
                    })
                })
                .collect(),
            media: entry.media.clone(),
            hand_raised_at: entry.hand.map(timestamp),
            watching: entry.roster.watching.clone(),
            instance: self.instance.clone(),
            joined_at: timestamp(entry.joined),
            updated_at: timestamp(now),
            expires_at: timestamp(entry.expires),
        };
        self.put_room_doc(&key.room, PARTICIPANTS, &key.session, &doc)
            .await
    }

    /// Sets or clears the roster entry's `handRaisedAt` (a Firestore timestamp).
    pub async fn set_hand(
        &self,
        key: &SessionKey,
        raised: Option<SystemTime>,
    ) -> Result<(), DbError> {
        #[derive(Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Hand {
            hand_raised_at: Option<FirestoreTimestamp>,
        }
        let hand = Hand {
            hand_raised_at: raised.map(timestamp),
        };
        self.update_participant(key, &hand, &["handRaisedAt"]).await
    }

    /// Updates some fields of the session's roster entry (media state, quality).
    pub async fn update_participant<T>(
        &self,
        key: &SessionKey,
        fields: &T,
        mask: &[&str],
    ) -> Result<(), DbError>
    where
        T: Serialize + for<'de> Deserialize<'de> + Sync + Send,
    {
        let parent = self.parent(&key.room)?;
        let result = docdb::timed(
            self.db
                .fluent()
                .update()
                .fields(mask.iter().copied())
                .in_col(PARTICIPANTS)
                .precondition(FirestoreWritePrecondition::Exists(true))
                .document_id(&key.session)
                .parent(&parent)
                .object(fields)
                .execute::<()>(),
        )
        .await;
        meter::wrote(1);
        match result {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }

    /// `rooms/{room}/members/{uid}`: the rules let members read the roster and the chat.
    pub async fn put_member(&self, room: &str, uid: &str, now: SystemTime) -> Result<(), DbError> {
        let parent = self.parent(room)?;
        #[derive(Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Member {
            uid: String,
            since: FirestoreTimestamp,
        }
        let result = docdb::timed(
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
                .execute::<()>(),
        )
        .await;
        meter::wrote(1);
        result
    }

    /// Removes the member unless another of its sessions is still in the room.
    pub async fn remove_member_unless_present(
        &self,
        key: &SessionKey,
        uid: &str,
    ) -> Result<(), DbError> {
        let parent = self.parent(&key.room)?;
        let others = docdb::timed(
            self.db
                .fluent()
                .select()
                .from(PARTICIPANTS)
                .parent(&parent)
                .filter(|q| q.for_all([q.field("uid").eq(uid)]))
                .query(),
        )
        .await?;
        meter::read(others.len().max(1));
        if others.iter().any(|d| doc_id(&d.name) != key.session) {
            return Ok(());
        }
        docdb::delete(
            &self.db,
            &DocRef {
                parent: &parent,
                collection: MEMBERS,
                id: uid,
            },
        )
        .await
    }

    pub async fn delete_participant(&self, key: &SessionKey) -> Result<(), DbError> {
        let parent = self.parent(&key.room)?;
        docdb::delete(
            &self.db,
            &DocRef {
                parent: &parent,
                collection: PARTICIPANTS,
                id: &key.session,
            },
        )
        .await
    }
}
