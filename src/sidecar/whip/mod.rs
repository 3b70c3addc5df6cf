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
//!   trickled candidates are acknowledged (204) and dropped; an ICE restart re-offers the
//!   session with the client's new credentials (`restart`).

mod problems;
mod protocol;
mod restart;
mod sdp;
mod session;
pub mod whep;

use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::header::{self, HeaderName};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use super::AppState;
use super::auth::token_hash;
use super::join::JoinRequest;
use super::problem::Problem;
use super::rooms::parse_id;
use crate::media::offer::MAX_SDP_BYTES;
use problems::{malformed_offer, problem, unauthorized, unsupported_media_type};
use protocol::{
    MAX_PATCH_BYTES, SDP, SDPFRAG, bearer, has_media_type, ice_links, if_match, location, read_body,
};
use sdp::{Patch, bundled, classify_patch, ice_ufrag, rejected_mids, unbundled};
pub use session::sweep;
use session::{admit, clean_up, close_session, negotiate};

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
    let room = parse_id(&id)?;
    let offer = read_offer(&headers, body).await?;
    bridge(&state, room, offer, Role::Publish).await
}

/// A POSTed offer, read and checked: the bearer, the SDP (BUNDLEd), whether BUNDLE was added.
struct PostedOffer<'a> {
    token: &'a str,
    sdp: String,
    added_bundle: bool,
}

/// Reads a WHIP or WHEP POST: a bearer, an `application/sdp` body of at most 64 KiB that is an
/// SDP offer whose m-lines are BUNDLEd (one m-line may lack the group).
async fn read_offer(headers: &HeaderMap, body: Body) -> Result<PostedOffer<'_>, Problem> {
    let token = bearer(headers).ok_or_else(unauthorized)?;
    if !has_media_type(headers, SDP) {
        return Err(unsupported_media_type(SDP));
    }
    let body = read_body(headers, body, MAX_SDP_BYTES).await?;
    let sdp = std::str::from_utf8(&body)
        .ok()
        .filter(|s| s.starts_with("v=0"))
        .ok_or_else(|| {
            malformed_offer("the body is not an SDP offer (it must start with \"v=0\")")
        })?;
    let (sdp, added_bundle) = bundled(sdp).map_err(|e| {
        problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bundle-required",
            "Offer refused",
            &e,
        )
    })?;
    Ok(PostedOffer {
        token,
        sdp,
        added_bundle,
    })
}

/// What a bridged session does in the room.
enum Role {
    /// WHIP: publishes (a publish-only join token is minted for an access token).
    Publish,
    /// WHEP: receives only whom it watches (`watch`: a session id or `presenter`).
    View { watch: String },
}

impl Role {
    /// The path prefix of its resources and its session ids' prefix.
    fn protocol(&self) -> &'static str {
        match self {
            Role::Publish => "whip",
            Role::View { .. } => "whep",
        }
    }
}

/// Writes the session document for `offer`, waits for the broadcast's answer and answers the
/// POST with it: `201`, `Location` of the session resource, `ETag`, `Link` (ICE servers).
async fn bridge(
    state: &AppState,
    room: Uuid,
    offer: PostedOffer<'_>,
    role: Role,
) -> Result<Response, Problem> {
    let started = Instant::now();
    let PostedOffer {
        token,
        sdp: offer,
        added_bundle,
    } = offer;
    let (request, watch) = match &role {
        Role::Publish => (JoinRequest::publish_only(), None),
        Role::View { watch } => (JoinRequest::view_only(), Some(watch.as_str())),
    };
    let publisher = admit(state, room, token, request).await?;
    // A viewer of one participant: that participant is in the room now (its roster entry).
    if let Some(watch) = watch.filter(|w| *w != crate::media::watch::PRESENTER) {
        let entry =
            super::server::roster::entry(&state.firestore, &room.to_string(), watch).await?;
        if entry.is_none() {
            return Err(Problem::not_found("participant"));
        }
    }

    let protocol = role.protocol();
    let session = format!("{protocol}-{}", Uuid::new_v4().simple());
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
    let answer = match negotiate(state, &room_id, &session, &publisher, &offer, watch).await {
        Ok(answer) if added_bundle => unbundled(&answer),
        Ok(answer) => answer,
        Err(p) => {
            clean_up(state, room, &session).await;
            tracing::info!(room = %room_id, session, code = p.slug, "{protocol} offer not answered");
            return Err(p);
        }
    };
    // No partially successful answers (RFC 9725 §4.4.3): a track the room cannot carry (an
    // unsupported codec) fails the whole offer.
    let rejected = rejected_mids(&answer);
    if !rejected.is_empty() {
        clean_up(state, room, &session).await;
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
    tracing::info!(room = %room_id, session, ms = started.elapsed().as_millis() as u64, "{protocol} session answered");
    let mut response = (StatusCode::CREATED, answer).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(SDP));
    let location = location(protocol, &room_id, &session);
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
/// client's addresses from its checks). An ICE restart (`If-Match: *`, or new credentials)
/// re-offers the session with the client's new credentials and answers the server's.
#[utoipa::path(patch, path = "/whip/v1/rooms/{id}/sessions/{session}", operation_id = "whipTrickle", tag = "whip", security(("bearer" = [])),
    params(("id" = String, Path, description = "The room's id (a UUID)"), ("session" = String, Path, description = "The session's id (from `Location`)"),
        ("If-Match" = Option<String>, Header, description = "The session's `ETag` (required: 428 without it, 412 for another one; `*` asks for an ICE restart)")),
    request_body(content = String, content_type = "application/trickle-ice-sdpfrag", description = "Candidates (RFC 8840), or an ICE restart's new `a=ice-ufrag`/`a=ice-pwd`"),
    responses(
        (status = 200, description = "ICE restarted: the server's new credentials and candidates; `ETag`: the new ICE session", body = String, content_type = "application/trickle-ice-sdpfrag"),
        (status = 204, description = "Candidates acknowledged"),
        (status = 400, description = "Not an SDP fragment", body = super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not the token that created the session", body = super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` names another ICE session", body = super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "The body exceeds 16 KiB", body = super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/trickle-ice-sdpfrag`", body = super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Another offer of the session is being answered (`renegotiating`; `Retry-After`)", body = super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "An ICE restart without new credentials (`ice-credentials-required`), or its re-offer was refused", body = super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 428, description = "No `If-Match`", body = super::problem::ProblemDoc, content_type = "application/problem+json")))]
pub async fn trickle(
    State(state): State<AppState>,
    Path((id, session)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
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
        return Err(unsupported_media_type(SDPFRAG));
    }
    let body = read_body(&headers, body, MAX_PATCH_BYTES).await?;
    let fragment = std::str::from_utf8(&body)
        .map_err(|_| super::auth::malformed("the body is not UTF-8 text"))?;
    let asked = classify_patch(fragment, &row.ufrag).map_err(super::auth::malformed)?;
    if restart || asked == Patch::Restart {
        return restart::restart(&state, room, &session, fragment, &row.ufrag).await;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
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
