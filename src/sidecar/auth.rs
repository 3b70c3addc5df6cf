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
        user_for_token(state, token.trim())
            .await?
            .ok_or_else(Problem::unauthorized)
    }
}

/// The user an access token belongs to, if it is known and neither expired nor revoked.
pub async fn user_for_token(state: &AppState, token: &str) -> Result<Option<CurrentUser>, Problem> {
    let hash = token_hash(token);
    let row: Option<(Uuid, String, String)> = sqlx::query_as(
        "SELECT u.id, u.username, u.firebase_uid FROM auth_sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.token_hash = $1 AND s.expires_at > now()",
    )
    .bind(&hash)
    .fetch_optional(&state.db)
    .await?;
    Ok(row.map(|(id, username, firebase_uid)| CurrentUser {
        id,
        username,
        firebase_uid,
        token_hash: hash,
    }))
}

/// The client's address: the X-Forwarded-For entry written by the outermost trusted proxy
/// (`forwarded_for_hops` from the right), else the TCP peer's.
pub struct ClientAddr(pub IpAddr);

/// The entry `hops` places from the right of an X-Forwarded-For value (1 = the last).
pub fn forwarded_client(header: &str, hops: usize) -> Option<IpAddr> {
    let hop = header.rsplit(',').nth(hops.checked_sub(1)?)?;
    hop.trim().parse().ok()
}

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        if let Some(ip) = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| forwarded_client(v, state.config.forwarded_for_hops))
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

#[cfg(test)]
mod tests {
    use super::forwarded_client;

    #[test]
    fn only_entries_trusted_proxies_wrote_count() {
        // A client that sends its own header cannot choose its address.
        let header = "6.6.6.6, 203.0.113.9, 130.211.0.1";
        assert_eq!(
            forwarded_client(header, 2),
            Some("203.0.113.9".parse().unwrap())
        );
        assert_eq!(
            forwarded_client(header, 1),
            Some("130.211.0.1".parse().unwrap())
        );
        assert_eq!(forwarded_client(header, 0), None);
        assert_eq!(forwarded_client("203.0.113.9", 2), None);
        assert_eq!(forwarded_client("junk, 1.2.3.4", 2), None);
    }
}
