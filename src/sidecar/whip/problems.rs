//! The problems (RFC 9457) a WHIP client gets, with the statuses RFC 9725 gives them.

use axum::http::StatusCode;

use super::super::problem::Problem;
use crate::jointoken::TokenError;
use crate::signalling::protocol::ErrorCode;

pub(super) fn problem(
    status: StatusCode,
    slug: &'static str,
    title: &'static str,
    detail: &str,
) -> Problem {
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

pub(super) fn token_problem(e: TokenError) -> Problem {
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

/// 415: the body is not of `expected`.
pub(super) fn unsupported_media_type(expected: &str) -> Problem {
    problem(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
        "Unsupported media type",
        &format!("send `Content-Type: {expected}`"),
    )
}

pub(super) fn unauthorized() -> Problem {
    problem(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Authentication required",
        "send `Authorization: Bearer <token>`: a join token for this room (POST /v1/rooms/{id}/join) or an access token (POST /v1/sessions)",
    )
}

pub(super) fn malformed_offer(detail: &str) -> Problem {
    problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "sdp-malformed",
        "Offer refused",
        detail,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
