//! The camera documents in Firestore (docs/signalling.md "Cameras"): their shapes and names.
//!
//! - `cameraSources/{camera}`: what a broadcast instance needs to pull a camera, written by the
//!   sidecar. Its credentials and URL are sealed ([`crate::sealed`]); `firestore.rules` lets no
//!   browser read or write the collection.
//! - `rooms/{room}/cameras/{camera}`: what a room's members may know, readable like the room.
//!   The sidecar writes `name` and `enabled` (and `state: "idle"`/`"disabled"` when they
//!   change); the instance pulling the camera writes `state`, `error`, `codec`, `width`,
//!   `height`, `audio` and `updatedAt`.

use serde::{Deserialize, Serialize};

pub const SOURCES: &str = "cameraSources";
pub const CAMERAS: &str = "cameras";
/// The camera's session id in the room's roster and in slot sources: `camera-{camera}`.
pub const SESSION_PREFIX: &str = "camera-";
/// The public document's fields that say what the last pull found: cleared with `state`
/// whenever the owner switches the camera on or off.
pub const FOUND_FIELDS: [&str; 6] = ["error", "codec", "width", "height", "audio", "audioError"];

pub fn session_id(camera: &str) -> String {
    format!("{SESSION_PREFIX}{camera}")
}

/// How RTSP carries the media: interleaved in the RTSP TCP connection (the default; works
/// through NAT and firewalls) or in separate UDP flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    #[default]
    Tcp,
    Udp,
}

/// `cameraSources/{camera}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CameraSourceDoc {
    pub v: i64,
    pub room: String,
    pub name: String,
    pub enabled: bool,
    #[serde(default)]
    pub transport: RtspTransport,
    /// [`CameraSecret`] as JSON, sealed with the camera id as context.
    pub sealed: String,
}

/// What [`CameraSourceDoc::sealed`] holds. Never logged: its `Debug` hides the secrets.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CameraSecret {
    /// `rtsp://host[:port]/path` (or `rtsps://`), without credentials.
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

impl std::fmt::Debug for CameraSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CameraSecret")
            .field("url", &"…")
            .field("username", &self.username.as_ref().map(|_| "…"))
            .field("password", &self.password.as_ref().map(|_| "…"))
            .finish()
    }
}

/// A camera's state, as its public document shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CameraState {
    /// Not pulled: nobody in the room receives video (or the room is on no instance yet).
    Idle,
    Connecting,
    Live,
    /// The last attempt failed in a way that may pass (unreachable, stopped sending); the
    /// next one is scheduled.
    Retrying,
    /// Will not work until its settings change (wrong credentials, a codec browsers cannot
    /// take, a malformed URL).
    Failed,
    Disabled,
}

/// Why a camera is not live (`error.code` in its public document).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CameraErrorCode {
    /// The URL is not an RTSP URL this server can use.
    InvalidUrl,
    /// No TCP connection to the camera (refused, no route, DNS).
    Unreachable,
    /// The camera refused the credentials (401).
    Unauthorized,
    /// The camera has no such stream (404) or refused the request.
    NotFound,
    /// The camera's video is not H.264 (H.265, MJPEG…): browsers cannot take it untranscoded.
    UnsupportedCodec,
    /// The H.264 stream uses B-frames (frame reordering), which WebRTC cannot carry.
    BFrames,
    /// Connected, but no media arrived in time, or it stopped arriving.
    NoMedia,
    /// The camera broke the RTSP protocol.
    Protocol,
    /// The instance cannot open the camera's credentials (a different `FIRESFU_CAMERA_KEY`).
    Credentials,
}

impl CameraErrorCode {
    /// Whether trying again without changing the camera's settings may work.
    pub fn transient(self) -> bool {
        matches!(
            self,
            CameraErrorCode::Unreachable | CameraErrorCode::NoMedia | CameraErrorCode::Protocol
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CameraError {
    pub code: CameraErrorCode,
    pub message: String,
}
