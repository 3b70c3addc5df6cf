//! Room images, stored in PostgreSQL: a seeded set drawn by the project (SVG) and uploads
//! (PNG, JPEG or WebP up to 512 KiB, checked by their magic bytes, not only their header).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use super::AppState;
use super::auth::CurrentUser;
use super::problem::{ApiResult, Problem};

pub const MAX_UPLOAD_BYTES: usize = 512 * 1024;

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

fn seed_svg(name: &str, a: &str, b: &str, shape: &str) -> String {
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 400 300" width="400" height="300"><defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="{a}"/><stop offset="1" stop-color="{b}"/></linearGradient></defs><rect width="400" height="300" fill="url(#g)"/>{shape}<text x="20" y="40" font-family="sans-serif" font-size="22" fill="#fff" opacity=".85">{name}</text></svg>"##
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

pub fn image_json(id: Uuid, name: &str, content_type: &str, seeded: bool) -> Value {
    json!({"id": id, "name": name, "contentType": content_type, "seeded": seeded, "url": format!("/v1/images/{id}")})
}

pub async fn list(State(state): State<AppState>, user: CurrentUser) -> ApiResult<Json<Value>> {
    let rows: Vec<(Uuid, String, String, bool)> = sqlx::query_as(
        "SELECT id, name, content_type, seeded FROM images WHERE seeded OR owner_id = $1 ORDER BY seeded DESC, created_at, name",
    )
    .bind(user.id)
    .fetch_all(&state.db)
    .await?;
    Ok(Json(
        json!({"images": rows.iter().map(|(id, n, t, s)| image_json(*id, n, t, *s)).collect::<Vec<_>>()}),
    ))
}

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

#[derive(Deserialize)]
pub struct UploadQuery {
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

pub async fn upload(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
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
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let actual = sniff(&body);
    if actual.is_none() || actual != Some(declared) {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported image",
            "upload a PNG, JPEG or WebP image with its matching Content-Type",
        ));
    }
    let name = q.name.unwrap_or_else(|| "Upload".into());
    if name.trim().is_empty() || name.chars().count() > 64 {
        return Err(Problem::validation("`name` must be 1–64 characters"));
    }
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO images (id, owner_id, name, content_type, bytes) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(user.id)
    .bind(name.trim())
    .bind(declared)
    .bind(body.to_vec())
    .execute(&state.db)
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(image_json(id, name.trim(), declared, false)),
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
