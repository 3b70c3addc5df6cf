//! `firesfu sidecar`: users, rooms, room images and join tokens on PostgreSQL, behind a small
//! HTTP API (RFC 9457 errors, OpenAPI at `/openapi.json`). It also mirrors rooms into
//! Firestore (`rooms/{id}`), which is where browsers and broadcast instances meet.

mod accounts;
mod auth;
mod bridge;
mod firestore_sync;
mod images;
mod join;
pub mod openapi;
pub use join::unix_now;
mod passwords;
pub mod problem;
mod ratelimit;
mod rooms;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{any, delete, get, post};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::gcp::GcpArgs;
use crate::jointoken::SigningKey;
use problem::Problem;

#[derive(Debug, Clone, clap::Args)]
pub struct SidecarArgs {
    #[command(flatten)]
    pub gcp: GcpArgs,
    /// PostgreSQL connection string.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// Address the HTTP API binds (port from APP_PORT).
    #[arg(long, env = "FIRESFU_SIDECAR_BIND_IP", default_value = "0.0.0.0")]
    pub bind_ip: std::net::IpAddr,
    #[arg(long, env = "APP_PORT", default_value_t = 8080)]
    pub app_port: u16,
    /// PKCS#8 PEM file of the Ed25519 key that signs join tokens (default: a new key at each
    /// start, which is fine for one development instance only).
    #[arg(long, env = "FIRESFU_JOIN_KEY_FILE")]
    pub join_key_file: Option<PathBuf>,
    /// Lifetime of join tokens, seconds (at most 600).
    #[arg(long, env = "FIRESFU_JOIN_TOKEN_SECS", default_value_t = 300)]
    pub join_token_secs: u64,
    /// Lifetime of access tokens, seconds; clients log in again after it.
    #[arg(long, env = "FIRESFU_ACCESS_TOKEN_SECS", default_value_t = 3600)]
    pub access_token_secs: u64,
    /// Take the client address from the first X-Forwarded-For entry (behind a load balancer).
    #[arg(long, env = "FIRESFU_TRUST_FORWARDED_FOR", default_value_t = false, action = clap::ArgAction::Set)]
    pub trust_forwarded_for: bool,
    /// Issuer (`iss`) of external identity tokens accepted by POST /v1/bridge/join.
    #[arg(long, env = "FIRESFU_BRIDGE_ISSUER")]
    pub bridge_issuer: Option<String>,
    /// PEM public key (Ed25519, ES256 or RS256) of that issuer.
    #[arg(long, env = "FIRESFU_BRIDGE_PUBLIC_KEY_FILE")]
    pub bridge_public_key_file: Option<PathBuf>,
    /// Service-account JSON used to mint Firebase custom tokens (production). Without it the
    /// join response tells the browser to use the emulator's mock user token.
    #[arg(long, env = "FIRESFU_FIREBASE_SERVICE_ACCOUNT")]
    pub firebase_service_account: Option<PathBuf>,
    /// Public Firebase web config for the browser app (production).
    #[arg(long, env = "FIRESFU_FIREBASE_API_KEY")]
    pub firebase_api_key: Option<String>,
    #[arg(long, env = "FIRESFU_FIREBASE_AUTH_DOMAIN")]
    pub firebase_auth_domain: Option<String>,
    /// The Firestore emulator as the browser reaches it (default: FIRESTORE_EMULATOR_HOST).
    #[arg(long, env = "FIRESFU_BROWSER_FIRESTORE_EMULATOR")]
    pub browser_firestore_emulator: Option<String>,
    /// Where the web app's files are (served at `/`).
    #[arg(long, env = "FIRESFU_WEB_ROOT", default_value = "web/dist")]
    pub web_root: PathBuf,
}

pub struct Config {
    /// What GET /v1/config tells the browser.
    pub public: serde_json::Value,
    pub join_token_ttl: Duration,
    pub access_token_ttl: Duration,
    pub trust_forwarded_for: bool,
    pub bridge: Option<bridge::ExternalIssuer>,
    pub firebase: join::FirebaseTokens,
}

#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub firestore: firestore::FirestoreDb,
    pub keys: Arc<SigningKey>,
    pub limiter: Arc<Mutex<ratelimit::LoginLimiter>>,
    pub config: Arc<Config>,
}

/// JSON request bodies are small; images have their own limit.
pub const JSON_BODY_LIMIT: usize = 16 * 1024;

pub fn router(state: AppState, web_root: PathBuf) -> Router {
    let api = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi::serve))
        .route("/.well-known/jwks.json", get(join::jwks))
        .route("/v1/config", get(public_config))
        .route("/v1/accounts", post(accounts::register))
        .route("/v1/sessions", post(accounts::login))
        .route("/v1/sessions/current", delete(accounts::logout))
        .route("/v1/me", get(accounts::me).delete(accounts::erase))
        .route(
            "/v1/images",
            get(images::list)
                .post(images::upload.layer(DefaultBodyLimit::max(images::MAX_UPLOAD_BYTES))),
        )
        .route("/v1/images/{id}", get(images::get))
        .route("/v1/rooms", get(rooms::list).post(rooms::create))
        .route(
            "/v1/rooms/{id}",
            get(rooms::get).patch(rooms::update).delete(rooms::remove),
        )
        .route("/v1/rooms/{id}/join", post(join::join))
        .route("/v1/bridge/join", post(bridge::join))
        // Unknown API paths are problems; everything else is the web app.
        .route("/v1/{*rest}", any(not_found))
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    let web = tower_http::services::ServeDir::new(web_root).append_index_html_on_directories(true);
    api.fallback_service(web)
}

/// One server span per request, named after the route (never the raw URI, which may carry ids).
fn http_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "other".into());
    tracing::info_span!(
        "http.request",
        otel.name = format!("{} {route}", request.method()),
        otel.kind = "server",
        http.request.method = %request.method(),
        http.route = route,
    )
}

async fn not_found() -> Problem {
    Problem::not_found("route")
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "see /openapi.json for this path's methods",
    )
}

/// Everything the browser app needs to start: the public Firebase config (no secret).
async fn public_config(State(state): State<AppState>) -> axum::Json<serde_json::Value> {
    axum::Json(state.config.public.clone())
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match sqlx::query("SELECT 1").execute(&state.db).await {
        Ok(_) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => Problem::from(e).into_response(),
    }
}

pub async fn connect_db(url: &str) -> anyhow::Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(3))
        .connect(url)
        .await
        .context("cannot connect to PostgreSQL (DATABASE_URL)")?;
    sqlx::migrate!("./migrations")
        .run(&pool)
        .await
        .context("cannot apply the database migrations")?;
    images::seed(&pool)
        .await
        .context("cannot seed the room images")?;
    Ok(pool)
}

pub async fn run(args: SidecarArgs) -> anyhow::Result<()> {
    let db = connect_db(&args.database_url).await?;
    let firestore = crate::gcp::firestore(&args.gcp).await?;
    let keys = match &args.join_key_file {
        Some(path) => SigningKey::from_pem(
            &std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        )?,
        None => {
            tracing::warn!(
                "no FIRESFU_JOIN_KEY_FILE: join tokens are signed with a key generated for this process"
            );
            SigningKey::generate()?
        }
    };
    let bridge = match (&args.bridge_issuer, &args.bridge_public_key_file) {
        (Some(issuer), Some(path)) => Some(bridge::ExternalIssuer::load(issuer, path)?),
        (None, None) => None,
        _ => anyhow::bail!("FIRESFU_BRIDGE_ISSUER and FIRESFU_BRIDGE_PUBLIC_KEY_FILE go together"),
    };
    let firebase = match &args.firebase_service_account {
        Some(path) => join::FirebaseTokens::service_account(path)?,
        None => join::FirebaseTokens::Emulator,
    };
    let emulator = args
        .browser_firestore_emulator
        .clone()
        .or_else(|| args.gcp.firestore_emulator_host.clone());
    let public = serde_json::json!({
        "firebase": {"projectId": args.gcp.project, "apiKey": args.firebase_api_key.clone().unwrap_or_else(|| "demo-key".into()),
                     "authDomain": args.firebase_auth_domain},
        "firestoreEmulator": emulator,
    });
    let config = Config {
        public,
        join_token_ttl: Duration::from_secs(args.join_token_secs.clamp(30, 600)),
        access_token_ttl: Duration::from_secs(args.access_token_secs.max(60)),
        trust_forwarded_for: args.trust_forwarded_for,
        bridge,
        firebase,
    };
    let state = AppState {
        db,
        firestore,
        keys: Arc::new(keys),
        limiter: Arc::new(Mutex::new(ratelimit::LoginLimiter::default())),
        config: Arc::new(config),
    };
    let app = router(state, args.web_root.clone())
        .layer(axum::middleware::from_fn_with_state(
            crate::telemetry::metrics::HttpInstruments::default(),
            crate::telemetry::metrics::record_http,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(http_span));
    let addr = SocketAddr::new(args.bind_ip, args.app_port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind {addr}"))?;
    tracing::info!(addr = %listener.local_addr()?, "sidecar is serving");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(crate::process::shutdown_signal())
    .await?;
    Ok(())
}
