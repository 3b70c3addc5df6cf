//! The external identity bridge (the OpenChat video-bridge flow): a service that already knows
//! its users signs a short JWT for one of them; the sidecar verifies it, creates the room the
//! token names if it does not exist, and returns a join token for that user.

use std::path::Path as FsPath;

use anyhow::{Context, bail};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use uuid::Uuid;

use super::AppState;
use super::auth::ApiJson;
use super::problem::{ApiResult, Problem};
use crate::jointoken::Grants;

pub struct ExternalIssuer {
    pub issuer: String,
    key: DecodingKey,
    algorithm: Algorithm,
}

impl ExternalIssuer {
    /// The issuer's public key: Ed25519 (EdDSA), P-256 (ES256) or RSA (RS256), PEM.
    pub fn load(issuer: &str, path: &FsPath) -> anyhow::Result<ExternalIssuer> {
        let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let (key, algorithm) = if let Ok(k) = DecodingKey::from_ed_pem(&pem) {
            (k, Algorithm::EdDSA)
        } else if let Ok(k) = DecodingKey::from_ec_pem(&pem) {
            (k, Algorithm::ES256)
        } else if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
            (k, Algorithm::RS256)
        } else {
            bail!(
                "{} is not an Ed25519, P-256 or RSA public key in PEM",
                path.display()
            );
        };
        Ok(ExternalIssuer {
            issuer: issuer.to_owned(),
            key,
            algorithm,
        })
    }

    pub fn verify(&self, token: &str) -> Result<ExternalClaims, String> {
        let mut validation = Validation::new(self.algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.validate_aud = false;
        // A few seconds for clock skew between the issuer and us, not jsonwebtoken's minute.
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        jsonwebtoken::decode::<ExternalClaims>(token, &self.key, &validation)
            .map(|d| d.claims)
            .map_err(|e| e.to_string())
    }
}

#[derive(Debug, Deserialize)]
pub struct ExternalClaims {
    pub sub: String,
    /// The external room (chat) id.
    pub room: String,
    pub name: Option<String>,
    #[serde(rename = "roomName")]
    pub room_name: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BridgeRequest {
    /// A JWT from the configured external issuer: `sub`, `room`, optional `name`, `roomName`.
    token: String,
}

/// At most 64 UTF-16 units (the names' limit everywhere), cut at a character boundary.
fn truncated(name: &str) -> String {
    let mut out = String::new();
    for c in name.trim().chars() {
        if crate::text::utf16_len(&out) + c.len_utf16() > 64 {
            break;
        }
        out.push(c);
    }
    if out.is_empty() { "Guest".into() } else { out }
}

/// A stable, Firebase-safe uid for an external subject.
fn external_uid(issuer: &str, sub: &str) -> String {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("{issuer}\n{sub}").as_bytes(),
    );
    let hex: String = digest.as_ref()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("x-{hex}")
}

/// The user that owns rooms the bridge creates (no password: it cannot log in).
async fn bridge_owner(state: &AppState, issuer: &str) -> Result<Uuid, Problem> {
    let username = format!("~bridge-{}", &external_uid(issuer, "")[2..14]);
    let id = Uuid::new_v4();
    sqlx::query("INSERT INTO users (id, username, password_hash, firebase_uid) VALUES ($1, $2, NULL, $3) ON CONFLICT (username) DO NOTHING")
        .bind(id)
        .bind(&username)
        .bind(format!("b-{}", id.simple()))
        .execute(&state.db)
        .await?;
    let (owner,): (Uuid,) = sqlx::query_as("SELECT id FROM users WHERE username = $1")
        .bind(&username)
        .fetch_one(&state.db)
        .await?;
    Ok(owner)
}

/// Join through an external identity token.
#[utoipa::path(post, path = "/v1/bridge/join", operation_id = "bridgeJoin", tag = "tokens", request_body = BridgeRequest,
    responses((status = 200, body = super::join::Join),
        (status = 401, description = "The external token is not valid", body = super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No external issuer is configured", body = super::problem::ProblemDoc, content_type = "application/problem+json")))]
pub async fn join(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<BridgeRequest>,
) -> ApiResult<Json<super::join::Join>> {
    let issuer = state.config.bridge.as_ref().ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "bridge-disabled",
            "Bridge not configured",
            "no external issuer is configured (FIRESFU_BRIDGE_ISSUER)",
        )
    })?;
    let claims = issuer.verify(&req.token).map_err(|e| {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "external-token-invalid",
            "External token not valid",
            e,
        )
    })?;
    if claims.room.is_empty() || claims.room.len() > 128 || claims.sub.is_empty() {
        return Err(Problem::validation(
            "the external token needs non-empty `sub` and `room` (≤ 128 characters)",
        ));
    }
    // Every text from the token that is stored or shown: no control or bidi characters.
    for (field, text) in [
        ("room", Some(&claims.room)),
        ("sub", Some(&claims.sub)),
        ("roomName", claims.room_name.as_ref()),
        ("name", claims.name.as_ref()),
    ] {
        if let Some(text) = text
            && let Some(c) = text.chars().find(|c| crate::text::is_forbidden(*c))
        {
            return Err(Problem::validation(format!(
                "the external token's `{field}` contains the character U+{:04X}",
                c as u32
            )));
        }
    }
    let existing: Option<(Uuid,)> =
        sqlx::query_as("SELECT room_id FROM bridged_rooms WHERE issuer = $1 AND external_id = $2")
            .bind(&issuer.issuer)
            .bind(&claims.room)
            .fetch_optional(&state.db)
            .await?;
    let room = match existing {
        Some((room,)) => room,
        None => {
            let owner = bridge_owner(&state, &issuer.issuer).await?;
            let name = claims
                .room_name
                .clone()
                .unwrap_or_else(|| claims.room.clone());
            let name = truncated(&name);
            let room = super::rooms::create_room(
                &state,
                owner,
                &name,
                None,
                super::rooms::DEFAULT_MAX_PRESENTERS,
            )
            .await?;
            let linked = sqlx::query("INSERT INTO bridged_rooms (issuer, external_id, room_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(&issuer.issuer)
                .bind(&claims.room)
                .bind(room)
                .execute(&state.db)
                .await?;
            if linked.rows_affected() == 0 {
                // Another request created it first: use theirs, drop ours.
                let _ =
                    super::firestore_sync::delete_room(&state.firestore, &room.to_string()).await;
                sqlx::query("DELETE FROM rooms WHERE id = $1")
                    .bind(room)
                    .execute(&state.db)
                    .await?;
                let (theirs,): (Uuid,) = sqlx::query_as(
                    "SELECT room_id FROM bridged_rooms WHERE issuer = $1 AND external_id = $2",
                )
                .bind(&issuer.issuer)
                .bind(&claims.room)
                .fetch_one(&state.db)
                .await?;
                theirs
            } else {
                room
            }
        }
    };
    let name = claims.name.clone().unwrap_or_else(|| claims.sub.clone());
    let name = truncated(&name);
    let uid = external_uid(&issuer.issuer, &claims.sub);
    let grants = Grants {
        publish: true,
        subscribe: true,
    };
    Ok(Json(
        super::join::issue(&state, &room.to_string(), &uid, &name, grants).await?,
    ))
}
