//! API keys: how an application's own server calls the sidecar (webhook endpoints today). An
//! operator creates and revokes them with `firesfu apikey`; a key is `fsk_` + 43 random
//! characters, shown once, stored as its SHA-256, and carries scopes. Requests send it as
//! `Authorization: Bearer fsk_…`.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sqlx::PgPool;
use uuid::Uuid;

use super::AppState;
use super::auth::token_hash;
use super::problem::Problem;

/// What a key may do.
pub const SCOPES: [(&str, &str); 4] = [
    (
        "webhooks",
        "manage webhook endpoints, list and replay failed deliveries",
    ),
    ("rooms:read", "list rooms, their calls and participants"),
    (
        "participants:write",
        "remove participants from rooms, mute their tracks",
    ),
    (
        "tokens:write",
        "mint join tokens for the application's own users",
    ),
];

pub const PREFIX: &str = "fsk_";

/// A request authenticated by a valid (not revoked) API key.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    pub scopes: Vec<String>,
}

impl ApiKey {
    /// 403 unless the key has `scope`.
    pub fn require(&self, scope: &str) -> Result<(), Problem> {
        if self.scopes.iter().any(|s| s == scope) {
            Ok(())
        } else {
            Err(Problem::new(
                StatusCode::FORBIDDEN,
                "missing-scope",
                "The API key lacks a scope",
                format!("this API key does not have the `{scope}` scope"),
            ))
        }
    }
}

fn unauthorized(detail: &str) -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Authentication required",
        detail.to_owned(),
    )
}

impl FromRequestParts<AppState> for ApiKey {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let key = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .ok_or_else(|| unauthorized("send `Authorization: Bearer fsk_…` (an API key)"))?;
        if !key.starts_with(PREFIX) {
            return Err(unauthorized("this route takes an API key (`fsk_…`)"));
        }
        let row: Option<(Uuid, String, Vec<String>)> = sqlx::query_as(
            "UPDATE api_keys SET last_used_at = now() WHERE key_hash = $1 AND revoked_at IS NULL \
             RETURNING id, name, scopes",
        )
        .bind(token_hash(key))
        .fetch_optional(&state.db)
        .await?;
        let (id, name, scopes) =
            row.ok_or_else(|| unauthorized("the API key is unknown or revoked"))?;
        Ok(ApiKey { id, name, scopes })
    }
}

/// A new key: what to show once, and its hash.
pub fn new_key() -> (String, Vec<u8>) {
    let bytes: [u8; 32] = rand::random();
    let key = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = token_hash(&key);
    (key, hash)
}

/// Creates a key with `scopes` (each one of [`SCOPES`]); returns its id and the key.
pub async fn create(db: &PgPool, name: &str, scopes: &[String]) -> anyhow::Result<(Uuid, String)> {
    let name = name.trim();
    anyhow::ensure!(
        !name.is_empty() && name.chars().count() <= 80,
        "a key's name has 1–80 characters"
    );
    anyhow::ensure!(!scopes.is_empty(), "give the key at least one --scope");
    for scope in scopes {
        anyhow::ensure!(
            SCOPES.iter().any(|(s, _)| s == scope),
            "unknown scope {scope:?}; scopes: {}",
            SCOPES
                .iter()
                .map(|(s, what)| format!("{s} ({what})"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let (key, hash) = new_key();
    let id = Uuid::new_v4();
    sqlx::query("INSERT INTO api_keys (id, name, key_hash, scopes) VALUES ($1, $2, $3, $4)")
        .bind(id)
        .bind(name)
        .bind(hash)
        .bind(scopes)
        .execute(db)
        .await?;
    Ok((id, key))
}

/// Every key: id, name, scopes, created, last used, revoked.
pub async fn list(db: &PgPool) -> anyhow::Result<Vec<serde_json::Value>> {
    type Row = (
        Uuid,
        String,
        Vec<String>,
        chrono::DateTime<chrono::Utc>,
        Option<chrono::DateTime<chrono::Utc>>,
        Option<chrono::DateTime<chrono::Utc>>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, name, scopes, created_at, last_used_at, revoked_at FROM api_keys \
         ORDER BY created_at",
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, scopes, created, used, revoked)| {
            serde_json::json!({"id": id, "name": name, "scopes": scopes, "createdAt": created,
                               "lastUsedAt": used, "revokedAt": revoked})
        })
        .collect())
}

/// Revokes a key at once (requests with it get 401). False if there is no such key.
pub async fn revoke(db: &PgPool, id: Uuid) -> anyhow::Result<bool> {
    let done =
        sqlx::query("UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1")
            .bind(id)
            .execute(db)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// `firesfu apikey`: the operator's side of API keys.
#[derive(Debug, Clone, clap::Args)]
pub struct ApikeyArgs {
    /// PostgreSQL connection string (the sidecar's).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    #[command(subcommand)]
    pub action: ApikeyAction,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ApikeyAction {
    /// Create a key; prints it (once) on stdout.
    Create {
        /// What the key is for (1–80 characters).
        #[arg(long)]
        name: String,
        /// A scope (repeat for more): webhooks, rooms:read, participants:write, tokens:write.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
    },
    /// List the keys (never the keys themselves), one JSON object per line.
    List,
    /// Revoke a key by id: requests with it are refused from now on.
    Revoke { id: Uuid },
}

pub async fn run(args: ApikeyArgs) -> anyhow::Result<()> {
    let db = super::connect_db(&args.database_url).await?;
    match args.action {
        ApikeyAction::Create { name, scopes } => {
            let (id, key) = create(&db, &name, &scopes).await?;
            eprintln!(
                "API key {id} ({name}) with scopes {}: keep it now, it is not shown again",
                scopes.join(", ")
            );
            println!("{key}");
        }
        ApikeyAction::List => {
            for key in list(&db).await? {
                println!("{key}");
            }
        }
        ApikeyAction::Revoke { id } => {
            anyhow::ensure!(revoke(&db, id).await?, "no API key {id}");
            eprintln!("API key {id} revoked");
        }
    }
    Ok(())
}
