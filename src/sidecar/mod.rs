//! `firesfu sidecar`: users, rooms, room images, IP cameras, join tokens, API keys and webhooks
//! on PostgreSQL, behind a small HTTP API (RFC 9457 errors, OpenAPI at `/openapi.json`); WHIP
//! ingest; webhook delivery of room events (`webhooks`). It also mirrors rooms
//! and cameras into Firestore (`rooms/{id}`, `cameraSources/{id}`), which is where browsers and
//! broadcast instances meet.

mod accounts;
pub mod apikeys;
mod auth;
mod bridge;
mod camera_docs;
mod camera_input;
mod cameras;
mod firebase_auth;
mod firestore_sync;
mod images;
mod join;
pub mod openapi;
pub use join::unix_now;
mod passwords;
pub mod problem;
mod ratelimit;
mod reconcile;
mod rooms;
mod server;
pub mod turn;
pub mod webhooks;
mod whip;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::any;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::gcp::GcpArgs;
use crate::jointoken::SigningKey;
use crate::sealed::SealKey;
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
    /// Behind proxies that append to X-Forwarded-For: how many entries they append. The client
    /// address is the entry that many places from the right (Google's Application Load
    /// Balancer appends `<client>, <load balancer>`: 2); entries further left are the client's
    /// own say-so and never trusted. 0: the TCP peer's address.
    #[arg(long, env = "FIRESFU_FORWARDED_FOR_HOPS", default_value_t = 0)]
    pub forwarded_for_hops: usize,
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
    /// The service account (email) this workload runs as, signing Firebase custom tokens through
    /// Google without a key file (Workload Identity; it needs roles/iam.serviceAccountTokenCreator
    /// on itself). Production alternative to FIRESFU_FIREBASE_SERVICE_ACCOUNT.
    #[arg(long, env = "FIRESFU_FIREBASE_SIGNING_ACCOUNT")]
    pub firebase_signing_account: Option<String>,
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
    /// Memory password hashing may use, MiB: one concurrent Argon2id hash per 19 MiB.
    #[arg(long, env = "FIRESFU_PASSWORD_HASH_MEMORY_MIB", default_value_t = 64)]
    pub password_hash_memory_mib: usize,
    /// How long a login or registration waits for a hashing slot before 503, milliseconds.
    #[arg(long, env = "FIRESFU_PASSWORD_HASH_QUEUE_MS", default_value_t = 2000)]
    pub password_hash_queue_ms: u64,
    /// How many logins and registrations may wait for a hashing slot at once (then 503).
    #[arg(long, env = "FIRESFU_PASSWORD_HASH_QUEUE_MAX", default_value_t = 32)]
    pub password_hash_queue_max: usize,
    /// Accounts one address may create per hour.
    #[arg(long, env = "FIRESFU_REGISTRATIONS_PER_HOUR", default_value_t = 10)]
    pub registrations_per_hour: u32,
    /// Images one user may upload.
    #[arg(long, env = "FIRESFU_IMAGE_QUOTA_COUNT", default_value_t = 20)]
    pub image_quota_count: i64,
    /// Bytes of images one user may store.
    #[arg(long, env = "FIRESFU_IMAGE_QUOTA_BYTES", default_value_t = 4 << 20)]
    pub image_quota_bytes: i64,
    /// How often Firestore's room and camera documents are reconciled with PostgreSQL, seconds.
    #[arg(long, env = "FIRESFU_ROOM_RECONCILE_SECS", default_value_t = 300)]
    pub room_reconcile_secs: u64,
    /// STUN servers for clients, comma-separated (`stun:host:3478`); in `/v1/config` and
    /// every join's `iceServers`.
    #[arg(long, env = "FIRESFU_STUN_URLS", value_delimiter = ',')]
    pub stun_urls: Vec<String>,
    /// TURN servers for clients, comma-separated (`turn:host:3478?transport=udp`,
    /// `turn:host:3478?transport=tcp`, `turns:host:5349?transport=tcp`); every join gets
    /// credentials for them (TURN REST API scheme, coturn's `use-auth-secret`).
    #[arg(long, env = "FIRESFU_TURN_URLS", value_delimiter = ',')]
    pub turn_urls: Vec<String>,
    /// The secret shared with the TURN server (`static-auth-secret`). Prefer the file.
    #[arg(long, env = "FIRESFU_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,
    /// A file holding that secret.
    #[arg(long, env = "FIRESFU_TURN_SECRET_FILE")]
    pub turn_secret_file: Option<PathBuf>,
    /// How long TURN credentials stay valid, seconds: the longest meeting (a TURN server
    /// refuses to refresh an allocation past it).
    #[arg(long, env = "FIRESFU_TURN_TTL_SECS", default_value_t = 12 * 3600)]
    pub turn_ttl_secs: u64,
    /// The key camera URLs and credentials are sealed with (AES-256-GCM): 32 bytes in base64
    /// (`openssl rand -base64 32`), the same for every sidecar and broadcast instance. Without
    /// it the camera API answers 503. Prefer the file.
    #[arg(long, env = "FIRESFU_CAMERA_KEY", hide_env_values = true)]
    pub camera_key: Option<crate::sealed::KeyText>,
    /// A file holding that key.
    #[arg(long, env = "FIRESFU_CAMERA_KEY_FILE")]
    pub camera_key_file: Option<PathBuf>,
    /// How long a WHIP POST waits for the broadcast's answer before 503, milliseconds
    /// (500–7500: OBS gives up after 8 s).
    #[arg(long, env = "FIRESFU_WHIP_ANSWER_MS", default_value_t = 6000)]
    pub whip_answer_ms: u64,
    #[command(flatten)]
    pub webhooks: webhooks::WebhookArgs,
}

/// The camera key, from FIRESFU_CAMERA_KEY or FIRESFU_CAMERA_KEY_FILE: none (cameras off), or
/// a key that parses (anything else stops the sidecar, with the reason).
fn camera_key(args: &SidecarArgs) -> anyhow::Result<Option<SealKey>> {
    crate::sealed::load_key(args.camera_key.as_ref(), args.camera_key_file.as_deref())
}

pub struct Config {
    /// What GET /v1/config tells the browser.
    pub public: serde_json::Value,
    pub image_quota: images::Quota,
    pub join_token_ttl: Duration,
    pub access_token_ttl: Duration,
    pub forwarded_for_hops: usize,
    pub bridge: Option<bridge::ExternalIssuer>,
    pub firebase: firebase_auth::FirebaseTokens,
    pub ice: turn::IceConfig,
    /// How long a WHIP POST waits for the answer.
    pub whip_answer: Duration,
}

#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub firestore: firestore::FirestoreDb,
    pub keys: Arc<SigningKey>,
    pub limiter: Arc<Mutex<ratelimit::LoginLimiter>>,
    pub registrations: Arc<Mutex<ratelimit::RegistrationLimiter>>,
    pub hasher: Arc<passwords::Hasher>,
    /// Image decodes running at once.
    pub decoders: Arc<tokio::sync::Semaphore>,
    pub config: Arc<Config>,
    /// Seals camera settings; `None`: the camera API answers 503.
    pub camera_key: Option<Arc<SealKey>>,
}

/// JSON request bodies are small; images have their own limit.
pub const JSON_BODY_LIMIT: usize = 16 * 1024;

/// Every API route and its OpenAPI document, from one list: a route is documented by its
/// handler's `#[utoipa::path]` as it is added here.
fn api() -> OpenApiRouter<AppState> {
    let upload_limit = DefaultBodyLimit::max(images::MAX_UPLOAD_BYTES);
    let (image_schemas, image_paths, image_routes) = routes!(images::list, images::upload);
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(serve_openapi))
        .routes(routes!(join::jwks))
        .routes(routes!(public_config))
        .routes(routes!(accounts::register))
        .routes(routes!(accounts::login))
        .routes(routes!(accounts::logout))
        .routes(routes!(accounts::me, accounts::erase))
        .routes((image_schemas, image_paths, image_routes.layer(upload_limit)))
        .routes(routes!(images::get))
        .routes(routes!(rooms::list, rooms::create))
        .routes(routes!(rooms::get, rooms::update, rooms::remove))
        .routes(routes!(cameras::list, cameras::create))
        .routes(routes!(cameras::get, cameras::update, cameras::remove))
        .routes(routes!(join::join))
        .routes(routes!(bridge::join))
        .routes(routes!(webhooks::api::list, webhooks::api::create))
        .routes(routes!(
            webhooks::api::get,
            webhooks::api::update,
            webhooks::api::remove
        ))
        .routes(routes!(webhooks::api::rotate))
        .routes(routes!(webhooks::api::failed))
        .routes(routes!(webhooks::api::replay))
        .routes(routes!(server::rooms))
        .routes(routes!(server::participants))
        .routes(routes!(server::remove))
        .routes(routes!(server::mute))
        .routes(routes!(server::token))
        .routes(whip_routes(routes!(
            whip::endpoint_options,
            whip::endpoint_get,
            whip::publish
        )))
        .routes(whip_routes(routes!(
            whip::session_options,
            whip::session_get,
            whip::trickle,
            whip::stop
        )))
        .routes(whip_routes(routes!(
            whip::whep::view_options,
            whip::whep::view
        )))
        .routes(whip_routes(routes!(
            whip::whep::view_presenter_options,
            whip::whep::view_presenter
        )))
        .routes(whip_routes(routes!(
            whip::whep::viewer_options,
            whip::whep::viewer_trickle,
            whip::whep::viewer_stop
        )))
}

type Routes = utoipa_axum::router::UtoipaMethodRouter<AppState>;

/// WHIP's routes answer with CORS headers and a Bearer challenge (`whip::cors`).
fn whip_routes((schemas, paths, router): Routes) -> Routes {
    (
        schemas,
        paths,
        router.layer(axum::middleware::from_fn(whip::cors)),
    )
}

/// The routes and their complete document.
pub fn api_router_for_docs() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = api().split_for_parts();
    openapi::finish(&mut doc);
    (router, doc)
}

pub fn router(state: AppState, web_root: PathBuf) -> Router {
    let (api, doc) = api_router_for_docs();
    let doc = Arc::new(openapi::to_json(&doc));
    let api = api
        // Unknown API paths are problems; everything else is the web app.
        .route("/v1/{*rest}", any(not_found))
        .route("/whip/{*rest}", any(not_found))
        .route("/whep/{*rest}", any(not_found))
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(axum::Extension(OpenApiJson(doc)))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    let web = tower_http::services::ServeDir::new(web_root).append_index_html_on_directories(true);
    api.fallback_service(web)
}

#[derive(Clone)]
struct OpenApiJson(Arc<serde_json::Value>);

/// This document.
#[utoipa::path(get, path = "/openapi.json", operation_id = "openapi", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
async fn serve_openapi(
    axum::Extension(OpenApiJson(doc)): axum::Extension<OpenApiJson>,
) -> axum::Json<serde_json::Value> {
    axum::Json((*doc).clone())
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
#[utoipa::path(get, path = "/v1/config", operation_id = "config", tag = "operations",
    responses((status = 200, description = "`firebase` (projectId, apiKey, authDomain), `firestoreEmulator` (host:port in development, else null) and `iceServers` (STUN only: TURN credentials come with a join)", body = Object)))]
async fn public_config(State(state): State<AppState>) -> axum::Json<serde_json::Value> {
    axum::Json(state.config.public.clone())
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "operations",
    responses((status = 200, description = "ok", body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// The database is reachable.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "operations",
    responses((status = 200, description = "ready", body = String, content_type = "text/plain")))]
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
    let camera_key = camera_key(&args)?;
    if camera_key.is_none() {
        tracing::info!("no FIRESFU_CAMERA_KEY: the camera API answers 503 not-configured");
    }
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
    let firebase = match (
        &args.firebase_service_account,
        &args.firebase_signing_account,
    ) {
        (Some(path), None) => firebase_auth::FirebaseTokens::key_file(path)?,
        (None, Some(email)) => firebase_auth::FirebaseTokens::from_adc(email).await?,
        (None, None) => firebase_auth::FirebaseTokens::Emulator,
        (Some(_), Some(_)) => anyhow::bail!(
            "set FIRESFU_FIREBASE_SERVICE_ACCOUNT (a key file) or FIRESFU_FIREBASE_SIGNING_ACCOUNT (no key file), not both"
        ),
    };
    let emulator = args
        .browser_firestore_emulator
        .clone()
        .or_else(|| args.gcp.firestore_emulator_host.clone());
    let turn_secret = match (&args.turn_secret, &args.turn_secret_file) {
        (Some(_), Some(_)) => {
            anyhow::bail!("set FIRESFU_TURN_SECRET or FIRESFU_TURN_SECRET_FILE, not both")
        }
        (Some(secret), None) => Some(secret.clone()),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        ),
        (None, None) => None,
    };
    let ice = turn::IceConfig::new(
        args.stun_urls.clone(),
        args.turn_urls.clone(),
        turn_secret,
        Duration::from_secs(args.turn_ttl_secs.max(60)),
    )?;
    let public = serde_json::json!({
        "firebase": {"projectId": args.gcp.project, "apiKey": args.firebase_api_key.clone().unwrap_or_else(|| "demo-key".into()),
                     "authDomain": args.firebase_auth_domain},
        "firestoreEmulator": emulator,
        "iceServers": ice.public(),
    });
    let config = Config {
        public,
        image_quota: images::Quota {
            count: args.image_quota_count,
            bytes: args.image_quota_bytes,
        },
        join_token_ttl: Duration::from_secs(args.join_token_secs.clamp(30, 600)),
        access_token_ttl: Duration::from_secs(args.access_token_secs.max(60)),
        forwarded_for_hops: args.forwarded_for_hops,
        bridge,
        firebase,
        ice,
        whip_answer: Duration::from_millis(args.whip_answer_ms.clamp(500, 7500)),
    };
    let state = AppState {
        db,
        firestore,
        keys: Arc::new(keys),
        limiter: Arc::new(Mutex::new(ratelimit::LoginLimiter::default())),
        registrations: Arc::new(Mutex::new(ratelimit::RegistrationLimiter::new(
            args.registrations_per_hour,
        ))),
        hasher: Arc::new(passwords::Hasher::new(passwords::HasherConfig {
            memory_mib: args.password_hash_memory_mib,
            queue_wait: Duration::from_millis(args.password_hash_queue_ms),
            queue_max: args.password_hash_queue_max,
        })),
        decoders: Arc::new(tokio::sync::Semaphore::new(2)),
        config: Arc::new(config),
        camera_key: camera_key.map(Arc::new),
    };
    let deliverers = webhooks::start(&state.db, &args.gcp.project, &args.webhooks)?;
    let reconciler = tokio::spawn(reconcile::run(
        state.clone(),
        Duration::from_secs(args.room_reconcile_secs),
    ));
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
    reconciler.abort();
    for task in deliverers {
        task.abort();
    }
    Ok(())
}
