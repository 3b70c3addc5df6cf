//! WHEP playback (draft-ietf-wish-whep): any WHEP player watches one participant of a room, or
//! the room's presenter, with one POST. The same bridge as WHIP: the POST writes a session
//! document whose `watch` names whom it watches (docs/signalling.md, "Watching one
//! participant") and waits for the answer; the viewer is a receive-only participant whose slots
//! carry only that participant's video and audio, and follow the presenter as it changes.
//!
//! - `POST /whep/v1/rooms/{id}/participants/{session}`: one participant (or camera), by its
//!   roster id. Its leaving ends the viewer's session (`watched-gone`).
//! - `POST /whep/v1/rooms/{id}/presenter`: whoever shares a screen, else the active speaker.
//! - `/whep/v1/rooms/{id}/sessions/{session}`: the resource (`PATCH` trickle, `DELETE`), as
//!   WHIP's.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::super::AppState;
use super::super::problem::Problem;
use super::super::rooms::{is_session_id, parse_id};
use super::problems::problem;
use super::sdp::published;
use super::{Role, bridge, endpoint_options, read_offer};
use crate::media::watch::PRESENTER;

/// Watch one participant of the room (or one of its cameras).
#[utoipa::path(post, path = "/whep/v1/rooms/{id}/participants/{session}", operation_id = "whepView", tag = "whep", security(("bearer" = [])),
    params(("id" = String, Path, description = "The room's id (a UUID)"), ("session" = String, Path, description = "The participant's session id (the roster's document id)")),
    request_body(content = String, content_type = "application/sdp", description = "The SDP offer (at most 64 KiB): `recvonly` audio and video, BUNDLEd"),
    responses(
        (status = 201, description = "The SDP answer. `Location`: the session resource; `ETag`: its ICE session; `Link`: STUN/TURN servers", body = String, content_type = "application/sdp",
            headers(("Location" = String, description = "/whep/v1/rooms/{id}/sessions/{session}"), ("ETag" = String, description = "The ICE session (If-Match of PATCH)"))),
        (status = 401, description = "No bearer, an unknown access token, or a join token that is invalid, expired or used", body = super::super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "A join token for another room or without the subscribe grant", body = super::super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such room, or nobody with that session id in it", body = super::super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The room is full (`room-full`)", body = super::super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "The offer exceeds 64 KiB", body = super::super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/sdp`", body = super::super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "The offer publishes (`recvonly-required`) or was refused", body = super::super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "No answer in time, or no instance can take the room; see `Retry-After`", body = super::super::problem::ProblemDoc, content_type = "application/problem+json")))]
pub async fn view(
    State(state): State<AppState>,
    Path((id, session)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let room = parse_id(&id)?;
    if !is_session_id(&session) || session == PRESENTER {
        return Err(Problem::not_found("participant"));
    }
    watch(state, room, headers, body, session).await
}

/// Watch the room's presenter: whoever shares a screen, else the active speaker, else the
/// first to join who publishes video; the picture follows them without renegotiating.
#[utoipa::path(post, path = "/whep/v1/rooms/{id}/presenter", operation_id = "whepViewPresenter", tag = "whep", security(("bearer" = [])),
    params(("id" = String, Path, description = "The room's id (a UUID)")),
    request_body(content = String, content_type = "application/sdp", description = "The SDP offer (at most 64 KiB): `recvonly` audio and video, BUNDLEd"),
    responses(
        (status = 201, description = "The SDP answer, with `Location`, `ETag` and `Link` as for a participant", body = String, content_type = "application/sdp"),
        (status = 401, description = "No bearer or a token not accepted", body = super::super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such room", body = super::super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/sdp`", body = super::super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "The offer publishes (`recvonly-required`) or was refused", body = super::super::problem::ProblemDoc, content_type = "application/problem+json")))]
pub async fn view_presenter(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let room = parse_id(&id)?;
    watch(state, room, headers, body, PRESENTER.to_owned()).await
}

async fn watch(
    state: AppState,
    room: uuid::Uuid,
    headers: HeaderMap,
    body: Body,
    watch: String,
) -> Result<Response, Problem> {
    let offer = read_offer(&headers, body).await?;
    if published(&offer.sdp) != (false, false) {
        return Err(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "recvonly-required",
            "Offer refused",
            "a WHEP offer only receives: make its audio and video m-lines `recvonly` (publish with WHIP)",
        ));
    }
    bridge(&state, room, offer, Role::View { watch }).await
}

/// CORS preflight of a participant's WHEP endpoint.
#[utoipa::path(options, path = "/whep/v1/rooms/{id}/participants/{session}", operation_id = "whepViewOptions", tag = "whep",
    params(("id" = String, Path, description = "The room's id (a UUID)"), ("session" = String, Path, description = "The participant's session id")),
    responses((status = 204, description = "`Accept-Post: application/sdp` and CORS headers")))]
pub async fn view_options() -> Response {
    endpoint_options().await
}

/// CORS preflight of the presenter's WHEP endpoint.
#[utoipa::path(options, path = "/whep/v1/rooms/{id}/presenter", operation_id = "whepViewPresenterOptions", tag = "whep",
    params(("id" = String, Path, description = "The room's id (a UUID)")),
    responses((status = 204, description = "`Accept-Post: application/sdp` and CORS headers")))]
pub async fn view_presenter_options() -> Response {
    endpoint_options().await
}

/// CORS preflight of a WHEP session.
#[utoipa::path(options, path = "/whep/v1/rooms/{id}/sessions/{session}", operation_id = "whepSessionOptions", tag = "whep",
    params(("id" = String, Path, description = "The room's id (a UUID)"), ("session" = String, Path, description = "The session's id (from `Location`)")),
    responses((status = 204, description = "CORS headers")))]
pub async fn viewer_options() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// Trickle ICE for a WHEP session, as for WHIP (candidates acknowledged, ICE restarts;
/// `If-Match` required).
#[utoipa::path(patch, path = "/whep/v1/rooms/{id}/sessions/{session}", operation_id = "whepTrickle", tag = "whep", security(("bearer" = [])),
    params(("id" = String, Path, description = "The room's id (a UUID)"), ("session" = String, Path, description = "The session's id (from `Location`)"),
        ("If-Match" = Option<String>, Header, description = "The session's `ETag`")),
    request_body(content = String, content_type = "application/trickle-ice-sdpfrag", description = "Candidates (RFC 8840)"),
    responses(
        (status = 200, description = "ICE restarted: the server's new credentials and candidates, and a new `ETag`", body = String, content_type = "application/trickle-ice-sdpfrag"),
        (status = 204, description = "Candidates acknowledged"),
        (status = 403, description = "Not the token that created the session", body = super::super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` names another ICE session", body = super::super::problem::ProblemDoc, content_type = "application/problem+json"),
        (status = 428, description = "No `If-Match`", body = super::super::problem::ProblemDoc, content_type = "application/problem+json")))]
pub async fn viewer_trickle(
    state: State<AppState>,
    path: Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    super::trickle(state, path, headers, body).await
}

/// End a WHEP session: the viewer leaves the room.
#[utoipa::path(delete, path = "/whep/v1/rooms/{id}/sessions/{session}", operation_id = "whepStop", tag = "whep", security(("bearer" = [])),
    params(("id" = String, Path, description = "The room's id (a UUID)"), ("session" = String, Path, description = "The session's id (from `Location`)")),
    responses(
        (status = 200, description = "Ended (its session document is closed)"),
        (status = 403, description = "Not the token that created the session", body = super::super::problem::ProblemDoc, content_type = "application/problem+json")))]
pub async fn viewer_stop(
    state: State<AppState>,
    path: Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, Problem> {
    super::stop(state, path, headers).await
}
