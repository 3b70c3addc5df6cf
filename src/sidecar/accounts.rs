//! Accounts: register, log in, log out, who am I, and erasure.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::{ApiJson, ClientAddr, CurrentUser, new_token};
use super::problem::{ApiResult, Problem};
use super::{AppState, firestore_sync, passwords};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// 3–32 characters: letters, digits, `_`, `-`, `.`.
    #[schema(min_length = 3, max_length = 32, pattern = "^[A-Za-z0-9_.-]{3,32}$")]
    username: String,
    #[schema(min_length = 10, max_length = 256)]
    password: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: Uuid,
    pub username: String,
    /// The user's Firebase Auth uid (what session documents carry as `uid`).
    pub firebase_uid: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Login {
    /// Send as `Authorization: Bearer <accessToken>`.
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: String,
    /// Seconds the token stays valid.
    pub expires_in: u64,
    pub user: User,
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

pub fn user(id: Uuid, username: &str, firebase_uid: &str) -> User {
    User {
        id,
        username: username.to_owned(),
        firebase_uid: firebase_uid.to_owned(),
    }
}

fn rate_limited(retry: std::time::Duration, detail: &str) -> Problem {
    let mut p = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate-limited",
        "Too many attempts",
        detail,
    );
    p.retry_after = Some(retry.as_secs().max(1));
    p
}

/// Register.
#[utoipa::path(post, path = "/v1/accounts", operation_id = "register", tag = "accounts", request_body = Credentials,
    responses((status = 201, body = User), (status = 409, description = "Username taken", body = super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Too many registrations from this address", body = super::problem::ProblemDoc, content_type = "application/problem+json")))]
pub async fn register(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    ApiJson(c): ApiJson<Credentials>,
) -> ApiResult<(StatusCode, Json<User>)> {
    valid_username(&c.username)?;
    valid_password(&c.password)?;
    state
        .registrations
        .lock()
        .map_err(|_| Problem::internal())?
        .begin(addr, Instant::now())
        .map_err(|retry| {
            rate_limited(retry, "too many accounts created from this address; wait")
        })?;
    let hash = state.hasher.hash(c.password.clone()).await?;
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
            Json(user(id, &c.username, &firebase_uid)),
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

/// Log in (returns an access token).
#[utoipa::path(post, path = "/v1/sessions", operation_id = "login", tag = "accounts", request_body = Credentials,
    responses((status = 200, body = Login), (status = 401, description = "Wrong username or password", body = super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts", body = super::problem::ProblemDoc, content_type = "application/problem+json")))]
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    ApiJson(c): ApiJson<Credentials>,
) -> ApiResult<Json<Login>> {
    // A username no account can have cannot match one: refused as such, before the database
    // sees it (PostgreSQL cannot even compare text containing NUL).
    if valid_username(&c.username).is_err() {
        return Err(Problem::validation(
            "`username` must be 3–32 characters: letters, digits, `_`, `-`, `.`",
        ));
    }
    state
        .limiter
        .lock()
        .map_err(|_| Problem::internal())?
        .begin(&c.username, addr, Instant::now())
        .map_err(|retry| rate_limited(retry, "too many failed logins; wait before trying again"))?;
    let row: Option<(Uuid, String, Option<String>, String)> = sqlx::query_as(
        "SELECT id, username, password_hash, firebase_uid FROM users WHERE username = $1",
    )
    .bind(&c.username)
    .fetch_optional(&state.db)
    .await?;
    let stored = row.as_ref().and_then(|r| r.2.clone());
    let ok = state.hasher.verify(c.password.clone(), stored).await?;
    let Some((id, username, _, firebase_uid)) = row.filter(|_| ok) else {
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
        .succeeded(&c.username, addr);
    let (token, hash) = new_token();
    let ttl = state.config.access_token_ttl;
    sqlx::query("INSERT INTO auth_sessions (token_hash, user_id, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3))")
        .bind(&hash)
        .bind(id)
        .bind(ttl.as_secs_f64())
        .execute(&state.db)
        .await?;
    Ok(Json(Login {
        access_token: token,
        token_type: "Bearer".into(),
        expires_in: ttl.as_secs(),
        user: user(id, &username, &firebase_uid),
    }))
}

/// Log out (revokes the access token).
#[utoipa::path(delete, path = "/v1/sessions/current", operation_id = "logout", tag = "accounts", security(("bearer" = [])),
    responses((status = 204, description = "Logged out")))]
pub async fn logout(State(state): State<AppState>, user: CurrentUser) -> ApiResult<StatusCode> {
    sqlx::query("DELETE FROM auth_sessions WHERE token_hash = $1")
        .bind(&user.token_hash)
        .execute(&state.db)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The logged-in user.
#[utoipa::path(get, path = "/v1/me", operation_id = "getMe", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, body = User)))]
pub async fn me(current: CurrentUser) -> Json<User> {
    Json(user(current.id, &current.username, &current.firebase_uid))
}

/// Erases the account: the user's Firestore documents (sessions, chat, roster entries), the
/// rooms they own (deleted, with everything in them, not handed over), their images, login
/// sessions and the user row. Firestore goes first: if it fails nothing is deleted in SQL and
/// the request can be repeated.
/// Erase the account, its rooms and its Firestore documents.
#[utoipa::path(delete, path = "/v1/me", operation_id = "eraseMe", tag = "accounts", security(("bearer" = [])),
    responses((status = 204, description = "Erased")))]
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
