//! WHIP ingest (RFC 9725): OBS, GStreamer and other WHIP clients publish into a room with one
//! HTTP POST. It is a bridge onto the session-document protocol (docs/signalling.md): the POST
//! writes the session document `rooms/{room}/sessions/{session}` with the offer, as a browser
//! would, and waits for the broadcast instance's answer in it. The broadcast stays answer-only;
//! fleet placement, join tokens and every limit apply unchanged, and the publisher appears in
//! the room like anyone else.
//!
//! - Auth: the bearer is a join token for the room (passed to the broadcast untouched), or an
//!   access token, for which a publish-only join token is minted as `POST /v1/rooms/{id}/join`
//!   mints one. Join tokens are checked here first (signature, expiry, room), so a forged one
//!   costs no Firestore write; the broadcast checks them again, with single use and grants.
//! - The session resource belongs to the bearer that created it: PATCH and DELETE must present
//!   the same token (its SHA-256 is kept in `whip_sessions`). A session id is no secret (the
//!   roster shows it to every member), so knowing the URL is not enough.
//! - The server is ICE-lite and learns the client's addresses from its connectivity checks:
//!   trickled candidates are acknowledged (204) and dropped; ICE restarts are refused (422).

use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::header::{self, HeaderName};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use firestore::FirestoreTimestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::AppState;
use super::auth::{token_hash, user_for_token};
use super::join::{JoinRequest, join_as, room_fields, unix_now};
use super::problem::Problem;
use super::rooms::parse_id;
use super::turn::IceServer;
use crate::docdb::{self, DocRef};
use crate::jointoken::{TokenError, VerifyingKeys};
use crate::media::offer::MAX_SDP_BYTES;
use crate::signalling::protocol::{ErrorCode, ROOMS, SESSIONS};

pub const SDP: &str = "application/sdp";
pub const SDPFRAG: &str = "application/trickle-ice-sdpfrag";
/// An oversized body up to this size is read (and dropped) before the 413.
const DRAIN_BYTES: usize = 256 * 1024;
/// Trickle bodies are a few candidates.
const MAX_PATCH_BYTES: usize = 16 * 1024;
/// `expiresAt` of a new session document (the broadcast moves it while the session lives).
const SESSION_TTL: Duration = Duration::from_secs(3600);
/// `Retry-After` when no answer came in time.
const RETRY_NO_ANSWER_SECS: u64 = 2;

/// What the session resource's URL is.
pub fn location(room: &str, session: &str) -> String {
    format!("/whip/v1/rooms/{room}/sessions/{session}")
}

/// The media type of the body, parameters and case aside.
pub fn has_media_type(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(expected))
}

/// The token of `Authorization: Bearer <token>` (the scheme in any case, RFC 6750).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A join token is a JWT (three dot-separated parts); access tokens have no dot.
fn is_join_token(token: &str) -> bool {
    token.split('.').count() == 3
}

/// The line ending an SDP uses (CRLF per RFC 8866; some tools write LF).
fn eol(sdp: &str) -> &'static str {
    if sdp.contains("\r\n") { "\r\n" } else { "\n" }
}

/// `(kind, port, mid)` of every m-line.
fn m_lines(sdp: &str) -> Vec<(String, String, Option<String>)> {
    let mut out: Vec<(String, String, Option<String>)> = Vec::new();
    for line in sdp.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            let mut parts = m.split_whitespace();
            let kind = parts.next().unwrap_or_default().to_owned();
            let port = parts.next().unwrap_or_default().to_owned();
            out.push((kind, port, None));
        } else if let (Some(mid), Some(last)) = (line.strip_prefix("a=mid:"), out.last_mut()) {
            last.2 = Some(mid.trim().to_owned());
        }
    }
    out
}

/// The offer as the broadcast is given it. The WebRTC stack answers an offer without a BUNDLE
/// group by rejecting every m-line, while a client with a single track may well offer none
/// (GStreamer's webrtcbin with one track and `bundle-policy` none): one m-line is one transport
/// either way, so such an offer is given a BUNDLE group of its mid here, and the answer loses
/// it again ([`unbundled`]). `Ok((offer, added))`; several m-lines without BUNDLE are refused
/// (RFC 9725 §4.4.1 requires max-bundle).
pub fn bundled(sdp: &str) -> Result<(String, bool), String> {
    if sdp.lines().any(|l| l.starts_with("a=group:BUNDLE")) {
        return Ok((sdp.to_owned(), false));
    }
    let lines = m_lines(sdp);
    match lines.as_slice() {
        [] => Ok((sdp.to_owned(), false)),
        [(_, _, Some(mid))] => {
            let at = sdp.find("\nm=").map_or(0, |i| i + 1);
            let mut out = String::with_capacity(sdp.len() + 32);
            out.push_str(&sdp[..at]);
            out.push_str(&format!("a=group:BUNDLE {mid}{}", eol(sdp)));
            out.push_str(&sdp[at..]);
            Ok((out, true))
        }
        [_] => Ok((sdp.to_owned(), false)),
        _ => Err(
            "an offer with several m-lines must BUNDLE them (max-bundle, RFC 9725 §4.4.1)".into(),
        ),
    }
}

/// The answer without its BUNDLE group (for an offer that had none).
pub fn unbundled(answer: &str) -> String {
    answer
        .split_inclusive('\n')
        .filter(|l| !l.starts_with("a=group:BUNDLE"))
        .collect()
}

/// The mids of the audio and video m-lines the answer rejects (port 0).
pub fn rejected_mids(answer: &str) -> Vec<String> {
    m_lines(answer)
        .into_iter()
        .filter(|(kind, port, _)| (kind == "audio" || kind == "video") && port == "0")
        .map(|(_, _, mid)| mid.unwrap_or_default())
        .collect()
}

/// The offer's ICE username fragment (session level, or its first m-line's).
pub fn ice_ufrag(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .map(str::trim)
}

/// Which kinds the offer publishes (`media` of the session document).
pub fn published(sdp: &str) -> (bool, bool) {
    let (mut audio, mut video) = (false, false);
    let mut current: Option<(String, bool)> = None;
    let mut close = |m: Option<(String, bool)>| {
        if let Some((kind, sends)) = m
            && sends
        {
            audio |= kind == "audio";
            video |= kind == "video";
        }
    };
    for line in sdp.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            close(current.take());
            let mut parts = m.split_whitespace();
            let kind = parts.next().unwrap_or_default().to_owned();
            let open = parts.next() != Some("0");
            current = Some((kind, open));
        } else if let Some((_, sends)) = current.as_mut()
            && matches!(line, "a=recvonly" | "a=inactive")
        {
            *sends = false;
        }
    }
    close(current);
    (audio, video)
}

/// What a PATCH body (an SDP fragment, RFC 8840) asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patch {
    /// Trickled candidates (or nothing) for the current ICE session.
    Candidates,
    /// New ICE credentials: an ICE restart.
    Restart,
}

pub fn classify_patch(body: &str, ufrag: &str) -> Result<Patch, String> {
    let mut restart = false;
    for line in body.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
        let well_formed = line.len() >= 2
            && line.as_bytes()[1] == b'='
            && line.as_bytes()[0].is_ascii_lowercase();
        if !well_formed {
            return Err(format!(
                "not an SDP fragment line: {:?}",
                line.chars().take(40).collect::<String>()
            ));
        }
        if let Some(u) = line.strip_prefix("a=ice-ufrag:") {
            restart |= u.trim() != ufrag;
        }
    }
    Ok(if restart {
        Patch::Restart
    } else {
        Patch::Candidates
    })
}

/// Whether an `If-Match` value names `etag` (strong comparison, RFC 9110 §13.1.1).
pub fn if_match(value: &str, etag: &str) -> bool {
    let quoted = format!("\"{etag}\"");
    value.split(',').any(|v| v.trim() == quoted)
}

/// What the session document says about the offer (revision 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pending,
    Answer(String),
    Refused { code: String, message: String },
}

pub fn outcome(doc: &Value) -> Outcome {
    let state = doc["state"].as_str().unwrap_or_default();
    let answered = doc["answer"]["revision"].as_i64() == Some(1)
        || doc["answer"]["revision"].as_f64() == Some(1.0);
    if answered
        && matches!(state, "answered" | "connected")
        && let Some(sdp) = doc["answer"]["sdp"].as_str()
    {
        return Outcome::Answer(sdp.to_owned());
    }
    if matches!(state, "failed" | "closed") {
        return Outcome::Refused {
            code: doc["error"]["code"].as_str().unwrap_or("closed").to_owned(),
            message: doc["error"]["message"]
                .as_str()
                .unwrap_or("the session ended before it was answered")
                .to_owned(),
        };
    }
    Outcome::Pending
}

fn problem(status: StatusCode, slug: &'static str, title: &'static str, detail: &str) -> Problem {
    Problem::new(status, slug, title, detail)
}

/// The HTTP status for the broadcast's `error.code` about the offer (docs/sidecar.md, "WHIP").
/// The type's slug is the code itself, so clients see exactly what the broadcast said.
pub fn refusal(code: &str, message: &str) -> Problem {
    let slug = ErrorCode::ALL
        .iter()
        .map(|c| c.as_str())
        .find(|s| *s == code)
        .unwrap_or("offer-refused");
    let mut p = match slug {
        "room-not-found" => return Problem::not_found("room"),
        "sdp-too-large" => problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Offer too large",
            message,
        ),
        "token-required" | "token-invalid" | "token-expired" | "token-reused" => problem(
            StatusCode::UNAUTHORIZED,
            slug,
            "Join token not accepted",
            message,
        ),
        "token-wrong-room" | "token-forbidden" => problem(
            StatusCode::FORBIDDEN,
            slug,
            "Join token not allowed",
            message,
        ),
        "room-full" => problem(StatusCode::CONFLICT, slug, "Room full", message),
        "fleet-full" | "server-shutdown" | "session-lost" | "room-moved" | "peer-timeout"
        | "connect-failed" => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            slug,
            "Not available now",
            message,
        ),
        _ => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            slug,
            "Offer refused",
            message,
        ),
    };
    if p.status == StatusCode::SERVICE_UNAVAILABLE {
        p.retry_after = Some(if slug == "fleet-full" { 5 } else { 1 });
    }
    p
}

fn token_problem(e: TokenError) -> Problem {
    let detail = e.to_string();
    match e {
        TokenError::Expired => problem(
            StatusCode::UNAUTHORIZED,
            "token-expired",
            "Join token not accepted",
            &detail,
        ),
        TokenError::WrongRoom { .. } => problem(
            StatusCode::FORBIDDEN,
            "token-wrong-room",
            "Join token not allowed",
            &detail,
        ),
        TokenError::Forbidden(_) => problem(
            StatusCode::FORBIDDEN,
            "token-forbidden",
            "Join token not allowed",
            &detail,
        ),
        TokenError::Malformed(_)
        | TokenError::UnknownKey
        | TokenError::Invalid(_)
        | TokenError::TooLong => problem(
            StatusCode::UNAUTHORIZED,
            "token-invalid",
            "Join token not accepted",
            &detail,
        ),
    }
}

fn unauthorized() -> Problem {
    problem(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Authentication required",
        "send `Authorization: Bearer <token>`: a join token for this room (POST /v1/rooms/{id}/join) or an access token (POST /v1/sessions)",
    )
}

fn malformed_offer(detail: &str) -> Problem {
    problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "sdp-malformed",
        "Offer refused",
        detail,
    )
}

/// The body, at most `limit` bytes (413 beyond).
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>, Problem> {
    let too_large = || {
        problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Request body too large",
            &format!("the body may be at most {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(n) = declared.filter(|n| *n > limit) {
        // Read what was sent first (when it is not much): closing a connection with unread
        // bytes resets it, and the client may lose the 413 before it reads it.
        if n <= DRAIN_BYTES {
            let _ = axum::body::to_bytes(body, DRAIN_BYTES).await;
        }
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit)
        .await
        .map(|b| b.to_vec())
        .map_err(|_| too_large())
}

/// Who publishes: the session document's `uid`, `displayName` and `token`.
struct Publisher {
    uid: String,
    name: String,
    token: String,
    ice_servers: Vec<IceServer>,
    traceparent: Option<String>,
}

/// The publisher the bearer stands for (401, 403, or 404 for a room the database lacks).
async fn admit(state: &AppState, room: Uuid, token: &str) -> Result<Publisher, Problem> {
    if is_join_token(token) {
        let keys = VerifyingKeys::from_jwks(&state.keys.jwks()).map_err(|e| {
            tracing::error!("{e}");
            Problem::internal()
        })?;
        let claims = keys
            .verify(token, &room.to_string(), unix_now())
            .map_err(token_problem)?;
        let fields = room_fields(state, room).await?;
        super::firestore_sync::ensure_room(&state.firestore, &room.to_string(), &fields).await?;
        return Ok(Publisher {
            ice_servers: state.config.ice.for_user(&claims.sub, unix_now()),
            uid: claims.sub,
            name: claims.name,
            token: token.to_owned(),
            traceparent: crate::telemetry::current_traceparent(),
        });
    }
    let user = user_for_token(state, token)
        .await?
        .ok_or_else(unauthorized)?;
    let fields = room_fields(state, room).await?;
    let join = join_as(state, &user, room, fields, JoinRequest::publish_only()).await?;
    Ok(Publisher {
        uid: user.firebase_uid,
        name: join.display_name,
        token: join.token,
        ice_servers: join.ice_servers,
        traceparent: join.traceparent,
    })
}

/// The first write of a session document (docs/signalling.md, "Joining").
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewSession {
    v: i64,
    display_name: String,
    uid: String,
    token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<String>,
    offer: Value,
    state: String,
    media: Value,
    created_at: FirestoreTimestamp,
    expires_at: FirestoreTimestamp,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Closing {
    state: String,
    expires_at: FirestoreTimestamp,
}

fn terminal(doc: &Value) -> bool {
    matches!(doc["state"].as_str(), Some("closed" | "failed"))
}

/// Leaves the session (`state: "closed"`) unless it already ended.
async fn close_session(state: &AppState, room: &str, session: &str) -> Result<(), Problem> {
    let parent = state.firestore.parent_path(ROOMS, room)?.to_string();
    let doc = DocRef {
        parent: &parent,
        collection: SESSIONS,
        id: session,
    };
    let write = Closing {
        state: "closed".into(),
        expires_at: docdb::timestamp(SystemTime::now() + crate::signalling::store::ENDED_TTL),
    };
    docdb::update_if(
        &state.firestore,
        &doc,
        &["state", "expiresAt"],
        &write,
        |d| !terminal(d),
    )
    .await?;
    Ok(())
}

async fn read_session(
    state: &AppState,
    room: &str,
    session: &str,
) -> Result<Option<Value>, Problem> {
    let parent = state.firestore.parent_path(ROOMS, room)?.to_string();
    let doc: Option<Value> = docdb::timed(
        state
            .firestore
            .fluent()
            .select()
            .by_id_in(SESSIONS)
            .parent(&parent)
            .obj()
            .one(session),
    )
    .await?;
    docdb::meter::read(1);
    Ok(doc)
}

/// How long to wait before the `n`th read of the document: the broadcast answers in about
/// 100 ms, so often at first, then every quarter second.
fn poll_delay(n: u32) -> Duration {
    match n {
        0 => Duration::from_millis(25),
        1..=40 => Duration::from_millis(50),
        _ => Duration::from_millis(250),
    }
}

/// Writes the session document and waits for the answer to its offer.
async fn negotiate(
    state: &AppState,
    room: &str,
    session: &str,
    publisher: &Publisher,
    offer: &str,
) -> Result<String, Problem> {
    let now = SystemTime::now();
    let (audio, video) = published(offer);
    let doc = NewSession {
        v: 1,
        display_name: publisher.name.clone(),
        uid: publisher.uid.clone(),
        token: publisher.token.clone(),
        traceparent: publisher.traceparent.clone(),
        offer: json!({"sdp": offer, "revision": 1}),
        state: "offered".into(),
        media: json!({"audio": audio, "video": video}),
        created_at: docdb::timestamp(now),
        expires_at: docdb::timestamp(now + SESSION_TTL),
    };
    let parent = state.firestore.parent_path(ROOMS, room)?.to_string();
    docdb::timed(
        state
            .firestore
            .fluent()
            .insert()
            .into(SESSIONS)
            .document_id(session)
            .parent(&parent)
            .object(&doc)
            .execute::<()>(),
    )
    .await?;
    docdb::meter::wrote(1);
    let deadline = Instant::now() + state.config.whip_answer;
    for n in 0.. {
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(poll_delay(n).min(left)).await;
        match read_session(state, room, session)
            .await?
            .as_ref()
            .map(outcome)
        {
            Some(Outcome::Answer(sdp)) => return Ok(sdp),
            Some(Outcome::Refused { code, message }) => return Err(refusal(&code, &message)),
            Some(Outcome::Pending) => {}
            None => {
                return Err(refusal(
                    "session-lost",
                    "the session document was deleted before it was answered",
                ));
            }
        }
        if left.is_zero() {
            break;
        }
    }
    let mut p = problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "no-answer",
        "No answer in time",
        &format!(
            "no broadcast instance answered within {} ms; try again",
            state.config.whip_answer.as_millis()
        ),
    );
    p.retry_after = Some(RETRY_NO_ANSWER_SECS);
    Err(p)
}

/// One `Link` value per ICE server URL (RFC 9725 §4.6).
pub fn ice_links(servers: &[IceServer]) -> Vec<String> {
    let mut links = Vec::new();
    for server in servers {
        for url in &server.urls {
            let mut link = format!("<{url}>; rel=\"ice-server\"");
            if let (Some(user), Some(credential)) = (&server.username, &server.credential) {
                link.push_str(&format!(
                    "; username=\"{user}\"; credential=\"{credential}\"; credential-type=\"password\""
                ));
            }
            links.push(link);
        }
    }
    links
}

/// Removes what a failed POST left: the session document is closed, the row deleted.
async fn clean_up(state: &AppState, room: Uuid, session: &str) {
    if let Err(e) = close_session(state, &room.to_string(), session).await {
        tracing::warn!(%room, session, "cannot close a failed WHIP session: {}", e.detail);
    }
    if let Err(e) = sqlx::query("DELETE FROM whip_sessions WHERE room_id = $1 AND session_id = $2")
        .bind(room)
        .bind(session)
        .execute(&state.db)
        .await
    {
        tracing::warn!(%room, session, "cannot forget a failed WHIP session: {e}");
    }
}

/// CORS on every WHIP response (browsers may publish from another origin: the bearer is
/// explicit, never a cookie, so any origin may), and the Bearer challenge on every 401.
pub async fn cors(request: Request, next: Next) -> Response {
    fn set(h: &mut HeaderMap, name: &'static str, value: &'static str) {
        h.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    let preflight = request.method() == axum::http::Method::OPTIONS;
    let mut response = next.run(request).await;
    let unauthorized = response.status() == StatusCode::UNAUTHORIZED;
    let h = response.headers_mut();
    set(h, "access-control-allow-origin", "*");
    set(
        h,
        "access-control-expose-headers",
        "Location, ETag, Link, Accept-Post, Retry-After, WWW-Authenticate",
    );
    if preflight {
        set(
            h,
            "access-control-allow-methods",
            "GET, POST, PATCH, DELETE, OPTIONS",
        );
        set(
            h,
            "access-control-allow-headers",
            "Authorization, Content-Type, If-Match",
        );
        set(h, "access-control-max-age", "86400");
    }
    if unauthorized {
        set(h, "www-authenticate", "Bearer realm=\"firesfu\"");
    }
    response
}

/// CORS preflight of the WHIP endpoint.
#[utoipa::path(options, path = "/whip/v1/rooms/{id}", operation_id = "whipEndpointOptions", tag = "whip",
    params(("id" = String, Path, description = "The room's id (a UUID)")),
    responses((status = 204, description = "`Accept-Post: application/sdp` and CORS headers")))]
pub async fn endpoint_options() -> Response {
    (
        StatusCode::NO_CONTENT,
        [(HeaderName::from_static("accept-post"), SDP)],
    )
        .into_response()
}

/// The WHIP endpoint has no representation (RFC 9725 §4.1).
#[utoipa::path(get, path = "/whip/v1/rooms/{id}", operation_id = "whipEndpointGet", tag = "whip",
    params(("id" = String, Path, description = "The room's id (a UUID)")),
    responses((status = 204, description = "No content")))]
pub async fn endpoint_get() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// Publish into the room with WHIP: an SDP offer in, the answer out.
#[utoipa::path(post, path = "/whip/v1/rooms/{id}", operation_id = "whipPublish", tag = "whip", security(("bearer" = [])),
    params(("id" = String, Path, description = "The room's id (a UUID)")),
    request_body(content = String, content_type = "application/sdp", description = "The SDP offer (at most 64 KiB): `sendonly` audio and/or video, BUNDLEd"),
    responses(
        (status = 201, description = "The SDP answer. `Location`: the session resource; `ETag`: its ICE session; `Link`: STUN/TURN servers (`rel=\"ice-server\"`)", body = String, content_type = "application/sdp",
            headers(("Location" = String, description = "/whip/v1/rooms/{id}/sessions/{session}"), ("ETag" = String, description = "The ICE session (If-Match of PATCH)"))),
        (status = 401, description = "No bearer, an unknown access token, or a join token that is invalid, expired or used (`token-…`)", body = super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "A join token for another room or without the publish grant", body = super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such room", body = super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The room is full (`room-full`)", body = super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "The offer exceeds 64 KiB", body = super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/sdp`", body = super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "The offer was refused (the type names the broadcast's code: `sdp-malformed`, `no-usable-media`, `too-many-tracks`…)", body = super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "No answer in time (`no-answer`), no instance can take the room (`fleet-full`); see `Retry-After`", body = super::problem::ProblemDoc, content_type = "application/problem+json")))]
pub async fn publish(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let started = Instant::now();
    let room = parse_id(&id)?;
    let token = bearer(&headers).ok_or_else(unauthorized)?;
    if !has_media_type(&headers, SDP) {
        return Err(problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "send the offer as `Content-Type: application/sdp`",
        ));
    }
    let body = read_body(&headers, body, MAX_SDP_BYTES).await?;
    let sdp = std::str::from_utf8(&body)
        .ok()
        .filter(|s| s.starts_with("v=0"))
        .ok_or_else(|| {
            malformed_offer("the body is not an SDP offer (it must start with \"v=0\")")
        })?;
    let (offer, added_bundle) = bundled(sdp).map_err(|e| {
        problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bundle-required",
            "Offer refused",
            &e,
        )
    })?;
    let publisher = admit(&state, room, token).await?;

    let session = format!("whip-{}", Uuid::new_v4().simple());
    let etag = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>());
    sqlx::query(
        "INSERT INTO whip_sessions (room_id, session_id, owner_hash, etag, ice_ufrag) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(room)
    .bind(&session)
    .bind(token_hash(token))
    .bind(&etag)
    .bind(ice_ufrag(&offer).unwrap_or_default())
    .execute(&state.db)
    .await?;
    let room_id = room.to_string();
    let answer = match negotiate(&state, &room_id, &session, &publisher, &offer).await {
        Ok(answer) if added_bundle => unbundled(&answer),
        Ok(answer) => answer,
        Err(p) => {
            clean_up(&state, room, &session).await;
            tracing::info!(room = %room_id, session, code = p.slug, "WHIP offer not answered");
            return Err(p);
        }
    };
    // No partially successful answers (RFC 9725 §4.4.3): a track the room cannot carry (an
    // unsupported codec) fails the whole offer.
    let rejected = rejected_mids(&answer);
    if !rejected.is_empty() {
        clean_up(&state, room, &session).await;
        return Err(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no-usable-media",
            "Offer refused",
            &format!(
                "m-lines {} have no codec this server forwards (audio: Opus; video: VP8, H264)",
                rejected.join(", ")
            ),
        ));
    }
    tracing::info!(room = %room_id, session, ms = started.elapsed().as_millis() as u64, "WHIP session answered");
    let mut response = (StatusCode::CREATED, answer).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(SDP));
    let location = location(&room_id, &session);
    h.insert(
        header::LOCATION,
        HeaderValue::from_str(&location).map_err(|_| Problem::internal())?,
    );
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&format!("\"{etag}\"")).map_err(|_| Problem::internal())?,
    );
    for link in ice_links(&publisher.ice_servers) {
        if let Ok(value) = HeaderValue::from_str(&link) {
            h.append(header::LINK, value);
        }
    }
    Ok(response)
}

/// A WHIP session row: whose it is, its ETag and the offer's ICE ufrag.
struct Owned {
    etag: String,
    ufrag: String,
}

/// The session, if the bearer is the one that created it (404 unknown, 403 someone else's).
async fn owned(state: &AppState, room: Uuid, session: &str, token: &str) -> Result<Owned, Problem> {
    let row: Option<(Vec<u8>, String, String)> = sqlx::query_as(
        "SELECT owner_hash, etag, ice_ufrag FROM whip_sessions WHERE room_id = $1 AND session_id = $2",
    )
    .bind(room)
    .bind(session)
    .fetch_optional(&state.db)
    .await?;
    let (owner, etag, ufrag) = row.ok_or_else(|| Problem::not_found("WHIP session"))?;
    aws_lc_rs::constant_time::verify_slices_are_equal(&owner, &token_hash(token)).map_err(
        |_| {
            Problem::forbidden(
                "a WHIP session can be changed or ended only with the token that created it",
            )
        },
    )?;
    Ok(Owned { etag, ufrag })
}

/// CORS preflight of a WHIP session.
#[utoipa::path(options, path = "/whip/v1/rooms/{id}/sessions/{session}", operation_id = "whipSessionOptions", tag = "whip",
    params(("id" = String, Path, description = "The room's id (a UUID)"), ("session" = String, Path, description = "The session's id (from `Location`)")),
    responses((status = 204, description = "CORS headers")))]
pub async fn session_options() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// A WHIP session has no representation (RFC 9725 §4.1).
#[utoipa::path(get, path = "/whip/v1/rooms/{id}/sessions/{session}", operation_id = "whipSessionGet", tag = "whip",
    params(("id" = String, Path, description = "The room's id (a UUID)"), ("session" = String, Path, description = "The session's id (from `Location`)")),
    responses((status = 204, description = "No content")))]
pub async fn session_get() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// Trickle ICE (RFC 8840): acknowledged, not needed (the server is ICE-lite and learns the
/// client's addresses from its checks). ICE restarts are not supported.
#[utoipa::path(patch, path = "/whip/v1/rooms/{id}/sessions/{session}", operation_id = "whipTrickle", tag = "whip", security(("bearer" = [])),
    params(("id" = String, Path, description = "The room's id (a UUID)"), ("session" = String, Path, description = "The session's id (from `Location`)"),
        ("If-Match" = Option<String>, Header, description = "The session's `ETag` (required: 428 without it, 412 for another one; `*` asks for an ICE restart)")),
    request_body(content = String, content_type = "application/trickle-ice-sdpfrag", description = "Candidates (RFC 8840)"),
    responses(
        (status = 204, description = "Candidates acknowledged"),
        (status = 400, description = "Not an SDP fragment", body = super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not the token that created the session", body = super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` names another ICE session", body = super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "The body exceeds 16 KiB", body = super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/trickle-ice-sdpfrag`", body = super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "An ICE restart (not supported: the session keeps its ICE session)", body = super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 428, description = "No `If-Match`", body = super::problem::ProblemDoc, content_type = "application/problem+json")))]
pub async fn trickle(
    State(state): State<AppState>,
    Path((id, session)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, Problem> {
    let room = parse_id(&id)?;
    let token = bearer(&headers).ok_or_else(unauthorized)?;
    let row = owned(&state, room, &session, token).await?;
    let condition = headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            problem(
                StatusCode::PRECONDITION_REQUIRED,
                "precondition-required",
                "If-Match required",
                "send `If-Match` with the session's ETag",
            )
        })?;
    let restart = condition.trim() == "*";
    if !restart && !if_match(condition, &row.etag) {
        return Err(problem(
            StatusCode::PRECONDITION_FAILED,
            "precondition-failed",
            "ICE session changed",
            "`If-Match` does not name this session's ICE session (its ETag)",
        ));
    }
    if !has_media_type(&headers, SDPFRAG) {
        return Err(problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "send `Content-Type: application/trickle-ice-sdpfrag`",
        ));
    }
    let body = read_body(&headers, body, MAX_PATCH_BYTES).await?;
    let fragment = std::str::from_utf8(&body)
        .map_err(|_| super::auth::malformed("the body is not UTF-8 text"))?;
    let asked = classify_patch(fragment, &row.ufrag).map_err(super::auth::malformed)?;
    if restart || asked == Patch::Restart {
        return Err(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ice-restart-unsupported",
            "ICE restart not supported",
            "this server does not restart ICE through WHIP; the session keeps its ICE session (DELETE it and publish again to start over)",
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// End a WHIP session: the publisher leaves the room.
#[utoipa::path(delete, path = "/whip/v1/rooms/{id}/sessions/{session}", operation_id = "whipStop", tag = "whip", security(("bearer" = [])),
    params(("id" = String, Path, description = "The room's id (a UUID)"), ("session" = String, Path, description = "The session's id (from `Location`)")),
    responses(
        (status = 200, description = "Ended (its session document is closed)"),
        (status = 403, description = "Not the token that created the session", body = super::problem::ProblemDoc, content_type = "application/problem+json")))]
pub async fn stop(
    State(state): State<AppState>,
    Path((id, session)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, Problem> {
    let room = parse_id(&id)?;
    let token = bearer(&headers).ok_or_else(unauthorized)?;
    owned(&state, room, &session, token).await?;
    // Closed first: if Firestore fails, the row stays and DELETE can be repeated.
    close_session(&state, &room.to_string(), &session).await?;
    sqlx::query("DELETE FROM whip_sessions WHERE room_id = $1 AND session_id = $2")
        .bind(room)
        .bind(&session)
        .execute(&state.db)
        .await?;
    tracing::info!(room = %room, session, "WHIP session ended by its publisher");
    Ok(StatusCode::OK)
}

/// Forgets rows of sessions that ended without a DELETE (the publisher vanished, the room
/// moved, the account was erased): rows older than ten minutes whose document is gone or
/// ended. Returns how many it removed.
pub async fn sweep(state: &AppState) -> anyhow::Result<usize> {
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT room_id, session_id FROM whip_sessions WHERE created_at < now() - interval '10 minutes' ORDER BY created_at LIMIT 500",
    )
    .fetch_all(&state.db)
    .await?;
    let mut removed = 0;
    for (room, session) in rows {
        let doc = read_session(state, &room.to_string(), &session)
            .await
            .map_err(|p| anyhow::anyhow!("{}", p.detail))?;
        if doc.as_ref().is_none_or(terminal) {
            sqlx::query("DELETE FROM whip_sessions WHERE room_id = $1 AND session_id = $2")
                .bind(room)
                .bind(&session)
                .execute(&state.db)
                .await?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=ice-ufrag:abcd\r\na=ice-pwd:x\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:v\r\na=sendonly\r\na=rtpmap:96 H264/90000\r\n";

    #[test]
    fn a_single_m_line_without_bundle_is_bundled_for_the_stack_and_unbundled_back() {
        let (offer, added) = bundled(ONE).unwrap();
        assert!(added);
        assert!(
            offer.contains(
                "t=0 0\r\na=ice-ufrag:abcd\r\na=ice-pwd:x\r\na=group:BUNDLE v\r\nm=video"
            )
        );
        let (same, added) = bundled(&offer).unwrap();
        assert!(!added);
        assert_eq!(same, offer);
        let answer = "v=0\r\na=group:BUNDLE v\r\na=ice-lite\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:v\r\n";
        assert_eq!(
            unbundled(answer),
            "v=0\r\na=ice-lite\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:v\r\n"
        );
        let two = format!("{ONE}m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:a\r\n");
        assert!(bundled(&two).is_err(), "max-bundle is required");
    }

    #[test]
    fn reads_rejected_m_lines_ufrag_and_published_kinds() {
        let answer = "v=0\r\nm=audio 9 UDP 111\r\na=mid:0\r\nm=video 0 UDP 96\r\na=mid:1\r\nm=application 0 UDP 5000\r\na=mid:2\r\n";
        assert_eq!(rejected_mids(answer), vec!["1".to_owned()]);
        assert_eq!(ice_ufrag(ONE), Some("abcd"));
        assert_eq!(published(ONE), (false, true));
        let recv = ONE.replace("a=sendonly", "a=recvonly");
        assert_eq!(published(&recv), (false, false));
        let both = format!("{ONE}m=audio 9 UDP 111\r\na=mid:a\r\n");
        assert_eq!(published(&both), (true, true), "sendrecv by default");
    }

    #[test]
    fn patches_are_candidates_or_restarts() {
        let trickle = "a=ice-ufrag:abcd\r\na=ice-pwd:x\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\na=candidate:1 1 udp 1 10.0.0.1 5000 typ host\r\na=end-of-candidates\r\n";
        assert_eq!(classify_patch(trickle, "abcd"), Ok(Patch::Candidates));
        assert_eq!(classify_patch("", "abcd"), Ok(Patch::Candidates));
        assert_eq!(
            classify_patch(&trickle.replace("abcd", "efgh"), "abcd"),
            Ok(Patch::Restart)
        );
        assert!(classify_patch("hello there", "abcd").is_err());
        assert!(if_match("\"e1\"", "e1"));
        assert!(if_match("\"zz\", \"e1\"", "e1"));
        assert!(!if_match("W/\"e1\"", "e1"));
        assert!(!if_match("e1", "e1"));
    }

    #[test]
    fn the_broadcast_codes_become_rfc_statuses() {
        let status = |code: &str| refusal(code, "m").status.as_u16();
        assert_eq!(status("room-not-found"), 404);
        for code in [
            "token-invalid",
            "token-expired",
            "token-reused",
            "token-required",
        ] {
            assert_eq!(status(code), 401, "{code}");
        }
        assert_eq!(status("token-wrong-room"), 403);
        assert_eq!(status("token-forbidden"), 403);
        assert_eq!(status("room-full"), 409);
        assert_eq!(status("sdp-too-large"), 413);
        for code in [
            "sdp-malformed",
            "no-usable-media",
            "too-many-tracks",
            "negotiation-failed",
            "presenter-busy",
            "something-new",
        ] {
            assert_eq!(status(code), 422, "{code}");
        }
        let full = refusal("fleet-full", "m");
        assert_eq!((full.status.as_u16(), full.retry_after), (503, Some(5)));
        assert_eq!(refusal("token-reused", "m").slug, "token-reused");
        assert_eq!(refusal("something-new", "m").slug, "offer-refused");
        // Every code the broadcast writes has a status other than 400 (WHEP/WHIP clients treat
        // 400 as "switch modes").
        for code in ErrorCode::ALL {
            assert_ne!(status(code.as_str()), 400, "{}", code.as_str());
        }
    }

    #[test]
    fn outcomes_follow_the_document() {
        assert_eq!(outcome(&json!({"state": "offered"})), Outcome::Pending);
        assert_eq!(
            outcome(&json!({"state": "answering", "answer": null})),
            Outcome::Pending
        );
        assert_eq!(
            outcome(&json!({"state": "answered", "answer": {"sdp": "v=0", "revision": 1}})),
            Outcome::Answer("v=0".into())
        );
        assert_eq!(
            outcome(
                &json!({"state": "failed", "error": {"code": "room-full", "message": "full", "revision": 1}})
            ),
            Outcome::Refused {
                code: "room-full".into(),
                message: "full".into()
            }
        );
        assert!(matches!(
            outcome(&json!({"state": "closed"})),
            Outcome::Refused { .. }
        ));
    }

    #[test]
    fn bearer_tokens_are_read_in_any_scheme_case_and_links_carry_credentials() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/SDP; charset=utf-8"),
        );
        assert!(has_media_type(&h, SDP));
        assert!(is_join_token("a.b.c") && !is_join_token("abc"));
        let links = ice_links(&[
            IceServer {
                urls: vec!["stun:s.example:3478".into()],
                username: None,
                credential: None,
            },
            IceServer {
                urls: vec!["turn:t.example:3478?transport=udp".into()],
                username: Some("1:u".into()),
                credential: Some("c=".into()),
            },
        ]);
        assert_eq!(links[0], "<stun:s.example:3478>; rel=\"ice-server\"");
        assert_eq!(
            links[1],
            "<turn:t.example:3478?transport=udp>; rel=\"ice-server\"; username=\"1:u\"; credential=\"c=\"; credential-type=\"password\""
        );
    }
}
