//! The Firestore document protocol, version 1: names, states and error codes.
//!
//! This is a public contract, specified in `docs/signalling.md` and enforced for browsers by
//! `firestore.rules`; the three must change together.

use serde::{Deserialize, Serialize};

pub const PROTOCOL_VERSION: i64 = 1;
pub const ROOMS: &str = "rooms";
pub const SESSIONS: &str = "sessions";
pub const PARTICIPANTS: &str = "participants";
/// `rooms/{room}/members/{uid}`: who may read a room's roster and chat (server-written).
pub const MEMBERS: &str = "members";
/// `rooms/{room}/live/{doc}`: live room state the server derives from media (`speaker`).
pub const LIVE: &str = "live";
/// The document of `LIVE` naming the room's dominant speaker.
pub const SPEAKER_DOC: &str = "speaker";
/// `joinTokens/{jti}`: which session a join token admitted (single use). Server-only.
pub const JOIN_TOKENS: &str = "joinTokens";
pub const MAX_DISPLAY_NAME_CHARS: usize = 64;
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// A room's place in a fleet (`rooms/{room}.assignment`, written by the leading monitor): the
/// instance that serves it and the assignment's epoch (+1 per move).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub instance: String,
    pub epoch: i64,
}

/// A room document's `assignment` field, if it has a well-formed one.
pub fn assignment_of(room: &serde_json::Value) -> Option<Assignment> {
    let a = room.get("assignment")?;
    Some(Assignment {
        instance: a.get("instance")?.as_str()?.to_owned(),
        epoch: a.get("epoch")?.as_i64()?,
    })
}

/// The `state` field of a session document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    /// Written by the client: a new offer (revision) waits for an answer.
    Offered,
    /// The server claimed the offer and is answering it.
    Answering,
    /// The answer is written; ICE/DTLS not yet up.
    Answered,
    /// Media flows (also after answering a later re-offer).
    Connected,
    /// The session cannot continue; `error` says why. Terminal.
    Failed,
    /// Left (written by the client) or ended by the server (`error` says why). Terminal.
    Closed,
}

impl SessionState {
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Offered => "offered",
            SessionState::Answering => "answering",
            SessionState::Answered => "answered",
            SessionState::Connected => "connected",
            SessionState::Failed => "failed",
            SessionState::Closed => "closed",
        }
    }
}

/// The `error.code` values the server writes. Stable strings: clients branch on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A required field is missing or has the wrong type or size.
    InvalidDocument,
    /// `v` is not a protocol version this server speaks.
    UnsupportedVersion,
    /// `offer.sdp` exceeds 64 KiB.
    SdpTooLarge,
    /// `offer.sdp` is not parseable SDP (or lacks BUNDLE mids).
    SdpMalformed,
    /// No audio/video m-line with a codec the server forwards.
    NoUsableMedia,
    /// `rooms/{roomId}` does not exist.
    RoomNotFound,
    /// A re-offer whose revision is not above the last answered one.
    StaleRevision,
    /// The WebRTC stack refused the offer.
    NegotiationFailed,
    /// No join token, and the server requires one.
    TokenRequired,
    /// The join token is malformed, signed by an unknown key, or issued to another user.
    TokenInvalid,
    /// The join token expired.
    TokenExpired,
    /// The join token is for another room.
    TokenWrongRoom,
    /// The join token already admitted another session.
    TokenReused,
    /// The join token does not grant what the offer does (publish or subscribe).
    TokenForbidden,
    /// ICE or DTLS did not complete, or broke.
    ConnectFailed,
    /// Nothing heard from the client's peer connection for too long.
    PeerTimeout,
    /// The server instance holding the session lost it (restart).
    SessionLost,
    /// The server instance is shutting down.
    ServerShutdown,
    /// The room was moved to another instance (the old one died or drains): join again.
    RoomMoved,
    /// No instance can take the room (or its instance is at its participant limit).
    FleetFull,
    /// The offer has more m-lines than the server accepts.
    TooManyMediaLines,
    /// The offer publishes more tracks than one participant may.
    TooManyTracks,
    /// The room has as many participants as it may.
    RoomFull,
    /// A screen share while the room's presenter places are taken (someone else presents).
    PresenterBusy,
    /// The application removed the participant (the sidecar's server API).
    Removed,
    /// A viewer's watched participant (`watch`) is not in the room, or left it.
    WatchedGone,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidDocument => "invalid-document",
            ErrorCode::UnsupportedVersion => "unsupported-version",
            ErrorCode::SdpTooLarge => "sdp-too-large",
            ErrorCode::SdpMalformed => "sdp-malformed",
            ErrorCode::NoUsableMedia => "no-usable-media",
            ErrorCode::RoomNotFound => "room-not-found",
            ErrorCode::StaleRevision => "stale-revision",
            ErrorCode::NegotiationFailed => "negotiation-failed",
            ErrorCode::TokenRequired => "token-required",
            ErrorCode::TokenInvalid => "token-invalid",
            ErrorCode::TokenExpired => "token-expired",
            ErrorCode::TokenWrongRoom => "token-wrong-room",
            ErrorCode::TokenReused => "token-reused",
            ErrorCode::TokenForbidden => "token-forbidden",
            ErrorCode::ConnectFailed => "connect-failed",
            ErrorCode::PeerTimeout => "peer-timeout",
            ErrorCode::SessionLost => "session-lost",
            ErrorCode::ServerShutdown => "server-shutdown",
            ErrorCode::RoomMoved => "room-moved",
            ErrorCode::FleetFull => "fleet-full",
            ErrorCode::TooManyMediaLines => "too-many-m-lines",
            ErrorCode::TooManyTracks => "too-many-tracks",
            ErrorCode::RoomFull => "room-full",
            ErrorCode::PresenterBusy => "presenter-busy",
            ErrorCode::Removed => "removed",
            ErrorCode::WatchedGone => "watched-gone",
        }
    }

    pub const ALL: [ErrorCode; 26] = [
        ErrorCode::InvalidDocument,
        ErrorCode::UnsupportedVersion,
        ErrorCode::SdpTooLarge,
        ErrorCode::SdpMalformed,
        ErrorCode::NoUsableMedia,
        ErrorCode::RoomNotFound,
        ErrorCode::StaleRevision,
        ErrorCode::NegotiationFailed,
        ErrorCode::TokenRequired,
        ErrorCode::TokenInvalid,
        ErrorCode::TokenExpired,
        ErrorCode::TokenWrongRoom,
        ErrorCode::TokenReused,
        ErrorCode::TokenForbidden,
        ErrorCode::ConnectFailed,
        ErrorCode::PeerTimeout,
        ErrorCode::SessionLost,
        ErrorCode::ServerShutdown,
        ErrorCode::RoomMoved,
        ErrorCode::FleetFull,
        ErrorCode::TooManyMediaLines,
        ErrorCode::TooManyTracks,
        ErrorCode::RoomFull,
        ErrorCode::PresenterBusy,
        ErrorCode::Removed,
        ErrorCode::WatchedGone,
    ];
}

/// An error to report in a session document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionError {
    pub code: ErrorCode,
    pub message: String,
}

impl SessionError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        SessionError {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_distinct_kebab_case_strings() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c == '-'), "{s}");
            assert!(seen.insert(s), "{s} twice");
        }
    }

    #[test]
    fn states_round_trip_through_their_strings() {
        for s in [
            "offered",
            "answering",
            "answered",
            "connected",
            "failed",
            "closed",
        ] {
            assert_eq!(SessionState::parse(s).unwrap().as_str(), s);
        }
        assert_eq!(SessionState::parse("Offered"), None);
    }

    #[test]
    fn the_contract_document_lists_every_code() {
        let doc = include_str!("../../docs/signalling.md");
        for code in ErrorCode::ALL {
            assert!(
                doc.contains(&format!("`{}`", code.as_str())),
                "{} undocumented",
                code.as_str()
            );
        }
        for state in [
            "offered",
            "answering",
            "answered",
            "connected",
            "failed",
            "closed",
        ] {
            assert!(
                doc.contains(&format!("`{state}`")),
                "state {state} undocumented"
            );
        }
    }
}
