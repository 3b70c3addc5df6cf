//! Rooms: list (with live participant counts from Firestore), create, get, rename or change
//! image, delete. Only the owner changes or deletes a room.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::auth::{ApiJson, CurrentUser};
use super::firestore_sync;
use super::problem::{ApiResult, Problem};

pub(super) type RoomRow = (Uuid, String, Option<Uuid>, Uuid, String, DateTime<Utc>, i32);

const SELECT: &str = "SELECT r.id, r.name, r.image_id, u.id, u.username, r.created_at, r.max_presenters FROM rooms r JOIN users u ON u.id = r.owner_id";

/// The most screen shares a room may allow at once (`maxPresenters`; 0 means any number).
const MAX_PRESENTERS: i32 = 16;
/// A new room's `maxPresenters`: one presenter at a time (the column's default too).
pub const DEFAULT_MAX_PRESENTERS: i32 = 1;

#[derive(Serialize, ToSchema)]
pub struct RoomOwner {
    pub id: Uuid,
    pub username: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Room {
    pub id: Uuid,
    pub name: String,
    pub image_id: Option<Uuid>,
    pub image_url: Option<String>,
    pub owner: RoomOwner,
    /// People in the room now (its roster).
    pub participants: usize,
    /// How many may share a screen at once (0: any number).
    pub max_presenters: i32,
    pub created_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct RoomList {
    pub rooms: Vec<Room>,
}

fn room_json(row: &RoomRow, participants: usize) -> Room {
    let (id, name, image, owner, owner_name, created, max_presenters) = row;
    Room {
        id: *id,
        name: name.clone(),
        image_id: *image,
        image_url: image.map(|i| format!("/v1/images/{i}")),
        owner: RoomOwner {
            id: *owner,
            username: owner_name.clone(),
        },
        participants,
        max_presenters: *max_presenters,
        created_at: *created,
    }
}

/// A room id from a path. Every spelling a UUID parser accepts (upper case, no hyphens,
/// `urn:uuid:`) names the same room; Firestore only ever sees the canonical one
/// (`Uuid::to_string`: lower case, hyphenated), so no spelling makes a second room document.
pub fn parse_id(id: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(id).map_err(|_| Problem::not_found("room"))
}

/// Whether `session` can be a session document's id: 1–128 of `A–Z a–z 0–9 - _`, not one
/// of Firestore's reserved `__…__` ids (a path segment that cannot be one names nobody: 404).
pub fn is_session_id(session: &str) -> bool {
    let reserved = session.starts_with("__") && session.ends_with("__");
    !session.is_empty()
        && session.len() <= 128
        && !reserved
        && session
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
}

pub fn valid_name(name: &str) -> Result<String, Problem> {
    crate::text::label("name", name, 64).map_err(|e| Problem::validation(e.to_string()))
}

fn valid_presenters(n: i32) -> Result<i32, Problem> {
    if (0..=MAX_PRESENTERS).contains(&n) {
        Ok(n)
    } else {
        Err(Problem::validation(format!(
            "`maxPresenters` must be 0 (any number) to {MAX_PRESENTERS}"
        )))
    }
}

/// The image must exist and be usable by this user (seeded, or their own upload).
async fn check_image(
    state: &AppState,
    user: &CurrentUser,
    image: Option<Uuid>,
) -> Result<(), Problem> {
    let Some(image) = image else { return Ok(()) };
    let usable: Option<(Uuid,)> =
        sqlx::query_as("SELECT id FROM images WHERE id = $1 AND (seeded OR owner_id = $2)")
            .bind(image)
            .bind(user.id)
            .fetch_optional(&state.db)
            .await?;
    usable
        .map(|_| ())
        .ok_or_else(|| Problem::validation("`imageId` names no image you can use"))
}

/// Every room with its live participant count.
#[utoipa::path(get, path = "/v1/rooms", operation_id = "listRooms", tag = "rooms", security(("bearer" = [])),
    responses((status = 200, body = RoomList)))]
pub async fn list(State(state): State<AppState>, _user: CurrentUser) -> ApiResult<Json<RoomList>> {
    let rows: Vec<RoomRow> = sqlx::query_as(&format!("{SELECT} ORDER BY r.created_at, r.name"))
        .fetch_all(&state.db)
        .await?;
    let ids: Vec<String> = rows.iter().map(|r| r.0.to_string()).collect();
    let counts = firestore_sync::participant_counts(&state.firestore, &ids).await?;
    let rooms = rows
        .iter()
        .map(|r| room_json(r, counts.get(&r.0.to_string()).copied().unwrap_or(0)))
        .collect();
    Ok(Json(RoomList { rooms }))
}

pub(super) async fn load(state: &AppState, id: Uuid) -> Result<RoomRow, Problem> {
    sqlx::query_as(&format!("{SELECT} WHERE r.id = $1"))
        .bind(id)
        .fetch_optional(&state.db)
        .await?
        .ok_or_else(|| Problem::not_found("room"))
}

async fn owned(state: &AppState, user: &CurrentUser, id: &str) -> Result<RoomRow, Problem> {
    let row = load(state, parse_id(id)?).await?;
    if row.3 != user.id {
        return Err(Problem::forbidden(
            "only the room's owner may change or delete it",
        ));
    }
    Ok(row)
}

/// A room.
#[utoipa::path(get, path = "/v1/rooms/{id}", operation_id = "getRoom", tag = "rooms", security(("bearer" = [])),
    params(("id" = String, Path, description = "The room's id (a UUID)")),
    responses((status = 200, body = Room), (status = 404, description = "No such room", body = super::problem::ProblemDoc, content_type = "application/problem+json")))]
pub async fn get(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Room>> {
    let row = load(&state, parse_id(&id)?).await?;
    let id = row.0.to_string();
    let counts =
        firestore_sync::participant_counts(&state.firestore, std::slice::from_ref(&id)).await?;
    Ok(Json(room_json(&row, counts.get(&id).copied().unwrap_or(0))))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewRoom {
    /// 1–64 characters (docs/signalling.md, "Text fields").
    #[schema(min_length = 1, max_length = 64)]
    name: String,
    /// A seeded image or one of yours.
    image_id: Option<Uuid>,
    /// How many may share a screen at once: 1 (the default) to 16, or 0 for any number.
    #[schema(minimum = 0, maximum = 16)]
    max_presenters: Option<i32>,
}

/// Creates the row and the Firestore room document together: if Firestore fails, the row is
/// rolled back.
pub async fn create_room(
    state: &AppState,
    owner: Uuid,
    name: &str,
    image: Option<Uuid>,
    max_presenters: i32,
) -> Result<Uuid, Problem> {
    let id = Uuid::new_v4();
    let mut tx = state.db.begin().await?;
    sqlx::query("INSERT INTO rooms (id, owner_id, name, image_id, max_presenters) VALUES ($1, $2, $3, $4, $5)")
        .bind(id)
        .bind(owner)
        .bind(name)
        .bind(image)
        .bind(max_presenters)
        .execute(&mut *tx)
        .await?;
    let fields = firestore_sync::RoomFields {
        name: name.to_owned(),
        max_presenters,
    };
    firestore_sync::put_room(&state.firestore, &id.to_string(), &fields).await?;
    tx.commit().await?;
    Ok(id)
}

/// Create a room.
#[utoipa::path(post, path = "/v1/rooms", operation_id = "createRoom", tag = "rooms", security(("bearer" = [])), request_body = NewRoom,
    responses((status = 201, body = Room)))]
pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(new): ApiJson<NewRoom>,
) -> ApiResult<(StatusCode, Json<Room>)> {
    let name = valid_name(&new.name)?;
    let presenters = valid_presenters(new.max_presenters.unwrap_or(DEFAULT_MAX_PRESENTERS))?;
    check_image(&state, &user, new.image_id).await?;
    let id = create_room(&state, user.id, &name, new.image_id, presenters).await?;
    let row = load(&state, id).await?;
    Ok((StatusCode::CREATED, Json(room_json(&row, 0))))
}

/// At least one of the fields.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RoomChange {
    #[serde(default, with = "double_option")]
    #[schema(value_type = String, min_length = 1, max_length = 64, nullable = false)]
    name: Option<Option<String>>,
    /// `null` removes the image.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<Uuid>)]
    image_id: Option<Option<Uuid>>,
    /// How many may share a screen at once: 0 (any number) to 16.
    #[schema(minimum = 0, maximum = 16)]
    max_presenters: Option<i32>,
}

/// Tells "absent" from "null" for a PATCH field.
pub(super) mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// Rename a room, change its image or its presenter limit (owner only).
///
/// Every field is validated first, then all are applied in one transaction (with the Firestore
/// room document, whose failure rolls the change back).
#[utoipa::path(patch, path = "/v1/rooms/{id}", operation_id = "updateRoom", tag = "rooms", security(("bearer" = [])), request_body = RoomChange,
    params(("id" = String, Path, description = "The room's id (a UUID)")),
    responses((status = 200, body = Room), (status = 403, description = "Not the room's owner", body = super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such room", body = super::problem::ProblemDoc, content_type = "application/problem+json")))]
pub async fn update(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    ApiJson(change): ApiJson<RoomChange>,
) -> ApiResult<Json<Room>> {
    let row = owned(&state, &user, &id).await?;
    let id = row.0.to_string();
    if change.name.is_none() && change.image_id.is_none() && change.max_presenters.is_none() {
        return Err(Problem::validation(
            "send `name`, `imageId` and/or `maxPresenters`",
        ));
    }
    let presenters = change.max_presenters.map(valid_presenters).transpose()?;
    let name = match &change.name {
        Some(Some(name)) => Some(valid_name(name)?),
        Some(None) => return Err(Problem::validation("`name` cannot be null")),
        None => None,
    };
    if let Some(image) = change.image_id {
        check_image(&state, &user, image).await?;
    }
    let mut tx = state.db.begin().await?;
    if let Some(name) = &name {
        sqlx::query("UPDATE rooms SET name = $2, updated_at = now() WHERE id = $1")
            .bind(row.0)
            .bind(name)
            .execute(&mut *tx)
            .await?;
    }
    if let Some(image) = change.image_id {
        sqlx::query("UPDATE rooms SET image_id = $2, updated_at = now() WHERE id = $1")
            .bind(row.0)
            .bind(image)
            .execute(&mut *tx)
            .await?;
    }
    if let Some(presenters) = presenters {
        sqlx::query("UPDATE rooms SET max_presenters = $2, updated_at = now() WHERE id = $1")
            .bind(row.0)
            .bind(presenters)
            .execute(&mut *tx)
            .await?;
    }
    if name.is_some() || presenters.is_some() {
        let fields = firestore_sync::RoomFields {
            name: name.unwrap_or_else(|| row.1.clone()),
            max_presenters: presenters.unwrap_or(row.6),
        };
        firestore_sync::put_room(&state.firestore, &id, &fields).await?;
    }
    tx.commit().await?;
    let row = load(&state, row.0).await?;
    let counts =
        firestore_sync::participant_counts(&state.firestore, std::slice::from_ref(&id)).await?;
    Ok(Json(room_json(&row, counts.get(&id).copied().unwrap_or(0))))
}

/// Delete a room (owner only).
#[utoipa::path(delete, path = "/v1/rooms/{id}", operation_id = "deleteRoom", tag = "rooms", security(("bearer" = [])),
    params(("id" = String, Path, description = "The room's id (a UUID)")),
    responses((status = 204, description = "Deleted"), (status = 403, description = "Not the room's owner", body = super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such room", body = super::problem::ProblemDoc, content_type = "application/problem+json")))]
pub async fn remove(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let row = owned(&state, &user, &id).await?;
    firestore_sync::delete_room(&state.firestore, &row.0.to_string()).await?;
    sqlx::query("DELETE FROM rooms WHERE id = $1")
        .bind(row.0)
        .execute(&state.db)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
