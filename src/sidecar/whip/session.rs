//! The session document behind a WHIP session: who publishes, the offer written as a browser
//! would write it, the wait for the broadcast's answer, closing, and the sweep of ended rows.

use std::time::{Duration, Instant, SystemTime};

use axum::http::StatusCode;
use firestore::FirestoreTimestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::super::AppState;
use super::super::auth::user_for_token;
use super::super::join::{JoinRequest, join_as, room_fields, unix_now};
use super::super::problem::Problem;
use super::super::turn::IceServer;
use super::problems::{problem, refusal, token_problem, unauthorized};
use super::protocol::is_join_token;
use super::sdp::published;
use crate::docdb::{self, DocRef};
use crate::jointoken::VerifyingKeys;
use crate::signalling::protocol::{ROOMS, SESSIONS};

/// `expiresAt` of a new session document (the broadcast moves it while the session lives).
pub(super) const SESSION_TTL: Duration = Duration::from_secs(3600);
/// `Retry-After` when no answer came in time.
pub(super) const RETRY_NO_ANSWER_SECS: u64 = 2;

/// What the session document says about the offer of `revision`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pending,
    Answer(String),
    Refused { code: String, message: String },
}

pub fn outcome(doc: &Value, revision: i64) -> Outcome {
    let state = doc["state"].as_str().unwrap_or_default();
    let is = |v: &Value| v.as_i64() == Some(revision) || v.as_f64() == Some(revision as f64);
    if is(&doc["answer"]["revision"])
        && matches!(state, "answered" | "connected")
        && let Some(sdp) = doc["answer"]["sdp"].as_str()
    {
        return Outcome::Answer(sdp.to_owned());
    }
    // A refused re-offer leaves the session as it was, with the error naming its revision.
    if matches!(state, "failed" | "closed") || is(&doc["error"]["revision"]) {
        return Outcome::Refused {
            code: doc["error"]["code"].as_str().unwrap_or("closed").to_owned(),
            message: doc["error"]["message"]
                .as_str()
                .unwrap_or("the session ended before it was answered")
                .to_owned(),
        };
    }
    Outcome::Pending
}

/// Who publishes: the session document's `uid`, `displayName` and `token`.
pub(super) struct Publisher {
    pub(super) uid: String,
    pub(super) name: String,
    pub(super) token: String,
    pub(super) ice_servers: Vec<IceServer>,
    pub(super) traceparent: Option<String>,
}

/// The publisher the bearer stands for (401, 403, or 404 for a room the database lacks).
pub(super) async fn admit(
    state: &AppState,
    room: Uuid,
    token: &str,
    request: JoinRequest,
) -> Result<Publisher, Problem> {
    if is_join_token(token) {
        let keys = VerifyingKeys::from_jwks(&state.keys.jwks()).map_err(|e| {
            tracing::error!("{e}");
            Problem::internal()
        })?;
        let claims = keys
            .verify(token, &room.to_string(), unix_now())
            .map_err(token_problem)?;
        let fields = room_fields(state, room).await?;
        super::super::firestore_sync::ensure_room(&state.firestore, &room.to_string(), &fields)
            .await?;
        return Ok(Publisher {
            ice_servers: state.config.ice.for_user(&claims.sub, unix_now()),
            uid: claims.sub,
            name: claims.name,
            token: token.to_owned(),
            traceparent: crate::telemetry::current_traceparent(),
        });
    }
    let user = user_for_token(state, token)
        .await?
        .ok_or_else(unauthorized)?;
    let fields = room_fields(state, room).await?;
    let join = join_as(state, &user, room, fields, request).await?;
    Ok(Publisher {
        uid: user.firebase_uid,
        name: join.display_name,
        token: join.token,
        ice_servers: join.ice_servers,
        traceparent: join.traceparent,
    })
}

/// The first write of a session document (docs/signalling.md, "Joining").
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct NewSession {
    v: i64,
    display_name: String,
    uid: String,
    token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<String>,
    offer: Value,
    state: String,
    media: Value,
    /// A WHEP viewer: whom it watches.
    #[serde(skip_serializing_if = "Option::is_none")]
    watch: Option<String>,
    created_at: FirestoreTimestamp,
    expires_at: FirestoreTimestamp,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Closing {
    state: String,
    expires_at: FirestoreTimestamp,
}

pub(super) fn terminal(doc: &Value) -> bool {
    matches!(doc["state"].as_str(), Some("closed" | "failed"))
}

/// Leaves the session (`state: "closed"`) unless it already ended.
pub(super) async fn close_session(
    state: &AppState,
    room: &str,
    session: &str,
) -> Result<(), Problem> {
    let parent = state.firestore.parent_path(ROOMS, room)?.to_string();
    let doc = DocRef {
        parent: &parent,
        collection: SESSIONS,
        id: session,
    };
    let write = Closing {
        state: "closed".into(),
        expires_at: docdb::timestamp(SystemTime::now() + crate::signalling::store::ENDED_TTL),
    };
    docdb::update_if(
        &state.firestore,
        &doc,
        &["state", "expiresAt"],
        &write,
        |d| !terminal(d),
    )
    .await?;
    Ok(())
}

pub(super) async fn read_session(
    state: &AppState,
    room: &str,
    session: &str,
) -> Result<Option<Value>, Problem> {
    let parent = state.firestore.parent_path(ROOMS, room)?.to_string();
    let doc = DocRef {
        parent: &parent,
        collection: SESSIONS,
        id: session,
    };
    Ok(docdb::get(&state.firestore, &doc).await?)
}

/// How long to wait before the `n`th read of the document: the broadcast answers in about
/// 100 ms, so often at first, then every quarter second.
pub(super) fn poll_delay(n: u32) -> Duration {
    match n {
        0 => Duration::from_millis(25),
        1..=40 => Duration::from_millis(50),
        _ => Duration::from_millis(250),
    }
}

/// Writes the session document and waits for the answer to its offer.
pub(super) async fn negotiate(
    state: &AppState,
    room: &str,
    session: &str,
    publisher: &Publisher,
    offer: &str,
    watch: Option<&str>,
) -> Result<String, Problem> {
    let now = SystemTime::now();
    let (audio, video) = published(offer);
    let doc = NewSession {
        v: 1,
        display_name: publisher.name.clone(),
        uid: publisher.uid.clone(),
        token: publisher.token.clone(),
        traceparent: publisher.traceparent.clone(),
        offer: json!({"sdp": offer, "revision": 1}),
        state: "offered".into(),
        media: json!({"audio": audio, "video": video}),
        watch: watch.map(str::to_owned),
        created_at: docdb::timestamp(now),
        expires_at: docdb::timestamp(now + SESSION_TTL),
    };
    let parent = state.firestore.parent_path(ROOMS, room)?.to_string();
    docdb::timed(
        state
            .firestore
            .fluent()
            .insert()
            .into(SESSIONS)
            .document_id(session)
            .parent(&parent)
            .object(&doc)
            .execute::<()>(),
    )
    .await?;
    docdb::meter::wrote(1);
    await_answer(state, room, session, 1).await
}

/// Reads the session document until the offer of `revision` is answered (or refused).
pub(super) async fn await_answer(
    state: &AppState,
    room: &str,
    session: &str,
    revision: i64,
) -> Result<String, Problem> {
    let deadline = Instant::now() + state.config.whip_answer;
    for n in 0.. {
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(poll_delay(n).min(left)).await;
        match read_session(state, room, session)
            .await?
            .as_ref()
            .map(|d| outcome(d, revision))
        {
            Some(Outcome::Answer(sdp)) => return Ok(sdp),
            Some(Outcome::Refused { code, message }) => return Err(refusal(&code, &message)),
            Some(Outcome::Pending) => {}
            None => {
                return Err(refusal(
                    "session-lost",
                    "the session document was deleted before it was answered",
                ));
            }
        }
        if left.is_zero() {
            break;
        }
    }
    let mut p = problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "no-answer",
        "No answer in time",
        &format!(
            "no broadcast instance answered within {} ms; try again",
            state.config.whip_answer.as_millis()
        ),
    );
    p.retry_after = Some(RETRY_NO_ANSWER_SECS);
    Err(p)
}

/// Removes what a failed POST left: the session document is closed, the row deleted.
pub(super) async fn clean_up(state: &AppState, room: Uuid, session: &str) {
    if let Err(e) = close_session(state, &room.to_string(), session).await {
        tracing::warn!(%room, session, "cannot close a failed WHIP session: {}", e.detail);
    }
    if let Err(e) = sqlx::query("DELETE FROM whip_sessions WHERE room_id = $1 AND session_id = $2")
        .bind(room)
        .bind(session)
        .execute(&state.db)
        .await
    {
        tracing::warn!(%room, session, "cannot forget a failed WHIP session: {e}");
    }
}

/// Forgets rows of sessions that ended without a DELETE (the publisher vanished, the room
/// moved, the account was erased): rows older than ten minutes whose document is gone or
/// ended. Returns how many it removed.
pub async fn sweep(state: &AppState) -> anyhow::Result<usize> {
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT room_id, session_id FROM whip_sessions WHERE created_at < now() - interval '10 minutes' ORDER BY created_at LIMIT 500",
    )
    .fetch_all(&state.db)
    .await?;
    let mut removed = 0;
    for (room, session) in rows {
        let doc = read_session(state, &room.to_string(), &session)
            .await
            .map_err(|p| anyhow::anyhow!("{}", p.detail))?;
        if doc.as_ref().is_none_or(terminal) {
            sqlx::query("DELETE FROM whip_sessions WHERE room_id = $1 AND session_id = $2")
                .bind(room)
                .bind(&session)
                .execute(&state.db)
                .await?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn outcomes_follow_the_document() {
        assert_eq!(outcome(&json!({"state": "offered"}), 1), Outcome::Pending);
        assert_eq!(
            outcome(&json!({"state": "answering", "answer": null}), 1),
            Outcome::Pending
        );
        assert_eq!(
            outcome(
                &json!({"state": "answered", "answer": {"sdp": "v=0", "revision": 1}}),
                1
            ),
            Outcome::Answer("v=0".into())
        );
        assert_eq!(
            outcome(
                &json!({"state": "failed", "error": {"code": "room-full", "message": "full", "revision": 1}}),
                1
            ),
            Outcome::Refused {
                code: "room-full".into(),
                message: "full".into()
            }
        );
        assert!(matches!(
            outcome(&json!({"state": "closed"}), 1),
            Outcome::Refused { .. }
        ));
        // A re-offer (an ICE restart): the earlier answer is not its answer; a refusal
        // names its revision and leaves the session connected.
        let live = json!({"state": "connected", "answer": {"sdp": "v=0", "revision": 1}});
        assert_eq!(outcome(&live, 2), Outcome::Pending);
        let refused = json!({"state": "connected", "answer": {"sdp": "v=0", "revision": 1},
            "error": {"code": "sdp-malformed", "message": "bad", "revision": 2}});
        assert!(matches!(outcome(&refused, 2), Outcome::Refused { .. }));
        assert_eq!(outcome(&refused, 1), Outcome::Answer("v=0".into()));
    }
}
