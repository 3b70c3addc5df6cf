//! Room images, stored in PostgreSQL: a seeded set drawn by the project (SVG) and uploads
//! (PNG, JPEG or WebP up to 512 KiB). An upload must be what it says: its magic bytes match its
//! Content-Type, it decodes completely (the `image` crate, at most 4096 × 4096 pixels) and
//! nothing follows the image's end. Each user may store `FIRESFU_IMAGE_QUOTA_COUNT` images of
//! `FIRESFU_IMAGE_QUOTA_BYTES` bytes in all.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::auth::CurrentUser;
use super::problem::{ApiResult, Problem};

pub const MAX_UPLOAD_BYTES: usize = 512 * 1024;
/// Largest width and height an upload may decode to.
const MAX_DIMENSION: u32 = 4096;

/// What one user may store.
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    pub count: i64,
    pub bytes: i64,
}

/// (name, two gradient colours, shape) of the seeded images.
const SEEDS: [(&str, &str, &str, &str); 6] = [
    (
        "Aurora",
        "#0f2027",
        "#2c5364",
        r##"<path d="M0 150 C 120 60, 240 200, 400 90 L400 300 L0 300 Z" fill="#4ade80" opacity=".55"/>"##,
    ),
    (
        "Dunes",
        "#f7b267",
        "#f4845f",
        r##"<path d="M0 210 Q 130 130 260 200 T 400 180 L400 300 L0 300 Z" fill="#9c4a1a" opacity=".5"/>"##,
    ),
    (
        "Harbor",
        "#1e3c72",
        "#2a5298",
        r##"<rect x="60" y="170" width="60" height="80" fill="#fde68a"/><rect x="150" y="140" width="70" height="110" fill="#fca5a5"/><rect x="250" y="185" width="80" height="65" fill="#a7f3d0"/>"##,
    ),
    (
        "Orchard",
        "#56ab2f",
        "#a8e063",
        r##"<circle cx="100" cy="140" r="45" fill="#166534"/><circle cx="220" cy="120" r="55" fill="#15803d"/><circle cx="320" cy="150" r="40" fill="#166534"/>"##,
    ),
    (
        "Summit",
        "#8e9eab",
        "#eef2f3",
        r##"<path d="M0 260 L130 90 L210 190 L290 60 L400 260 Z" fill="#475569"/><path d="M260 100 L290 60 L320 100 Z" fill="#fff"/>"##,
    ),
    (
        "Tide",
        "#00c6ff",
        "#0072ff",
        r##"<path d="M0 190 Q 50 160 100 190 T 200 190 T 300 190 T 400 190 L400 300 L0 300 Z" fill="#e0f2fe" opacity=".7"/>"##,
    ),
];

/// A 4:3 picture whose label sits inside the middle 16:9 band (room cards show that band).
fn seed_svg(name: &str, a: &str, b: &str, shape: &str) -> String {
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 400 300" width="400" height="300"><defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="{a}"/><stop offset="1" stop-color="{b}"/></linearGradient></defs><rect width="400" height="300" fill="url(#g)"/>{shape}<text x="24" y="76" font-family="sans-serif" font-size="22" fill="#fff" opacity=".85">{name}</text></svg>"##
    )
}

fn seed_id(i: usize) -> Uuid {
    Uuid::from_u128(0x5eed_0000_0000_4000_8000_0000_0000_0000 + i as u128)
}

/// Inserts the seeded images if missing (idempotent; runs at every start).
pub async fn seed(db: &PgPool) -> Result<(), sqlx::Error> {
    for (i, (name, a, b, shape)) in SEEDS.iter().enumerate() {
        sqlx::query(
            "INSERT INTO images (id, owner_id, name, content_type, bytes, seeded) VALUES ($1, NULL, $2, 'image/svg+xml', $3, true) \
             ON CONFLICT (id) DO UPDATE SET bytes = EXCLUDED.bytes, name = EXCLUDED.name",
        )
        .bind(seed_id(i))
        .bind(name)
        .bind(seed_svg(name, a, b, shape).into_bytes())
        .execute(db)
        .await?;
    }
    Ok(())
}

#[derive(serde::Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    pub id: Uuid,
    pub name: String,
    pub content_type: String,
    /// One of the images every user may pick.
    pub seeded: bool,
    pub url: String,
}

#[derive(serde::Serialize, ToSchema)]
pub struct ImageList {
    pub images: Vec<Image>,
}

pub fn image_json(id: Uuid, name: &str, content_type: &str, seeded: bool) -> Image {
    Image {
        id,
        name: name.to_owned(),
        content_type: content_type.to_owned(),
        seeded,
        url: format!("/v1/images/{id}"),
    }
}

/// Seeded images and your uploads.
#[utoipa::path(get, path = "/v1/images", operation_id = "listImages", tag = "images", security(("bearer" = [])),
    responses((status = 200, body = ImageList)))]
pub async fn list(State(state): State<AppState>, user: CurrentUser) -> ApiResult<Json<ImageList>> {
    let rows: Vec<(Uuid, String, String, bool)> = sqlx::query_as(
        "SELECT id, name, content_type, seeded FROM images WHERE seeded OR owner_id = $1 ORDER BY seeded DESC, created_at, name",
    )
    .bind(user.id)
    .fetch_all(&state.db)
    .await?;
    Ok(Json(ImageList {
        images: rows
            .iter()
            .map(|(id, n, t, s)| image_json(*id, n, t, *s))
            .collect(),
    }))
}

/// An image's bytes.
#[utoipa::path(get, path = "/v1/images/{id}", operation_id = "getImage", tag = "images",
    params(("id" = String, Path, description = "The image's id (a UUID)")),
    responses((status = 200, description = "The image", content(
        (Vec<u8> = "image/png"), (Vec<u8> = "image/jpeg"), (Vec<u8> = "image/webp"), (String = "image/svg+xml"))),
        (status = 404, description = "No such image", body = super::problem::ProblemDoc, content_type = "application/problem+json")))]
pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = Uuid::parse_str(&id).map_err(|_| Problem::not_found("image"))?;
    let row: Option<(String, Vec<u8>)> =
        sqlx::query_as("SELECT content_type, bytes FROM images WHERE id = $1")
            .bind(id)
            .fetch_optional(&state.db)
            .await?;
    let (content_type, bytes) = row.ok_or_else(|| Problem::not_found("image"))?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type).map_err(|_| Problem::internal())?,
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400, immutable"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // An image opened on its own must not run anything (SVG can carry scripts).
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    Ok((headers, bytes).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// 1–64 characters; default `Upload`.
    #[param(min_length = 1, max_length = 64)]
    name: Option<String>,
}

/// What the bytes really are, if an accepted type.
fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a]) {
        Some("image/png")
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if bytes.len() > 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// Decodes the whole image (bounded in size) and checks that nothing follows its end marker.
fn decodes(bytes: &[u8], content_type: &str) -> Result<(u32, u32), String> {
    use image::ImageFormat;
    let format = match content_type {
        "image/png" => ImageFormat::Png,
        "image/jpeg" => ImageFormat::Jpeg,
        _ => ImageFormat::WebP,
    };
    let trailing = match format {
        ImageFormat::Png => {
            !bytes.ends_with(&[0xAE, 0x42, 0x60, 0x82])
                || !bytes[..bytes.len() - 4].ends_with(b"IEND")
        }
        ImageFormat::Jpeg => !bytes.ends_with(&[0xFF, 0xD9]),
        _ => {
            let declared = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
            declared + 8 != bytes.len() && declared + 9 != bytes.len()
        }
    };
    if trailing {
        return Err("data follows the end of the image".into());
    }
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_DIMENSION);
    limits.max_image_height = Some(MAX_DIMENSION);
    limits.max_alloc = Some(80 << 20);
    reader.limits(limits);
    let decoded = reader.decode().map_err(|e| e.to_string())?;
    Ok((decoded.width(), decoded.height()))
}

fn not_an_image(detail: impl Into<String>) -> Problem {
    Problem::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
        "Unsupported image",
        detail,
    )
}

/// Upload an image (the raw PNG, JPEG or WebP bytes, ≤ 512 KiB).
#[utoipa::path(post, path = "/v1/images", operation_id = "uploadImage", tag = "images", security(("bearer" = [])),
    params(UploadQuery),
    request_body(content((Vec<u8> = "image/png"), (Vec<u8> = "image/jpeg"), (Vec<u8> = "image/webp"))),
    responses((status = 201, body = Image),
        (status = 400, description = "Invalid name", body = super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Quota exceeded", body = super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "Larger than 512 KiB", body = super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "Not a PNG, JPEG or WebP image", body = super::problem::ProblemDoc, content_type = "application/problem+json")))]
pub async fn upload(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Image>)> {
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Image too large",
                format!("images may be at most {MAX_UPLOAD_BYTES} bytes"),
            )
        } else {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed-body",
                "Malformed body",
                r.body_text(),
            )
        }
    })?;
    let name = crate::text::label("name", q.name.as_deref().unwrap_or("Upload"), 64)
        .map_err(|e| Problem::validation(e.to_string()))?;
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let actual = sniff(&body);
    if actual.is_none() || actual != Some(declared.as_str()) {
        return Err(not_an_image(
            "upload a PNG, JPEG or WebP image with its matching Content-Type",
        ));
    }
    // Decoding is CPU and memory work: a bounded number at a time.
    let permit = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        state.decoders.clone().acquire_owned(),
    )
    .await
    .map_err(|_| super::problem::overloaded(2))?
    .map_err(|_| Problem::internal())?;
    let (bytes, content_type) = (body.clone(), declared.clone());
    let decoded = tokio::task::spawn_blocking(move || decodes(&bytes, &content_type))
        .await
        .map_err(|_| Problem::internal())?;
    drop(permit);
    let (width, height) = decoded.map_err(|e| not_an_image(format!("not a valid image: {e}")))?;

    let quota = state.config.image_quota;
    let id = Uuid::new_v4();
    let mut tx = state.db.begin().await?;
    // One upload at a time per user, so that parallel uploads cannot pass the quota together.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 42))")
        .bind(user.id)
        .execute(&mut *tx)
        .await?;
    let (count, bytes): (i64, i64) = sqlx::query_as(
        "SELECT count(*), coalesce(sum(length(bytes)), 0)::bigint FROM images WHERE owner_id = $1",
    )
    .bind(user.id)
    .fetch_one(&mut *tx)
    .await?;
    if count >= quota.count || bytes + body.len() as i64 > quota.bytes {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "quota-exceeded",
            "Image quota exceeded",
            format!(
                "you store {count} images ({bytes} bytes); the limit is {} images and {} bytes",
                quota.count, quota.bytes
            ),
        ));
    }
    sqlx::query(
        "INSERT INTO images (id, owner_id, name, content_type, bytes) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(user.id)
    .bind(&name)
    .bind(&declared)
    .bind(body.to_vec())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(width, height, bytes = body.len(), "image stored");
    Ok((
        StatusCode::CREATED,
        Json(image_json(id, &name, &declared, false)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_accepted_types_only() {
        assert_eq!(
            sniff(&[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0]),
            Some("image/png")
        );
        assert_eq!(sniff(&[0xff, 0xd8, 0xff, 0xe0]), Some("image/jpeg"));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"<svg onload=alert(1)>"), None);
        assert_eq!(sniff(b"GIF89a"), None);
    }

    #[test]
    fn seeded_images_are_distinct_svgs() {
        let svgs: Vec<String> = SEEDS
            .iter()
            .map(|(n, a, b, s)| seed_svg(n, a, b, s))
            .collect();
        assert!(
            svgs.iter()
                .all(|s| s.starts_with("<svg") && s.ends_with("</svg>"))
        );
        assert_eq!(
            svgs.iter().collect::<std::collections::HashSet<_>>().len(),
            SEEDS.len()
        );
        assert_ne!(seed_id(0), seed_id(1));
    }
}
