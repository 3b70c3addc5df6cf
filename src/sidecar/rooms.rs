//! Rooms: list (with live participant counts from Firestore), create, get, rename or change
//! image, delete. Only the owner changes or deletes a room.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::AppState;
use super::auth::{ApiJson, CurrentUser};
use super::firestore_sync;
use super::problem::{ApiResult, Problem};

type RoomRow = (Uuid, String, Option<Uuid>, Uuid, String, DateTime<Utc>);

const SELECT: &str = "SELECT r.id, r.name, r.image_id, u.id, u.username, r.created_at FROM rooms r JOIN users u ON u.id = r.owner_id";

fn room_json(row: &RoomRow, participants: usize) -> Value {
    let (id, name, image, owner, owner_name, created) = row;
    json!({
        "id": id,
        "name": name,
        "imageId": image,
        "imageUrl": image.map(|i| format!("/v1/images/{i}")),
        "owner": {"id": owner, "username": owner_name},
        "participants": participants,
        "createdAt": created,
    })
}

pub fn parse_id(id: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(id).map_err(|_| Problem::not_found("room"))
}

fn valid_name(name: &str) -> Result<String, Problem> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(Problem::validation("`name` must be 1–64 characters"));
    }
    Ok(name.to_owned())
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

pub async fn list(State(state): State<AppState>, _user: CurrentUser) -> ApiResult<Json<Value>> {
    let rows: Vec<RoomRow> = sqlx::query_as(&format!("{SELECT} ORDER BY r.created_at, r.name"))
        .fetch_all(&state.db)
        .await?;
    let ids: Vec<String> = rows.iter().map(|r| r.0.to_string()).collect();
    let counts = firestore_sync::participant_counts(&state.firestore, &ids).await?;
    let rooms: Vec<Value> = rows
        .iter()
        .map(|r| room_json(r, counts.get(&r.0.to_string()).copied().unwrap_or(0)))
        .collect();
    Ok(Json(json!({ "rooms": rooms })))
}

async fn load(state: &AppState, id: Uuid) -> Result<RoomRow, Problem> {
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

pub async fn get(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let row = load(&state, parse_id(&id)?).await?;
    let counts =
        firestore_sync::participant_counts(&state.firestore, std::slice::from_ref(&id)).await?;
    Ok(Json(room_json(&row, counts.get(&id).copied().unwrap_or(0))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewRoom {
    name: String,
    image_id: Option<Uuid>,
}

/// Creates the row and the Firestore room document together: if Firestore fails, the row is
/// rolled back.
pub async fn create_room(
    state: &AppState,
    owner: Uuid,
    name: &str,
    image: Option<Uuid>,
) -> Result<Uuid, Problem> {
    let id = Uuid::new_v4();
    let mut tx = state.db.begin().await?;
    sqlx::query("INSERT INTO rooms (id, owner_id, name, image_id) VALUES ($1, $2, $3, $4)")
        .bind(id)
        .bind(owner)
        .bind(name)
        .bind(image)
        .execute(&mut *tx)
        .await?;
    firestore_sync::put_room(&state.firestore, &id.to_string(), name).await?;
    tx.commit().await?;
    Ok(id)
}

pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(new): ApiJson<NewRoom>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let name = valid_name(&new.name)?;
    check_image(&state, &user, new.image_id).await?;
    let id = create_room(&state, user.id, &name, new.image_id).await?;
    let row = load(&state, id).await?;
    Ok((StatusCode::CREATED, Json(room_json(&row, 0))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RoomChange {
    name: Option<String>,
    /// `null` removes the image.
    #[serde(default, with = "double_option")]
    image_id: Option<Option<Uuid>>,
}

/// Tells "absent" from "null" for a PATCH field.
mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

pub async fn update(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    ApiJson(change): ApiJson<RoomChange>,
) -> ApiResult<Json<Value>> {
    let row = owned(&state, &user, &id).await?;
    if change.name.is_none() && change.image_id.is_none() {
        return Err(Problem::validation("send `name` and/or `imageId`"));
    }
    if let Some(name) = &change.name {
        let name = valid_name(name)?;
        let mut tx = state.db.begin().await?;
        sqlx::query("UPDATE rooms SET name = $2, updated_at = now() WHERE id = $1")
            .bind(row.0)
            .bind(&name)
            .execute(&mut *tx)
            .await?;
        firestore_sync::put_room(&state.firestore, &id, &name).await?;
        tx.commit().await?;
    }
    if let Some(image) = change.image_id {
        check_image(&state, &user, image).await?;
        sqlx::query("UPDATE rooms SET image_id = $2, updated_at = now() WHERE id = $1")
            .bind(row.0)
            .bind(image)
            .execute(&state.db)
            .await?;
    }
    let row = load(&state, row.0).await?;
    let counts =
        firestore_sync::participant_counts(&state.firestore, std::slice::from_ref(&id)).await?;
    Ok(Json(room_json(&row, counts.get(&id).copied().unwrap_or(0))))
}

pub async fn remove(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let row = owned(&state, &user, &id).await?;
    firestore_sync::delete_room(&state.firestore, &id).await?;
    sqlx::query("DELETE FROM rooms WHERE id = $1")
        .bind(row.0)
        .execute(&state.db)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
