//! Join tokens for a room, the JWKS that verifies them, and what the browser needs to talk to
//! Firestore as the user.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::auth::CurrentUser;
use super::firebase_auth::FirebaseCredentials;
use super::firestore_sync;
use super::problem::{ApiResult, Problem};
use super::rooms::parse_id;
use crate::jointoken::{AUDIENCE, Grants, ISSUER, JoinClaims};

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JoinRequest {
    /// Shown to the others (default: your username); 1–64 characters.
    #[schema(min_length = 1, max_length = 64)]
    display_name: Option<String>,
    /// May publish (default true).
    publish: Option<bool>,
    /// May receive (default true).
    subscribe: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct JoinGrants {
    pub publish: bool,
    pub subscribe: bool,
}

/// Write `token` into the session document (docs/signalling.md).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Join {
    pub room_id: String,
    pub token: String,
    /// W3C trace context to write into the session document (present when tracing exports).
    pub traceparent: Option<String>,
    /// When the token expires (Unix seconds).
    pub expires_at: i64,
    pub display_name: String,
    pub grants: JoinGrants,
    /// The collection to write the session document into.
    pub sessions: String,
    pub firebase: FirebaseCredentials,
    /// `RTCConfiguration.iceServers` for this participant: STUN, and TURN with credentials
    /// valid for `FIRESFU_TURN_TTL_SECS` (empty when the deployment has neither).
    pub ice_servers: Vec<super::turn::IceServer>,
}

/// A join token for `room`, plus the Firebase credentials for `uid`.
pub async fn issue(
    state: &AppState,
    room: &str,
    uid: &str,
    name: &str,
    grants: Grants,
) -> Result<Join, Problem> {
    let now = unix_now();
    let claims = JoinClaims {
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        sub: uid.into(),
        room: room.into(),
        name: name.into(),
        grants,
        iat: now,
        exp: now + state.config.join_token_ttl.as_secs() as i64,
        jti: Uuid::new_v4().to_string(),
    };
    let token = state.keys.issue(&claims).map_err(|e| {
        tracing::error!("{e}");
        Problem::internal()
    })?;
    Ok(Join {
        room_id: room.to_owned(),
        token,
        // Written by the client into its session document, so the broadcast instance's join
        // span continues this request's trace.
        traceparent: crate::telemetry::current_traceparent(),
        expires_at: claims.exp,
        display_name: name.to_owned(),
        grants: JoinGrants {
            publish: grants.publish,
            subscribe: grants.subscribe,
        },
        sessions: format!("rooms/{room}/sessions"),
        firebase: state.config.firebase.for_uid(uid, now).await?,
        ice_servers: state.config.ice.for_user(uid, now),
    })
}

/// A join token for the room.
#[utoipa::path(post, path = "/v1/rooms/{id}/join", operation_id = "joinRoom", tag = "rooms", security(("bearer" = [])),
    params(("id" = String, Path, description = "The room's id (a UUID)")),
    request_body(content = Option<JoinRequest>, description = "Optional: no body means the defaults"),
    responses((status = 200, body = Join), (status = 404, description = "No such room", body = super::problem::ProblemDoc, content_type = "application/problem+json")))]
pub async fn join(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Join>> {
    let room = parse_id(&id)?;
    let fields = room_fields(&state, room).await?;
    // The body is optional: no body (zero bytes) means the defaults; anything else is JSON.
    let req: JoinRequest = if body.is_empty() {
        JoinRequest::default()
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Null) => JoinRequest::default(),
            Ok(value) => super::auth::from_object(value)?,
            Err(e) => return Err(super::auth::malformed(e.to_string())),
        }
    };
    Ok(Json(join_as(&state, &user, room, fields, req).await?))
}

impl JoinRequest {
    /// Publish only, under the user's name: what a WHIP publisher gets.
    pub fn publish_only() -> JoinRequest {
        JoinRequest {
            display_name: None,
            publish: Some(true),
            subscribe: Some(false),
        }
    }

    /// What a WHEP viewer joins with: receiving only.
    pub fn view_only() -> JoinRequest {
        JoinRequest {
            display_name: None,
            publish: Some(false),
            subscribe: Some(true),
        }
    }
}

/// The room's row (404 when there is none).
pub async fn room_fields(
    state: &AppState,
    room: Uuid,
) -> Result<firestore_sync::RoomFields, Problem> {
    let (name, max_presenters): (String, i32) =
        sqlx::query_as("SELECT name, max_presenters FROM rooms WHERE id = $1")
            .bind(room)
            .fetch_optional(&state.db)
            .await?
            .ok_or_else(|| Problem::not_found("room"))?;
    Ok(firestore_sync::RoomFields {
        name,
        max_presenters,
    })
}

/// A join token for `user` in `room` (whose row is `fields`): POST /v1/rooms/{id}/join, and
/// WHIP publishers signed in with an access token.
pub async fn join_as(
    state: &AppState,
    user: &CurrentUser,
    room: Uuid,
    fields: firestore_sync::RoomFields,
    req: JoinRequest,
) -> Result<Join, Problem> {
    let id = room.to_string();
    let name = req.display_name.unwrap_or_else(|| user.username.clone());
    let name = crate::text::label("displayName", &name, 64)
        .map_err(|e| Problem::validation(e.to_string()))?;
    // PostgreSQL is the source of truth for rooms: a room whose Firestore document was lost
    // (a mistaken deletion, a restore) gets it back before anyone is sent to join it.
    firestore_sync::ensure_room(&state.firestore, &id, &fields).await?;
    let grants = Grants {
        publish: req.publish.unwrap_or(true),
        subscribe: req.subscribe.unwrap_or(true),
    };
    issue(state, &id, &user.firebase_uid, &name, grants).await
}

/// Public keys verifying join tokens (JWKS, Ed25519).
#[utoipa::path(get, path = "/.well-known/jwks.json", operation_id = "jwks", tag = "tokens",
    responses((status = 200, description = "The JWKS", body = Object)))]
pub async fn jwks(State(state): State<AppState>) -> Json<Value> {
    Json(state.keys.jwks())
}
