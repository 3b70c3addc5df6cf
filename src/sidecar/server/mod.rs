//! The server API for applications (`/v1/server/…`), called by an application's own backend
//! with an API key (`super::apikeys`): which rooms have a call and who is in them, removing a
//! participant (their session ends with `removed`), and join tokens for the application's own
//! users, whoever their identity provider is (docs/sidecar.md, "Server API").

pub(super) mod roster;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::apikeys::ApiKey;
use super::auth::ApiJson;
use super::join::{Join, issue, room_fields};
use super::problem::{ApiResult, Problem, ProblemDoc};
use super::rooms::{is_session_id, parse_id};
use crate::jointoken::Grants;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerRoom {
    pub id: String,
    pub name: String,
    /// Roster entries now: people, and IP cameras being pulled for them.
    pub participants: usize,
    /// Someone is in the room (the call that `room.started` began and `room.finished` ends).
    pub active_call: bool,
}

#[derive(Serialize, ToSchema)]
pub struct ServerRoomList {
    pub rooms: Vec<ServerRoom>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    /// The session document's id (what `DELETE …/participants/{session}` takes).
    pub session_id: String,
    pub display_name: String,
    /// The join token's user (`app:<user>` for tokens minted here), or null.
    pub uid: Option<String>,
    /// An IP camera of the room rather than a person.
    pub camera: bool,
    /// The broadcast instance serving it.
    pub instance: Option<String>,
    /// `[{mid, kind, source}]`, as in the roster (docs/signalling.md).
    #[schema(value_type = Vec<Object>)]
    pub tracks: Value,
    /// Which of its tracks it has on (`{audio, video}`).
    #[schema(value_type = Object)]
    pub media: Value,
    pub joined_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ParticipantList {
    pub participants: Vec<Participant>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrackChange {
    /// Muted by the application: the server stops forwarding the track (the participant
    /// cannot undo it); `false` lets it through again.
    muted: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Track {
    pub mid: String,
    /// `audio` or `video`.
    pub kind: String,
    /// `camera`, `microphone`, `screen` or `screen-audio`.
    pub source: String,
    pub muted: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TokenRequest {
    /// The application's id for its user (1–100 of `A–Z a–z 0–9 . _ - @ :`); the token's uid is
    /// `app:` + it.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[A-Za-z0-9._@:-]{1,100}$"
    )]
    user: String,
    /// Shown to the others; 1–64 characters.
    #[schema(min_length = 1, max_length = 64)]
    display_name: String,
    /// May publish (default true).
    publish: Option<bool>,
    /// May receive (default true).
    subscribe: Option<bool>,
}

/// Every room, with whether a call is on and how many are in it.
#[utoipa::path(get, path = "/v1/server/rooms", operation_id = "serverListRooms", tag = "server", security(("apiKey" = [])),
    responses((status = 200, body = ServerRoomList)))]
pub async fn rooms(State(state): State<AppState>, key: ApiKey) -> ApiResult<Json<ServerRoomList>> {
    key.require("rooms:read")?;
    let rows: Vec<(uuid::Uuid, String)> =
        sqlx::query_as("SELECT id, name FROM rooms ORDER BY created_at, name")
            .fetch_all(&state.db)
            .await?;
    let ids: Vec<String> = rows.iter().map(|r| r.0.to_string()).collect();
    let counts = super::firestore_sync::participant_counts(&state.firestore, &ids).await?;
    let rooms = rows
        .into_iter()
        .map(|(id, name)| {
            let n = counts.get(&id.to_string()).copied().unwrap_or(0);
            ServerRoom {
                id: id.to_string(),
                name,
                participants: n,
                active_call: n > 0,
            }
        })
        .collect();
    Ok(Json(ServerRoomList { rooms }))
}

/// Who is in the room now.
#[utoipa::path(get, path = "/v1/server/rooms/{id}/participants", operation_id = "serverListParticipants", tag = "server", security(("apiKey" = [])),
    params(("id" = String, Path, description = "The room's id (a UUID)")),
    responses((status = 200, body = ParticipantList)))]
pub async fn participants(
    State(state): State<AppState>,
    key: ApiKey,
    Path(id): Path<String>,
) -> ApiResult<Json<ParticipantList>> {
    key.require("rooms:read")?;
    let room = parse_id(&id)?;
    room_fields(&state, room).await?;
    let entries = roster::entries(&state.firestore, &room.to_string()).await?;
    let text = |d: &Value, f: &str| d.get(f).and_then(Value::as_str).map(str::to_owned);
    let participants = entries
        .into_iter()
        .map(|(session, d)| Participant {
            camera: d.pointer("/media/camera") == Some(&Value::Bool(true))
                || session.starts_with("camera-"),
            display_name: text(&d, "displayName").unwrap_or_default(),
            uid: text(&d, "uid"),
            instance: text(&d, "instance"),
            tracks: d.get("tracks").cloned().unwrap_or(Value::Array(vec![])),
            media: d.get("media").cloned().unwrap_or(Value::Null),
            joined_at: text(&d, "joinedAt"),
            session_id: session,
        })
        .collect();
    Ok(Json(ParticipantList { participants }))
}

/// Removes a participant: their session ends with the error code `removed` (the client sees it
/// in its session document; docs/signalling.md) and they leave the room.
#[utoipa::path(delete, path = "/v1/server/rooms/{id}/participants/{session}", operation_id = "serverRemoveParticipant", tag = "server", security(("apiKey" = [])),
    params(("id" = String, Path, description = "The room's id (a UUID)"), ("session" = String, Path, description = "The participant's session id")),
    responses((status = 204, description = "Their session is ended"),
        (status = 404, description = "No such room, or no live session with that id", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn remove(
    State(state): State<AppState>,
    key: ApiKey,
    Path((id, session)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    key.require("participants:write")?;
    let room = parse_id(&id)?;
    room_fields(&state, room).await?;
    live_session_id(&session)?;
    let now = std::time::SystemTime::now();
    if !roster::remove(&state.firestore, &room.to_string(), &session, now).await? {
        return Err(Problem::not_found("live session"));
    }
    tracing::info!(%room, %session, key = %key.id, "participant removed by the application");
    Ok(StatusCode::NO_CONTENT)
}

/// A session id that can name a person's live session (404 otherwise: cameras have none).
fn live_session_id(session: &str) -> Result<(), Problem> {
    if !is_session_id(session) || session.starts_with("camera-") {
        return Err(Problem::not_found("live session"));
    }
    Ok(())
}

/// Mutes (or unmutes) one of a participant's published tracks: the broadcast stops forwarding
/// it and the roster shows it muted (`tracks[].muted`, and `media` off when every track of the
/// kind is). The participant cannot undo it; the next `PATCH` with `muted: false` does.
#[utoipa::path(patch, path = "/v1/server/rooms/{id}/participants/{session}/tracks/{mid}", operation_id = "serverMuteTrack", tag = "server", security(("apiKey" = [])), request_body = TrackChange,
    params(("id" = String, Path, description = "The room's id (a UUID)"), ("session" = String, Path, description = "The participant's session id"), ("mid" = String, Path, description = "The track's `mid` (the roster's `tracks[].mid`)")),
    responses((status = 200, body = Track, description = "The track as it is now (the roster follows within a moment)"),
        (status = 404, description = "No such room, live session or published track", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn mute(
    State(state): State<AppState>,
    key: ApiKey,
    Path((id, session, mid)): Path<(String, String, String)>,
    ApiJson(body): ApiJson<TrackChange>,
) -> ApiResult<Json<Track>> {
    key.require("participants:write")?;
    let room = parse_id(&id)?;
    room_fields(&state, room).await?;
    live_session_id(&session)?;
    let room = room.to_string();
    let entry = roster::entry(&state.firestore, &room, &session)
        .await?
        .ok_or_else(|| Problem::not_found("live session"))?;
    let track = entry
        .get("tracks")
        .and_then(Value::as_array)
        .and_then(|t| t.iter().find(|t| t["mid"].as_str() == Some(mid.as_str())))
        .ok_or_else(|| Problem::not_found("published track"))?;
    let text = |f: &str| track[f].as_str().unwrap_or_default().to_owned();
    let now = std::time::SystemTime::now();
    if !roster::set_muted(&state.firestore, &room, &session, &mid, body.muted, now).await? {
        return Err(Problem::not_found("live session"));
    }
    tracing::info!(%room, %session, mid, muted = body.muted, key = %key.id, "track muted by the application");
    Ok(Json(Track {
        kind: text("kind"),
        source: text("source"),
        muted: body.muted,
        mid,
    }))
}

/// A join token for one of the application's users (uid `app:<user>`), with the Firebase
/// credentials that user's client signs in with.
#[utoipa::path(post, path = "/v1/server/rooms/{id}/tokens", operation_id = "serverMintToken", tag = "server", security(("apiKey" = [])), request_body = TokenRequest,
    params(("id" = String, Path, description = "The room's id (a UUID)")),
    responses((status = 201, body = Join)))]
pub async fn token(
    State(state): State<AppState>,
    key: ApiKey,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TokenRequest>,
) -> ApiResult<(StatusCode, Json<Join>)> {
    key.require("tokens:write")?;
    let room = parse_id(&id)?;
    let fields = room_fields(&state, room).await?;
    let user_ok = !body.user.is_empty()
        && body.user.len() <= 100
        && body
            .user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@:-".contains(c));
    if !user_ok {
        return Err(Problem::validation(
            "`user` has 1–100 of A–Z a–z 0–9 . _ - @ :",
        ));
    }
    let name = crate::text::label("displayName", &body.display_name, 64)
        .map_err(|e| Problem::validation(e.to_string()))?;
    let id = room.to_string();
    super::firestore_sync::ensure_room(&state.firestore, &id, &fields).await?;
    let grants = Grants {
        publish: body.publish.unwrap_or(true),
        subscribe: body.subscribe.unwrap_or(true),
    };
    let join = issue(&state, &id, &format!("app:{}", body.user), &name, grants).await?;
    Ok((StatusCode::CREATED, Json(join)))
}
