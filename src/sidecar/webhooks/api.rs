//! `/v1/webhooks`: webhook endpoints and their dead letters, for API keys with the `webhooks`
//! scope. An endpoint's signing secret is shown when it is created and when it is rotated.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::signing;
use crate::sidecar::AppState;
use crate::sidecar::apikeys::ApiKey;
use crate::sidecar::auth::ApiJson;
use crate::sidecar::problem::{ApiResult, Problem, ProblemDoc};

const SCOPE: &str = "webhooks";
/// Endpoints at most (all keys together).
pub const MAX_ENDPOINTS: i64 = 32;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    pub id: Uuid,
    pub url: String,
    /// The event types delivered; empty: all of them.
    pub event_types: Vec<String>,
    pub description: String,
    pub enabled: bool,
    /// Deliveries still being attempted.
    pub pending: i64,
    /// Deliveries given up (dead letters): `GET …/failed`.
    pub failed: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The signing secret (`whsec_…`): only in the answers of creation and rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// An event type (docs/sidecar.md, "Events").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum EventType {
    #[serde(rename = "room.started")]
    RoomStarted,
    #[serde(rename = "room.finished")]
    RoomFinished,
    #[serde(rename = "participant.joined")]
    ParticipantJoined,
    #[serde(rename = "participant.left")]
    ParticipantLeft,
    #[serde(rename = "track.published")]
    TrackPublished,
    #[serde(rename = "track.unpublished")]
    TrackUnpublished,
    #[serde(rename = "room.moved")]
    RoomMoved,
    #[serde(rename = "camera.changed")]
    CameraChanged,
}

impl EventType {
    fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

#[derive(Serialize, ToSchema)]
pub struct EndpointList {
    pub endpoints: Vec<Endpoint>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewEndpoint {
    /// `http://` or `https://`, with a host, without credentials or fragment.
    #[schema(min_length = 1, max_length = 2048)]
    url: String,
    /// Types to deliver; default (or empty): all.
    event_types: Option<Vec<EventType>>,
    #[schema(max_length = 200)]
    description: Option<String>,
    /// Default true.
    enabled: Option<bool>,
}

/// Any of the fields.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EndpointChange {
    #[schema(min_length = 1, max_length = 2048)]
    url: Option<String>,
    /// Empty: all types.
    event_types: Option<Vec<EventType>>,
    #[schema(max_length = 200)]
    description: Option<String>,
    enabled: Option<bool>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailedDelivery {
    /// The event's id; the deliveries' `webhook-id` is `evt_` + it.
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub room: String,
    pub attempts: i32,
    /// The last attempt's HTTP status (`null`: no answer).
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub failed_at: Option<DateTime<Utc>>,
    /// The body that was sent.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub struct FailedList {
    pub deliveries: Vec<FailedDelivery>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Replay {
    /// The dead letters to deliver again (their `eventId`s); absent: all of the endpoint's.
    event_ids: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct Replayed {
    /// How many dead letters are pending again.
    pub replayed: u64,
}

fn check_url(url: &str) -> Result<String, Problem> {
    let url = url.trim();
    if url.is_empty() || url.len() > 2048 {
        return Err(Problem::validation("`url` has 1–2048 characters"));
    }
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| Problem::validation(format!("`url` is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(Problem::validation(
            "`url` must be http:// or https:// with a host",
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Problem::validation(
            "`url` must not carry credentials: verify the signature instead",
        ));
    }
    if parsed.fragment().is_some() {
        return Err(Problem::validation("`url` must not have a fragment"));
    }
    Ok(url.to_owned())
}

fn type_names(types: Option<Vec<EventType>>) -> Vec<String> {
    let mut names: Vec<String> = types
        .unwrap_or_default()
        .into_iter()
        .map(EventType::name)
        .collect();
    names.sort();
    names.dedup();
    names
}

fn check_description(d: Option<String>) -> Result<String, Problem> {
    let d = d.unwrap_or_default();
    if d.chars().count() > 200 || !crate::text::free_text_ok(&d) {
        return Err(Problem::validation(
            "`description` has at most 200 characters, without control characters",
        ));
    }
    Ok(d)
}

fn parse_id(id: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(id).map_err(|_| Problem::not_found("webhook endpoint"))
}

type Row = (
    Uuid,
    String,
    Vec<String>,
    String,
    bool,
    DateTime<Utc>,
    DateTime<Utc>,
    i64,
    i64,
);

const SELECT: &str = "SELECT e.id, e.url, e.event_types, e.description, e.enabled, e.created_at, e.updated_at, \
    (SELECT count(*) FROM webhook_deliveries d WHERE d.endpoint_id = e.id AND d.state = 'pending'), \
    (SELECT count(*) FROM webhook_deliveries d WHERE d.endpoint_id = e.id AND d.state = 'failed') \
    FROM webhook_endpoints e";

fn endpoint(
    (id, url, event_types, description, enabled, created_at, updated_at, pending, failed): Row,
) -> Endpoint {
    Endpoint {
        id,
        url,
        event_types,
        description,
        enabled,
        pending,
        failed,
        created_at,
        updated_at,
        secret: None,
    }
}

async fn load(state: &AppState, id: Uuid) -> Result<Endpoint, Problem> {
    let row: Option<Row> = sqlx::query_as(&format!("{SELECT} WHERE e.id = $1"))
        .bind(id)
        .fetch_optional(&state.db)
        .await?;
    row.map(endpoint)
        .ok_or_else(|| Problem::not_found("webhook endpoint"))
}

/// The webhook endpoints.
#[utoipa::path(get, path = "/v1/webhooks", operation_id = "listWebhooks", tag = "webhooks", security(("apiKey" = [])),
    responses((status = 200, body = EndpointList)))]
pub async fn list(State(state): State<AppState>, key: ApiKey) -> ApiResult<Json<EndpointList>> {
    key.require(SCOPE)?;
    let rows: Vec<Row> = sqlx::query_as(&format!("{SELECT} ORDER BY e.created_at"))
        .fetch_all(&state.db)
        .await?;
    Ok(Json(EndpointList {
        endpoints: rows.into_iter().map(endpoint).collect(),
    }))
}

/// Registers an endpoint; the answer holds its signing secret (shown again only on rotation).
#[utoipa::path(post, path = "/v1/webhooks", operation_id = "createWebhook", tag = "webhooks", security(("apiKey" = [])), request_body = NewEndpoint,
    responses((status = 201, body = Endpoint),
        (status = 409, description = "32 endpoints exist already (`too-many-endpoints`)", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn create(
    State(state): State<AppState>,
    key: ApiKey,
    ApiJson(body): ApiJson<NewEndpoint>,
) -> ApiResult<(StatusCode, Json<Endpoint>)> {
    key.require(SCOPE)?;
    let url = check_url(&body.url)?;
    let types = type_names(body.event_types);
    let description = check_description(body.description)?;
    let id = Uuid::new_v4();
    let secret = signing::new_secret();
    let mut tx = state.db.begin().await?;
    // One creation at a time, so that the limit holds under concurrent requests.
    sqlx::query("LOCK TABLE webhook_endpoints IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM webhook_endpoints")
        .fetch_one(&mut *tx)
        .await?;
    if count >= MAX_ENDPOINTS {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "too-many-endpoints",
            "Too many webhook endpoints",
            format!("at most {MAX_ENDPOINTS} webhook endpoints; delete one first"),
        ));
    }
    sqlx::query(
        "INSERT INTO webhook_endpoints (id, url, secret, event_types, description, enabled) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(&url)
    .bind(&secret)
    .bind(&types)
    .bind(&description)
    .bind(body.enabled.unwrap_or(true))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(endpoint = %id, key = %key.id, "webhook endpoint registered");
    let mut created = load(&state, id).await?;
    created.secret = Some(secret);
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/v1/webhooks/{id}", operation_id = "getWebhook", tag = "webhooks", security(("apiKey" = [])),
    params(("id" = String, Path, description = "The endpoint's id (a UUID)")),
    responses((status = 200, body = Endpoint)))]
pub async fn get(
    State(state): State<AppState>,
    key: ApiKey,
    Path(id): Path<String>,
) -> ApiResult<Json<Endpoint>> {
    key.require(SCOPE)?;
    Ok(Json(load(&state, parse_id(&id)?).await?))
}

/// Changes an endpoint. Disabling it stops its deliveries (pending ones wait); events that
/// happen while it is disabled are not kept for it.
#[utoipa::path(patch, path = "/v1/webhooks/{id}", operation_id = "updateWebhook", tag = "webhooks", security(("apiKey" = [])), request_body = EndpointChange,
    params(("id" = String, Path, description = "The endpoint's id (a UUID)")),
    responses((status = 200, body = Endpoint)))]
pub async fn update(
    State(state): State<AppState>,
    key: ApiKey,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<EndpointChange>,
) -> ApiResult<Json<Endpoint>> {
    key.require(SCOPE)?;
    let id = parse_id(&id)?;
    let url = body.url.as_deref().map(check_url).transpose()?;
    let types = body.event_types.map(|t| type_names(Some(t)));
    let description = body
        .description
        .map(|d| check_description(Some(d)))
        .transpose()?;
    let done = sqlx::query(
        "UPDATE webhook_endpoints SET url = coalesce($2, url), event_types = coalesce($3, event_types), \
         description = coalesce($4, description), enabled = coalesce($5, enabled), updated_at = now() \
         WHERE id = $1",
    )
    .bind(id)
    .bind(url)
    .bind(types)
    .bind(description)
    .bind(body.enabled)
    .execute(&state.db)
    .await?;
    if done.rows_affected() == 0 {
        return Err(Problem::not_found("webhook endpoint"));
    }
    Ok(Json(load(&state, id).await?))
}

/// Removes an endpoint with everything still owed to it.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", operation_id = "deleteWebhook", tag = "webhooks", security(("apiKey" = [])),
    params(("id" = String, Path, description = "The endpoint's id (a UUID)")),
    responses((status = 204, description = "Removed")))]
pub async fn remove(
    State(state): State<AppState>,
    key: ApiKey,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    key.require(SCOPE)?;
    let done = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
        .bind(parse_id(&id)?)
        .execute(&state.db)
        .await?;
    if done.rows_affected() == 0 {
        return Err(Problem::not_found("webhook endpoint"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A new signing secret, used from the next attempt on (the old one stops working at once).
#[utoipa::path(post, path = "/v1/webhooks/{id}/secret", operation_id = "rotateWebhookSecret", tag = "webhooks", security(("apiKey" = [])),
    params(("id" = String, Path, description = "The endpoint's id (a UUID)")),
    responses((status = 200, body = Endpoint)))]
pub async fn rotate(
    State(state): State<AppState>,
    key: ApiKey,
    Path(id): Path<String>,
) -> ApiResult<Json<Endpoint>> {
    key.require(SCOPE)?;
    let id = parse_id(&id)?;
    let secret = signing::new_secret();
    let done =
        sqlx::query("UPDATE webhook_endpoints SET secret = $2, updated_at = now() WHERE id = $1")
            .bind(id)
            .bind(&secret)
            .execute(&state.db)
            .await?;
    if done.rows_affected() == 0 {
        return Err(Problem::not_found("webhook endpoint"));
    }
    let mut endpoint = load(&state, id).await?;
    endpoint.secret = Some(secret);
    Ok(Json(endpoint))
}

/// The endpoint's dead letters: deliveries given up, oldest first (at most 500).
#[utoipa::path(get, path = "/v1/webhooks/{id}/failed", operation_id = "listFailedDeliveries", tag = "webhooks", security(("apiKey" = [])),
    params(("id" = String, Path, description = "The endpoint's id (a UUID)")),
    responses((status = 200, body = FailedList)))]
pub async fn failed(
    State(state): State<AppState>,
    key: ApiKey,
    Path(id): Path<String>,
) -> ApiResult<Json<FailedList>> {
    key.require(SCOPE)?;
    let id = parse_id(&id)?;
    load(&state, id).await?;
    type FailedRow = (
        String,
        String,
        String,
        i32,
        Option<i32>,
        Option<String>,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
        String,
    );
    let rows: Vec<FailedRow> = sqlx::query_as(
        "SELECT event_id, event_type, room, attempts, last_status, last_error, created_at, failed_at, payload \
         FROM webhook_deliveries WHERE endpoint_id = $1 AND state = 'failed' ORDER BY seq LIMIT 500",
    )
    .bind(id)
    .fetch_all(&state.db)
    .await?;
    let deliveries = rows
        .into_iter()
        .map(
            |(
                event_id,
                event_type,
                room,
                attempts,
                last_status,
                last_error,
                created_at,
                failed_at,
                payload,
            )| {
                FailedDelivery {
                    event_id,
                    event_type,
                    room,
                    attempts,
                    last_status,
                    last_error,
                    created_at,
                    failed_at,
                    payload: serde_json::from_str(&payload).unwrap_or_default(),
                }
            },
        )
        .collect();
    Ok(Json(FailedList { deliveries }))
}

/// Delivers dead letters again (same `webhook-id`, a new schedule).
#[utoipa::path(post, path = "/v1/webhooks/{id}/failed/replay", operation_id = "replayFailedDeliveries", tag = "webhooks", security(("apiKey" = [])), request_body = Replay,
    params(("id" = String, Path, description = "The endpoint's id (a UUID)")),
    responses((status = 200, body = Replayed)))]
pub async fn replay(
    State(state): State<AppState>,
    key: ApiKey,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Replay>,
) -> ApiResult<Json<Replayed>> {
    key.require(SCOPE)?;
    let id = parse_id(&id)?;
    load(&state, id).await?;
    let done = sqlx::query(
        "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_attempt_at = now(), \
         created_at = now(), failed_at = NULL, locked_until = NULL \
         WHERE endpoint_id = $1 AND state = 'failed' AND ($2::text[] IS NULL OR event_id = ANY($2))",
    )
    .bind(id)
    .bind(body.event_ids)
    .execute(&state.db)
    .await?;
    Ok(Json(Replayed {
        replayed: done.rows_affected(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_is_named_as_the_events_name_it() {
        let all = [
            EventType::RoomStarted,
            EventType::RoomFinished,
            EventType::ParticipantJoined,
            EventType::ParticipantLeft,
            EventType::TrackPublished,
            EventType::TrackUnpublished,
            EventType::RoomMoved,
            EventType::CameraChanged,
        ];
        let names: Vec<String> = all.into_iter().map(EventType::name).collect();
        assert_eq!(names, crate::events::TYPES);
    }

    #[test]
    fn urls_are_http_with_a_host_and_nothing_secret() {
        assert!(check_url("https://hooks.example.com/firesfu?x=1").is_ok());
        assert!(check_url("http://10.0.0.7:8080/h").is_ok());
        for bad in [
            "",
            "ftp://a/b",
            "https://u:p@a/b",
            "https://a/b#c",
            "nope",
            "mailto:a@b.c",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
