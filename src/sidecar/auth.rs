//! Access tokens: opaque random strings the client sends as `Authorization: Bearer`, stored
//! only as their SHA-256 in `auth_sessions`, so logout and account erasure revoke them at once.
//! Also the request extractors the routes share.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::AppState;
use super::problem::Problem;

#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: Uuid,
    pub username: String,
    pub firebase_uid: String,
    pub token_hash: Vec<u8>,
}

pub fn new_token() -> (String, Vec<u8>) {
    let bytes: [u8; 32] = rand::random();
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = token_hash(&token);
    (token, hash)
}

pub fn token_hash(token: &str) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes())
        .as_ref()
        .to_vec()
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(Problem::unauthorized)?;
        let hash = token_hash(token.trim());
        let row: Option<(Uuid, String, String)> = sqlx::query_as(
            "SELECT u.id, u.username, u.firebase_uid FROM auth_sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > now()",
        )
        .bind(&hash)
        .fetch_optional(&state.db)
        .await?;
        let (id, username, firebase_uid) = row.ok_or_else(Problem::unauthorized)?;
        Ok(CurrentUser {
            id,
            username,
            firebase_uid,
            token_hash: hash,
        })
    }
}

/// The client's address (the first X-Forwarded-For hop when configured to trust it).
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        if state.config.trust_forwarded_for
            && let Some(ip) = parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().parse().ok())
        {
            return Ok(ClientAddr(ip));
        }
        let addr = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        Ok(ClientAddr(addr))
    }
}

/// `Json<T>` whose rejections are problem documents. Every JSON body of the API is an object:
/// anything else (an array serde would read field by field, a bare `null`) is refused.
pub struct ApiJson<T>(pub T);

/// A JSON object as `T`, or the 400 problem naming what is wrong.
pub fn from_object<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, Problem> {
    if !value.is_object() {
        return Err(malformed("the body must be a JSON object"));
    }
    serde_json::from_value(value).map_err(|e| malformed(e.to_string()))
}

pub fn malformed(detail: impl Into<String>) -> Problem {
    Problem::new(
        axum::http::StatusCode::BAD_REQUEST,
        "malformed-body",
        "Malformed body",
        detail,
    )
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let axum::Json(value) = axum::Json::<serde_json::Value>::from_request(req, state).await?;
        Ok(ApiJson(from_object(value)?))
    }
}
