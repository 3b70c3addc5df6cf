//! Accounts: register, log in, log out, who am I, and erasure.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::auth::{ApiJson, ClientAddr, CurrentUser, new_token};
use super::problem::{ApiResult, Problem};
use super::{AppState, firestore_sync, passwords};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    username: String,
    password: String,
}

fn valid_username(u: &str) -> Result<(), Problem> {
    let ok = (3..=32).contains(&u.chars().count())
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Problem::validation(
            "`username` must be 3–32 characters: letters, digits, `_`, `-`, `.`",
        ))
    }
}

fn valid_password(p: &str) -> Result<(), Problem> {
    let n = p.chars().count();
    if (passwords::MIN_LENGTH..=passwords::MAX_LENGTH).contains(&n) {
        Ok(())
    } else {
        Err(Problem::validation(format!(
            "`password` must be {}–{} characters",
            passwords::MIN_LENGTH,
            passwords::MAX_LENGTH
        )))
    }
}

pub fn user_json(id: Uuid, username: &str, firebase_uid: &str) -> Value {
    json!({"id": id, "username": username, "firebaseUid": firebase_uid})
}

pub async fn register(
    State(state): State<AppState>,
    ApiJson(c): ApiJson<Credentials>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    valid_username(&c.username)?;
    valid_password(&c.password)?;
    let password = c.password.clone();
    let hash = tokio::task::spawn_blocking(move || passwords::hash(&password))
        .await
        .map_err(|_| Problem::internal())?;
    let id = Uuid::new_v4();
    let firebase_uid = format!("u-{}", id.simple());
    let inserted = sqlx::query(
        "INSERT INTO users (id, username, password_hash, firebase_uid) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(&c.username)
    .bind(&hash)
    .bind(&firebase_uid)
    .execute(&state.db)
    .await;
    match inserted {
        Ok(_) => Ok((
            StatusCode::CREATED,
            Json(user_json(id, &c.username, &firebase_uid)),
        )),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(Problem::new(
            StatusCode::CONFLICT,
            "username-taken",
            "Username taken",
            format!("the username {:?} is already registered", c.username),
        )),
        Err(e) => Err(e.into()),
    }
}

pub async fn login(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    ApiJson(c): ApiJson<Credentials>,
) -> ApiResult<Json<Value>> {
    let limited = state
        .limiter
        .lock()
        .map_err(|_| Problem::internal())?
        .check(&c.username, addr, Instant::now());
    if let Err(retry) = limited {
        let mut p = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many login attempts",
            "wait before trying again",
        );
        p.retry_after = Some(retry.as_secs());
        return Err(p);
    }
    let row: Option<(Uuid, String, Option<String>, String)> = sqlx::query_as(
        "SELECT id, username, password_hash, firebase_uid FROM users WHERE username = $1",
    )
    .bind(&c.username)
    .fetch_optional(&state.db)
    .await?;
    let password = c.password.clone();
    let ok = tokio::task::spawn_blocking(move || match row.as_ref().and_then(|r| r.2.as_deref()) {
        Some(stored) => passwords::verify(&password, stored).then_some(row),
        None => {
            passwords::verify_dummy(&password);
            None
        }
    })
    .await
    .map_err(|_| Problem::internal())?
    .flatten();
    let Some((id, username, _, firebase_uid)) = ok else {
        state
            .limiter
            .lock()
            .map_err(|_| Problem::internal())?
            .failed(&c.username, Instant::now());
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "invalid-credentials",
            "Invalid credentials",
            "the username or the password is wrong",
        ));
    };
    state
        .limiter
        .lock()
        .map_err(|_| Problem::internal())?
        .succeeded(&c.username);
    let (token, hash) = new_token();
    let ttl = state.config.access_token_ttl;
    sqlx::query("INSERT INTO auth_sessions (token_hash, user_id, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3))")
        .bind(&hash)
        .bind(id)
        .bind(ttl.as_secs_f64())
        .execute(&state.db)
        .await?;
    Ok(Json(json!({
        "accessToken": token,
        "tokenType": "Bearer",
        "expiresIn": ttl.as_secs(),
        "user": user_json(id, &username, &firebase_uid),
    })))
}

pub async fn logout(State(state): State<AppState>, user: CurrentUser) -> ApiResult<StatusCode> {
    sqlx::query("DELETE FROM auth_sessions WHERE token_hash = $1")
        .bind(&user.token_hash)
        .execute(&state.db)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn me(user: CurrentUser) -> Json<Value> {
    Json(user_json(user.id, &user.username, &user.firebase_uid))
}

/// Erases the account: the user's Firestore documents (sessions, chat, roster entries), the
/// rooms they own (deleted, with everything in them, not handed over), their images, login
/// sessions and the user row. Firestore goes first: if it fails nothing is deleted in SQL and
/// the request can be repeated.
pub async fn erase(State(state): State<AppState>, user: CurrentUser) -> ApiResult<StatusCode> {
    let owned: Vec<(Uuid,)> = sqlx::query_as("SELECT id FROM rooms WHERE owner_id = $1")
        .bind(user.id)
        .fetch_all(&state.db)
        .await?;
    for (room,) in &owned {
        firestore_sync::delete_room(&state.firestore, &room.to_string()).await?;
    }
    firestore_sync::delete_user_documents(&state.firestore, &user.firebase_uid).await?;
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(user.id)
        .execute(&state.db)
        .await?;
    tracing::info!(rooms = owned.len(), "account erased");
    Ok(StatusCode::NO_CONTENT)
}
