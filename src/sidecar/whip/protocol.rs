//! The HTTP side of WHIP: media types, the bearer, the session's URL and ETag, `Link` headers
//! and bounded bodies.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};

use super::super::problem::Problem;
use super::super::turn::IceServer;
use super::problems::problem;

pub const SDP: &str = "application/sdp";
pub const SDPFRAG: &str = "application/trickle-ice-sdpfrag";
/// An oversized body up to this size is read (and dropped) before the 413.
pub(super) const DRAIN_BYTES: usize = 256 * 1024;
/// Trickle bodies are a few candidates.
pub(super) const MAX_PATCH_BYTES: usize = 16 * 1024;

/// What the session resource's URL is (`protocol`: `whip` or `whep`).
pub fn location(protocol: &str, room: &str, session: &str) -> String {
    format!("/{protocol}/v1/rooms/{room}/sessions/{session}")
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
pub(super) fn is_join_token(token: &str) -> bool {
    token.split('.').count() == 3
}

/// Whether an `If-Match` value names `etag` (strong comparison, RFC 9110 §13.1.1).
pub fn if_match(value: &str, etag: &str) -> bool {
    let quoted = format!("\"{etag}\"");
    value.split(',').any(|v| v.trim() == quoted)
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

/// The body, at most `limit` bytes (413 beyond).
pub(super) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Vec<u8>, Problem> {
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

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

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
        assert!(if_match("\"e1\"", "e1"));
        assert!(if_match("\"zz\", \"e1\"", "e1"));
        assert!(!if_match("W/\"e1\"", "e1"));
        assert!(!if_match("e1", "e1"));
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
