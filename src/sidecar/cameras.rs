//! A room's IP cameras (RTSP): add, list, get, change, remove; the room's owner only. The URL
//! and credentials are sealed with `FIRESFU_CAMERA_KEY` (bound to the camera id) before they
//! are stored; PostgreSQL and Firestore hold only that sealed text. Responses show the URL
//! without credentials and whether there are any (`hasCredentials`), never the credentials;
//! no log line or error message contains them either. Without a key, every route answers 503
//! `not-configured`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::auth::{ApiJson, CurrentUser};
use super::camera_docs::{self, COLUMNS, CameraRow, Writes};
use super::camera_input as input;
use super::problem::{ApiResult, Problem, ProblemDoc};
use super::rooms::{self, double_option};
use crate::ingest::documents::CameraSecret;
use crate::sealed::SealKey;

/// Cameras one room may have.
pub const MAX_PER_ROOM: i64 = 16;

/// How RTSP carries the media: interleaved in the RTSP connection (`tcp`, the default: works
/// through NAT and firewalls) or in separate UDP flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Tcp,
    Udp,
}

impl Transport {
    fn column(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Camera {
    pub id: Uuid,
    /// The room's id.
    pub room: Uuid,
    pub name: String,
    /// The RTSP URL without credentials; `null` when the stored settings do not open with the
    /// server's current key (it was changed): set `url` again.
    pub url: Option<String>,
    pub transport: Transport,
    pub enabled: bool,
    /// Whether a username or password is stored (they are never shown).
    pub has_credentials: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct CameraList {
    pub cameras: Vec<Camera>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewCamera {
    /// 1–80 characters (docs/signalling.md, "Text fields").
    #[schema(min_length = 1, max_length = 80)]
    name: String,
    /// `rtsp://` or `rtsps://`, with a host, no fragment. Credentials in it
    /// (`rtsp://user:pass@host/…`) are taken out and stored like `username` and `password`.
    #[schema(min_length = 1, max_length = 2048)]
    url: String,
    #[schema(max_length = 256)]
    username: Option<String>,
    #[schema(max_length = 256)]
    password: Option<String>,
    /// `tcp` (the default) or `udp`.
    transport: Option<Transport>,
    /// Default true.
    enabled: Option<bool>,
}

/// At least one of the fields.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CameraChange {
    #[serde(default, with = "double_option")]
    #[schema(value_type = String, min_length = 1, max_length = 80, nullable = false)]
    name: Option<Option<String>>,
    /// Credentials in it replace both `username` and `password`; without any, the stored ones
    /// are kept.
    #[serde(default, with = "double_option")]
    #[schema(value_type = String, min_length = 1, max_length = 2048, nullable = false)]
    url: Option<Option<String>>,
    /// `null` (or `""`) removes it.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>, max_length = 256)]
    username: Option<Option<String>>,
    /// `null` (or `""`) removes it.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>, max_length = 256)]
    password: Option<Option<String>>,
    #[serde(default, with = "double_option")]
    #[schema(value_type = Transport, nullable = false)]
    transport: Option<Option<Transport>>,
    #[serde(default, with = "double_option")]
    #[schema(value_type = bool, nullable = false)]
    enabled: Option<Option<bool>>,
}

/// A PATCH field that may be absent but not `null`.
fn not_null<T>(field: &str, value: Option<Option<T>>) -> Result<Option<T>, Problem> {
    match value {
        Some(None) => Err(Problem::validation(format!("`{field}` cannot be null"))),
        other => Ok(other.flatten()),
    }
}

fn key(state: &AppState) -> Result<&SealKey, Problem> {
    state.camera_key.as_deref().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-configured",
            "Not configured",
            "cameras are not configured: set FIRESFU_CAMERA_KEY (32 bytes, base64)",
        )
    })
}

/// The room, if it exists and `user` owns it.
async fn owned_room(state: &AppState, user: &CurrentUser, id: &str) -> Result<Uuid, Problem> {
    let row = rooms::load(state, rooms::parse_id(id)?).await?;
    if row.3 != user.id {
        return Err(Problem::forbidden(
            "only the room's owner may see or change its cameras",
        ));
    }
    Ok(row.0)
}

fn parse_camera(id: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(id).map_err(|_| Problem::not_found("camera"))
}

fn seal(key: &SealKey, camera: Uuid, secret: &CameraSecret) -> Result<String, Problem> {
    let json = serde_json::to_vec(secret).map_err(|_| Problem::internal())?;
    key.seal(&camera.to_string(), &json).map_err(|e| {
        tracing::error!(camera = %camera, "cannot seal a camera's settings: {e}");
        Problem::internal()
    })
}

/// The row's URL and credentials, or `None` (logged) if they do not open with this key.
fn open(key: &SealKey, row: &CameraRow) -> Option<CameraSecret> {
    let opened = key
        .open(&row.id.to_string(), &row.sealed)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|_| "not a camera secret".into()));
    match opened {
        Ok(secret) => Some(secret),
        Err(e) => {
            tracing::warn!(camera = %row.id, "a camera's stored settings do not open: {e}");
            None
        }
    }
}

fn camera_json(row: &CameraRow, secret: Option<&CameraSecret>) -> Camera {
    Camera {
        id: row.id,
        room: row.room_id,
        name: row.name.clone(),
        url: secret.map(|s| s.url.clone()),
        transport: match row.transport() {
            crate::ingest::documents::RtspTransport::Udp => Transport::Udp,
            crate::ingest::documents::RtspTransport::Tcp => Transport::Tcp,
        },
        enabled: row.enabled,
        has_credentials: secret.is_some_and(|s| s.username.is_some() || s.password.is_some()),
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

async fn load<'e>(
    db: impl sqlx::PgExecutor<'e>,
    room: Uuid,
    camera: Uuid,
) -> Result<CameraRow, Problem> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM cameras WHERE id = $1 AND room_id = $2"
    ))
    .bind(camera)
    .bind(room)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| Problem::not_found("camera"))
}

/// A credential field of a request: absent (`None`), or set (`Some`) to a value or to none.
type Given = Option<Option<String>>;

/// Credentials given as fields, unless the URL carried some (both at once are refused).
fn credentials(
    url: &input::ParsedUrl,
    username: Option<&Option<String>>,
    password: Option<&Option<String>>,
) -> Result<(Given, Given), Problem> {
    if url.had_userinfo && (username.is_some() || password.is_some()) {
        return Err(Problem::validation(
            "`url` carries credentials: do not send `username` or `password` with it",
        ));
    }
    let username = username
        .map(|u| {
            u.as_deref()
                .map_or(Ok(None), |u| input::username(u, "`username`"))
        })
        .transpose()?;
    let password = password
        .map(|p| {
            p.as_deref()
                .map_or(Ok(None), |p| input::password(p, "`password`"))
        })
        .transpose()?;
    Ok((username, password))
}

/// The room's cameras (owner only).
#[utoipa::path(get, path = "/v1/rooms/{id}/cameras", operation_id = "listCameras", tag = "cameras", security(("bearer" = [])),
    params(("id" = String, Path, description = "The room's id (a UUID)")),
    responses((status = 200, body = CameraList), (status = 403, description = "Not the room's owner", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such room", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<Json<CameraList>> {
    let key = key(&state)?;
    let room = owned_room(&state, &user, &id).await?;
    let rows: Vec<CameraRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM cameras WHERE room_id = $1 ORDER BY created_at, id"
    ))
    .bind(room)
    .fetch_all(&state.db)
    .await?;
    let cameras = rows
        .iter()
        .map(|r| camera_json(r, open(key, r).as_ref()))
        .collect();
    Ok(Json(CameraList { cameras }))
}

/// Add a camera to a room (owner only; at most 16 per room).
///
/// The camera's `cameraSources/{id}` and `rooms/{room}/cameras/{id}` documents are written with
/// the row: if Firestore fails, nothing is stored.
#[utoipa::path(post, path = "/v1/rooms/{id}/cameras", operation_id = "createCamera", tag = "cameras", security(("bearer" = [])), request_body = NewCamera,
    params(("id" = String, Path, description = "The room's id (a UUID)")),
    responses((status = 201, body = Camera), (status = 403, description = "Not the room's owner", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such room", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The room has 16 cameras already (`too-many-cameras`)", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    ApiJson(new): ApiJson<NewCamera>,
) -> ApiResult<(StatusCode, Json<Camera>)> {
    let key = key(&state)?;
    let room = owned_room(&state, &user, &id).await?;
    let name = input::name(&new.name)?;
    let url = input::url(&new.url)?;
    let (given_username, given_password) = (new.username.map(Some), new.password.map(Some));
    let (username, password) = credentials(&url, given_username.as_ref(), given_password.as_ref())?;
    let secret = CameraSecret {
        url: url.url.clone(),
        username: username.flatten().or(url.username),
        password: password.flatten().or(url.password),
    };
    let camera = Uuid::new_v4();
    let sealed = seal(key, camera, &secret)?;
    let mut tx = state.db.begin().await?;
    // One creation at a time per room, so that parallel ones cannot pass the limit together.
    sqlx::query_as::<_, (Uuid,)>("SELECT id FROM rooms WHERE id = $1 FOR UPDATE")
        .bind(room)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Problem::not_found("room"))?;
    camera_docs::lock(&mut tx, camera).await?;
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM cameras WHERE room_id = $1")
        .bind(room)
        .fetch_one(&mut *tx)
        .await?;
    if count >= MAX_PER_ROOM {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "too-many-cameras",
            "Too many cameras",
            format!("a room has at most {MAX_PER_ROOM} cameras; remove one first"),
        ));
    }
    let row: CameraRow = sqlx::query_as(&format!(
        "INSERT INTO cameras (id, room_id, name, sealed, transport, enabled) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    ))
    .bind(camera)
    .bind(room)
    .bind(&name)
    .bind(&sealed)
    .bind(new.transport.unwrap_or_default().column())
    .bind(new.enabled.unwrap_or(true))
    .fetch_one(&mut *tx)
    .await?;
    camera_docs::put(&state.firestore, &row, Writes::ALL).await?;
    tx.commit().await?;
    tracing::info!(room = %room, camera = %camera, "camera added");
    Ok((StatusCode::CREATED, Json(camera_json(&row, Some(&secret)))))
}

/// A camera of the room (owner only).
#[utoipa::path(get, path = "/v1/rooms/{id}/cameras/{camera}", operation_id = "getCamera", tag = "cameras", security(("bearer" = [])),
    params(("id" = String, Path, description = "The room's id (a UUID)"), ("camera" = String, Path, description = "The camera's id (a UUID)")),
    responses((status = 200, body = Camera), (status = 403, description = "Not the room's owner", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such room or camera", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn get(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((id, camera)): Path<(String, String)>,
) -> ApiResult<Json<Camera>> {
    let key = key(&state)?;
    let room = owned_room(&state, &user, &id).await?;
    let row = load(&state.db, room, parse_camera(&camera)?).await?;
    Ok(Json(camera_json(&row, open(key, &row).as_ref())))
}

/// Change a camera (owner only): any of its fields.
///
/// Every field is validated before anything is written; the row and both Firestore documents
/// change together. Turning `enabled` on or off resets the public `state` (`idle` or
/// `disabled`).
#[utoipa::path(patch, path = "/v1/rooms/{id}/cameras/{camera}", operation_id = "updateCamera", tag = "cameras", security(("bearer" = [])), request_body = CameraChange,
    params(("id" = String, Path, description = "The room's id (a UUID)"), ("camera" = String, Path, description = "The camera's id (a UUID)")),
    responses((status = 200, body = Camera), (status = 403, description = "Not the room's owner", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such room or camera", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn update(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((id, camera)): Path<(String, String)>,
    ApiJson(change): ApiJson<CameraChange>,
) -> ApiResult<Json<Camera>> {
    let key = key(&state)?;
    let room = owned_room(&state, &user, &id).await?;
    let camera = parse_camera(&camera)?;
    let CameraChange {
        name,
        url,
        username,
        password,
        transport,
        enabled,
    } = change;
    if name.is_none()
        && url.is_none()
        && username.is_none()
        && password.is_none()
        && transport.is_none()
        && enabled.is_none()
    {
        return Err(Problem::validation(
            "send at least one of `name`, `url`, `username`, `password`, `transport`, `enabled`",
        ));
    }
    let name = not_null("name", name)?
        .map(|n| input::name(&n))
        .transpose()?;
    let url = not_null("url", url)?.map(|u| input::url(&u)).transpose()?;
    let transport = not_null("transport", transport)?;
    let enabled = not_null("enabled", enabled)?;
    let no_url = input::ParsedUrl {
        url: String::new(),
        had_userinfo: false,
        username: None,
        password: None,
    };
    let (username, password) = credentials(
        url.as_ref().unwrap_or(&no_url),
        username.as_ref(),
        password.as_ref(),
    )?;

    let mut tx = state.db.begin().await?;
    camera_docs::lock(&mut tx, camera).await?;
    let old = load(&mut *tx, room, camera).await?;
    let mut secret = open(key, &old);
    let mut sealed = old.sealed.clone();
    if url.is_some() || username.is_some() || password.is_some() {
        let mut next = match (secret.take(), &url) {
            (Some(current), _) => current,
            // Unreadable (another key): a new URL starts the settings afresh.
            (None, Some(_)) => CameraSecret {
                url: String::new(),
                username: None,
                password: None,
            },
            (None, None) => {
                return Err(Problem::validation(
                    "this camera's stored URL and credentials do not open with the server's current key: send `url` (with any credentials) again",
                ));
            }
        };
        if let Some(url) = url {
            next.url = url.url;
            if url.had_userinfo {
                next.username = url.username;
                next.password = url.password;
            }
        }
        if let Some(username) = username {
            next.username = username;
        }
        if let Some(password) = password {
            next.password = password;
        }
        sealed = seal(key, camera, &next)?;
        secret = Some(next);
    }
    let transport = transport.map_or_else(|| old.transport.clone(), |t| t.column().to_owned());
    let row: CameraRow = sqlx::query_as(&format!(
        "UPDATE cameras SET name = $2, sealed = $3, transport = $4, enabled = $5, updated_at = now() \
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(camera)
    .bind(name.unwrap_or_else(|| old.name.clone()))
    .bind(&sealed)
    .bind(transport)
    .bind(enabled.unwrap_or(old.enabled))
    .fetch_one(&mut *tx)
    .await?;
    let writes = Writes {
        source: row.source() != old.source(),
        public: row.name != old.name || row.enabled != old.enabled,
        state: row.enabled != old.enabled,
    };
    camera_docs::put(&state.firestore, &row, writes).await?;
    tx.commit().await?;
    Ok(Json(camera_json(&row, secret.as_ref())))
}

/// Remove a camera (owner only): its row and both documents.
#[utoipa::path(delete, path = "/v1/rooms/{id}/cameras/{camera}", operation_id = "deleteCamera", tag = "cameras", security(("bearer" = [])),
    params(("id" = String, Path, description = "The room's id (a UUID)"), ("camera" = String, Path, description = "The camera's id (a UUID)")),
    responses((status = 204, description = "Removed"), (status = 403, description = "Not the room's owner", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such room or camera", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn remove(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((id, camera)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    key(&state)?;
    let room = owned_room(&state, &user, &id).await?;
    let camera = parse_camera(&camera)?;
    let mut tx = state.db.begin().await?;
    camera_docs::lock(&mut tx, camera).await?;
    load(&mut *tx, room, camera).await?;
    camera_docs::delete(&state.firestore, &camera.to_string(), &[room.to_string()]).await?;
    sqlx::query("DELETE FROM cameras WHERE id = $1")
        .bind(camera)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(room = %room, camera = %camera, "camera removed");
    Ok(StatusCode::NO_CONTENT)
}
