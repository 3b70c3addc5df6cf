//! Join tokens for a room, the JWKS that verifies them, and what the browser needs to talk to
//! Firestore as the user.

use std::path::Path as FsPath;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::Json;
use axum::extract::{Path, State};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::AppState;
use super::auth::CurrentUser;
use super::problem::{ApiResult, Problem};
use super::rooms::parse_id;
use crate::jointoken::{AUDIENCE, Grants, ISSUER, JoinClaims};

/// How the browser authenticates to Firestore.
pub enum FirebaseTokens {
    /// Development: the emulator accepts a mock token naming the uid
    /// (`connectFirestoreEmulator(db, host, port, {mockUserToken: {user_id: uid}})`).
    Emulator,
    /// Production: a Firebase custom token signed with a service account, for
    /// `signInWithCustomToken`.
    ServiceAccount { email: String, key: EncodingKey },
}

const CUSTOM_TOKEN_AUDIENCE: &str =
    "https://identitytoolkit.googleapis.com/google.identity.identitytoolkit.v1.IdentityToolkit";

impl FirebaseTokens {
    pub fn service_account(path: &FsPath) -> anyhow::Result<FirebaseTokens> {
        let json: Value = serde_json::from_str(
            &std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        )?;
        let email = json["client_email"]
            .as_str()
            .context("no client_email in the service account")?
            .to_owned();
        let pem = json["private_key"]
            .as_str()
            .context("no private_key in the service account")?;
        Ok(FirebaseTokens::ServiceAccount {
            email,
            key: EncodingKey::from_rsa_pem(pem.as_bytes())?,
        })
    }

    pub fn for_uid(&self, uid: &str, now: i64) -> Result<Value, Problem> {
        match self {
            FirebaseTokens::Emulator => Ok(json!({"uid": uid, "emulator": true})),
            FirebaseTokens::ServiceAccount { email, key } => {
                let claims = json!({"iss": email, "sub": email, "aud": CUSTOM_TOKEN_AUDIENCE,
                                    "iat": now, "exp": now + 3600, "uid": uid});
                let token = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, key)
                    .map_err(|e| {
                        tracing::error!("cannot sign a Firebase custom token: {e}");
                        Problem::internal()
                    })?;
                Ok(json!({"uid": uid, "customToken": token}))
            }
        }
    }
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JoinRequest {
    display_name: Option<String>,
    publish: Option<bool>,
    subscribe: Option<bool>,
}

/// A join token for `room`, plus the Firebase credentials for `uid`.
pub fn issue(
    state: &AppState,
    room: &str,
    uid: &str,
    name: &str,
    grants: Grants,
) -> Result<Value, Problem> {
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
    Ok(json!({
        "roomId": room,
        "token": token,
        // Written by the client into its session document, so the broadcast instance's join
        // span continues this request's trace.
        "traceparent": crate::telemetry::current_traceparent(),
        "expiresAt": claims.exp,
        "displayName": name,
        "grants": grants,
        "sessions": format!("rooms/{room}/sessions"),
        "firebase": state.config.firebase.for_uid(uid, now)?,
    }))
}

pub async fn join(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let room = parse_id(&id)?;
    let exists: Option<(Uuid,)> = sqlx::query_as("SELECT id FROM rooms WHERE id = $1")
        .bind(room)
        .fetch_optional(&state.db)
        .await?;
    exists.ok_or_else(|| Problem::not_found("room"))?;
    // The body is optional: no body means the defaults.
    let req: JoinRequest = if body.iter().all(u8::is_ascii_whitespace) {
        JoinRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            Problem::new(
                axum::http::StatusCode::BAD_REQUEST,
                "malformed-body",
                "Malformed body",
                e.to_string(),
            )
        })?
    };
    let name = req.display_name.unwrap_or_else(|| user.username.clone());
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(Problem::validation("`displayName` must be 1–64 characters"));
    }
    let grants = Grants {
        publish: req.publish.unwrap_or(true),
        subscribe: req.subscribe.unwrap_or(true),
    };
    Ok(Json(issue(&state, &id, &user.firebase_uid, name, grants)?))
}

pub async fn jwks(State(state): State<AppState>) -> Json<Value> {
    Json(state.keys.jwks())
}
