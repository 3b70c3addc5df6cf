//! ICE restart through PATCH (RFC 9725 §4.3.2), on the same bridge: the client's new ICE
//! credentials go into a re-offer of the session document (its stored offer with the new
//! `a=ice-ufrag`/`a=ice-pwd`, revision + 1), the broadcast answers it as it answers any
//! client's ICE restart (docs/signalling.md, "Network changes"), and the PATCH answers `200`
//! with the server's new credentials and candidates as an SDP fragment and a new `ETag`.

use axum::http::StatusCode;
use axum::http::header::{self, HeaderValue};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::super::AppState;
use super::super::problem::Problem;
use super::problems::problem;
use super::protocol::SDPFRAG;
use super::sdp::eol;
use super::session::{await_answer, read_session};
use crate::docdb::{self, Cas, DocRef};
use crate::signalling::protocol::{ROOMS, SESSIONS};

/// The ICE credentials an SDP (or a fragment) carries: its first `a=ice-ufrag` and `a=ice-pwd`.
pub fn credentials(sdp: &str) -> Option<(&str, &str)> {
    let find = |prefix: &str| {
        sdp.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    Some((find("a=ice-ufrag:")?, find("a=ice-pwd:")?))
}

/// `offer` with new ICE credentials and without candidates (the ICE-lite server learns the
/// client's addresses from its checks).
pub fn with_credentials(offer: &str, ufrag: &str, pwd: &str) -> String {
    let end = eol(offer);
    offer
        .lines()
        .filter(|l| !l.starts_with("a=candidate") && !l.starts_with("a=end-of-candidates"))
        .map(|l| {
            if l.starts_with("a=ice-ufrag:") {
                format!("a=ice-ufrag:{ufrag}{end}")
            } else if l.starts_with("a=ice-pwd:") {
                format!("a=ice-pwd:{pwd}{end}")
            } else {
                format!("{l}{end}")
            }
        })
        .collect()
}

/// The PATCH response body (RFC 8840 fragment): the answer's ICE-lite flag, credentials, and
/// its first m-line with that m-line's candidates.
pub fn fragment(answer: &str) -> Option<String> {
    let (ufrag, pwd) = credentials(answer)?;
    let mut out = String::new();
    if answer.lines().any(|l| l == "a=ice-lite") {
        out.push_str("a=ice-lite\r\n");
    }
    out.push_str(&format!("a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\n"));
    let mut in_first = false;
    for line in answer.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            if in_first {
                break;
            }
            in_first = true;
            let kind = m.split_whitespace().next().unwrap_or("audio");
            out.push_str(&format!("m={kind} 9 UDP/TLS/RTP/SAVPF 0\r\n"));
        } else if in_first && (line.starts_with("a=mid:") || line.starts_with("a=candidate:")) {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("a=end-of-candidates\r\n");
    Some(out)
}

#[derive(Serialize, Deserialize)]
struct Reoffer {
    offer: Value,
    state: String,
}

/// Restarts ICE for `session` with the client's new credentials from `patch`.
pub async fn restart(
    state: &AppState,
    room: Uuid,
    session: &str,
    patch: &str,
    current_ufrag: &str,
) -> Result<Response, Problem> {
    let (ufrag, pwd) = credentials(patch)
        .filter(|(u, _)| *u != current_ufrag)
        .ok_or_else(|| {
            problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "ice-credentials-required",
                "ICE restart without new credentials",
                "an ICE restart's fragment carries new `a=ice-ufrag` and `a=ice-pwd` lines",
            )
        })?;
    let room_id = room.to_string();
    let doc = read_session(state, &room_id, session)
        .await?
        .ok_or_else(|| Problem::not_found("WHIP session"))?;
    let revision = doc["offer"]["revision"].as_i64().unwrap_or(0);
    let settled = |d: &Value| {
        matches!(d["state"].as_str(), Some("answered" | "connected"))
            && d["answer"]["revision"].as_i64() == Some(revision)
            && d["offer"]["revision"].as_i64() == Some(revision)
    };
    if !settled(&doc) {
        return Err(busy(&doc));
    }
    let offer = with_credentials(doc["offer"]["sdp"].as_str().unwrap_or_default(), ufrag, pwd);
    let parent = state.firestore.parent_path(ROOMS, &room_id)?.to_string();
    let target = DocRef {
        parent: &parent,
        collection: SESSIONS,
        id: session,
    };
    let write = Reoffer {
        offer: json!({"sdp": offer, "revision": revision + 1}),
        state: "offered".into(),
    };
    match docdb::update_if(
        &state.firestore,
        &target,
        &["offer", "state"],
        &write,
        settled,
    )
    .await?
    {
        Cas::Written => {}
        Cas::Missing => return Err(Problem::not_found("WHIP session")),
        Cas::Refused(d) => return Err(busy(&d)),
    }
    let answer = await_answer(state, &room_id, session, revision + 1).await?;
    let body = fragment(&answer).ok_or_else(Problem::internal)?;
    let etag = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>());
    sqlx::query(
        "UPDATE whip_sessions SET etag = $3, ice_ufrag = $4 WHERE room_id = $1 AND session_id = $2",
    )
    .bind(room)
    .bind(session)
    .bind(&etag)
    .bind(ufrag)
    .execute(&state.db)
    .await?;
    tracing::info!(room = %room_id, session, revision = revision + 1, "ICE restarted through PATCH");
    let mut response = (StatusCode::OK, body).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(SDPFRAG));
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&format!("\"{etag}\"")).map_err(|_| Problem::internal())?,
    );
    Ok(response)
}

/// The session is not where a restart can start (an offer is being answered, or it ended).
fn busy(doc: &Value) -> Problem {
    match doc["state"].as_str() {
        Some("closed" | "failed") => Problem::not_found("WHIP session"),
        _ => {
            let mut p = problem(
                StatusCode::CONFLICT,
                "renegotiating",
                "Renegotiation in progress",
                "the session is answering another offer; try the restart again in a moment",
            );
            p.retry_after = Some(1);
            p
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = "v=0\r\na=group:BUNDLE 0 1\r\na=ice-lite\r\nm=audio 4443 UDP/TLS/RTP/SAVPF 111\r\na=candidate:1 1 udp 2130706431 10.0.0.1 4443 typ host\r\na=ice-ufrag:SRV\r\na=ice-pwd:srvpwd\r\na=mid:0\r\nm=video 4443 UDP/TLS/RTP/SAVPF 96\r\na=candidate:1 1 udp 2130706431 10.0.0.1 4443 typ host\r\na=ice-ufrag:SRV\r\na=mid:1\r\n";

    #[test]
    fn a_restart_replaces_the_credentials_and_answers_a_fragment() {
        let offer = "v=0\na=ice-ufrag:old\na=ice-pwd:oldpwd\nm=audio 9 UDP 111\na=candidate:1 1 udp 1 10.0.0.2 5000 typ host\na=mid:0\n";
        assert_eq!(
            with_credentials(offer, "new", "newpwd"),
            "v=0\na=ice-ufrag:new\na=ice-pwd:newpwd\nm=audio 9 UDP 111\na=mid:0\n"
        );
        assert_eq!(credentials(offer), Some(("old", "oldpwd")));
        assert_eq!(credentials("a=ice-ufrag:x\r\n"), None);
        assert_eq!(
            fragment(ANSWER).unwrap(),
            "a=ice-lite\r\na=ice-ufrag:SRV\r\na=ice-pwd:srvpwd\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n\
             a=candidate:1 1 udp 2130706431 10.0.0.1 4443 typ host\r\na=mid:0\r\na=end-of-candidates\r\n"
        );
    }
}
