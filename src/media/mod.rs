//! The media plane: one UDP socket, one `rtc` peer connection per participant session, rooms
//! that forward every participant's RTP to every other participant.
//!
//! Its interface is narrow on purpose: signalling sends [`Command`]s (negotiate an offer, close
//! a session) and receives [`MediaEvent`]s (connected, closed, a participant's view of the room
//! changed). SDP crosses as text; nothing here knows about Firestore.

pub mod allocate;
pub mod answer;
pub mod bwe;
pub mod codecs;
pub mod demux;
mod engine;
mod forward;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod keyframe;
mod metrics;
pub use metrics::{MediaObservers, observe_media};
pub mod layers;
pub mod offer;
pub mod pace;
pub mod payload;
mod peer;
mod rate;
pub mod rewrite;
pub mod room;
mod rtcp_relay;
pub mod socket;
pub mod source;
pub mod speaker;
pub mod sync;
pub mod tcp;
pub mod watch;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

pub use engine::{EngineHandle, spawn_engine};
pub use offer::{CodecSupport, MediaKind, OfferError};
pub use peer::SlotWish;
pub use room::Wants;
pub use watch::Watch;

/// A peer connection inside the engine. Ids grow with creation order and are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

/// A participant session as signalling names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey {
    pub room: String,
    pub session: String,
}

impl std::fmt::Display for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.room, self.session)
    }
}

#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Where the shared UDP socket binds, e.g. `[::]:4443` (dual stack) or `0.0.0.0:4443`.
    pub bind: SocketAddr,
    /// Addresses put in our ICE candidates (NAT 1:1: the public IPs that reach `bind`), IPv4
    /// and IPv6. Empty: the bind address, which then must not be unspecified.
    pub advertise: Vec<IpAddr>,
    /// ICE-TCP listeners (passive candidates); empty: UDP only.
    pub tcp: Vec<TcpListen>,
    pub tcp_limits: tcp::TcpLimits,
    pub receive_buffer: usize,
    pub send_buffer: usize,
    pub ice_lite: bool,
    /// A peer we hear nothing from (not even ICE consent checks) for this long is closed.
    pub peer_timeout: Duration,
    pub codecs: CodecSupport,
    pub limits: MediaLimits,
}

/// One ICE-TCP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpListen {
    /// Where it binds; port 0 picks a free one.
    pub bind: SocketAddr,
    /// The port its candidates name (a load balancer may map e.g. 443 to `bind`'s port);
    /// 0: the bound port.
    pub advertised_port: u16,
}

/// What one instance takes on (0 = no limit for the participant counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaLimits {
    /// Participants in one room.
    pub room_participants: usize,
    /// Participants on this instance.
    pub participants: usize,
    /// m-lines per offer: `wants` never asks a participant for more receive slots than fit.
    pub media_lines: usize,
}

impl Default for MediaLimits {
    fn default() -> Self {
        MediaLimits {
            room_participants: 0,
            participants: 0,
            media_lines: 64,
        }
    }
}

/// What a participant receives and from whom, told to the client after every change.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionView {
    /// Grows with every view the engine produces: a session writes a view only if it is newer
    /// than the last one written (events and negotiation replies can cross).
    pub version: u64,
    pub wants: Wants,
    pub slots: Vec<SlotView>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotView {
    /// The subscriber's `recvonly` m-line.
    pub mid: String,
    pub kind: MediaKind,
    /// `None` while the slot carries nothing.
    pub source: Option<SlotSource>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotSource {
    pub session: String,
    pub display_name: String,
    /// The publisher's m-line the track comes from.
    pub mid: String,
}

/// What a published track carries, as its publisher declares it (the session document's
/// `sources`); a track it does not name is its camera (video) or microphone (audio).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TrackSource {
    Camera,
    Microphone,
    Screen,
    ScreenAudio,
}

impl TrackSource {
    pub const ALL: [TrackSource; 4] = [
        TrackSource::Camera,
        TrackSource::Microphone,
        TrackSource::Screen,
        TrackSource::ScreenAudio,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TrackSource::Camera => "camera",
            TrackSource::Microphone => "microphone",
            TrackSource::Screen => "screen",
            TrackSource::ScreenAudio => "screen-audio",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The kind of m-line that can carry it.
    pub fn kind(self) -> MediaKind {
        match self {
            TrackSource::Camera | TrackSource::Screen => MediaKind::Video,
            TrackSource::Microphone | TrackSource::ScreenAudio => MediaKind::Audio,
        }
    }

    /// What a track of `kind` carries when its publisher does not say.
    pub fn default_for(kind: MediaKind) -> Self {
        match kind {
            MediaKind::Video => TrackSource::Camera,
            MediaKind::Audio => TrackSource::Microphone,
        }
    }
}

/// One entry of the room roster: what a participant publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roster {
    pub display_name: String,
    pub tracks: Vec<(String, MediaKind)>,
    /// The source of each published track (every mid of `tracks`).
    pub sources: std::collections::BTreeMap<String, TrackSource>,
    /// A viewer session: whom it watches (its document's `watch`).
    pub watching: Option<String>,
}

impl Roster {
    /// The participant shares its screen (publishes a `screen` track).
    pub fn presents(&self) -> bool {
        self.sources.values().any(|s| *s == TrackSource::Screen)
    }
}

/// An offer signalling hands to the engine.
#[derive(Debug, Clone)]
pub struct SessionOffer {
    pub key: SessionKey,
    /// The session's peer for a re-offer (the engine refuses it with `Closed` if that peer is
    /// gone); `None` for a first offer, which creates the peer.
    pub peer: Option<PeerId>,
    pub display_name: String,
    pub sdp: String,
    /// The session may receive (its join token grants `subscribe`): otherwise its `wants`
    /// stays zero, so a well-behaved client never offers slots it would be refused.
    pub receives: bool,
    /// What its published m-lines carry, as the document's `sources` says (checked against
    /// the kinds; mids that publish nothing are ignored).
    pub sources: std::collections::BTreeMap<String, TrackSource>,
    /// How many participants of the room may share a screen at once (0: any number).
    pub presenters: u32,
    /// A viewer session: it receives only whom it watches (the document's `watch`).
    pub watch: Option<Watch>,
}

/// The result of applying an offer.
#[derive(Debug, Clone)]
pub struct Negotiated {
    pub peer: PeerId,
    pub answer: String,
    pub view: SessionView,
    pub roster: Roster,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    #[error(transparent)]
    Offer(#[from] OfferError),
    /// The WebRTC stack refused the offer (or could not build an answer) for a reason our own
    /// checks did not foresee.
    #[error("the offer could not be negotiated: {0}")]
    Rejected(String),
    /// The peer the re-offer was meant for no longer exists (it closed meanwhile).
    #[error("the session is already closed")]
    Closed,
    #[error("the media engine has stopped")]
    EngineGone,
    #[error("the room already has {max} participants, its limit")]
    RoomFull { max: usize },
    #[error("this instance already serves {max} participants, its limit")]
    InstanceFull { max: usize },
    /// A screen share while the room's presenters are all taken.
    #[error("{presenter} is presenting; the room allows {} at a time", screen_shares(*.max))]
    PresenterBusy { presenter: String, max: u32 },
    /// `sources` names a source that an m-line of that kind cannot carry.
    #[error("`sources.{mid}` is \"{what}\" but m-line {mid} carries {kind}")]
    SourceKind {
        mid: String,
        what: &'static str,
        kind: &'static str,
    },
    /// `watch` names a session that is not in the room.
    #[error("`watch` names session {session:?}, which is not in the room")]
    WatchedGone { session: String },
}

/// "one screen share", "2 screen shares".
fn screen_shares(n: u32) -> String {
    if n == 1 {
        "one screen share".to_owned()
    } else {
        format!("{n} screen shares")
    }
}

/// Why the engine closed a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Signalling asked (the participant left).
    Left,
    /// Nothing heard from a connected peer for `peer_timeout`.
    Timeout,
    /// ICE or DTLS failed, or a peer never connected within `peer_timeout`.
    ConnectFailed(ConnectAttempt),
    /// The instance is shutting down.
    Shutdown,
    /// A viewer's watched participant left the room.
    WatchedGone,
}

/// What a peer tried before it failed to connect: what a `connect-failed` message names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnectAttempt {
    /// Connectivity checks (STUN binding requests) that reached us, by transport.
    pub udp_checks: u32,
    pub tcp_checks: u32,
    /// The offer carried relay (TURN) candidates.
    pub relay_offered: bool,
    /// ICE found a path (so DTLS is what failed).
    pub ice_connected: bool,
}

impl ConnectAttempt {
    /// A sentence the user (or their admin) can act on.
    pub fn describe(&self) -> String {
        if self.ice_connected {
            return "ICE found a path but the DTLS handshake failed (a fingerprint or \
                    certificate mismatch, or the path broke right after)"
                .to_owned();
        }
        let relay = if self.relay_offered {
            "relay (TURN) candidates were offered"
        } else {
            "the offer had no relay (TURN) candidates"
        };
        let hint = match (self.udp_checks + self.tcp_checks, self.relay_offered) {
            (0, false) => {
                "; the network seems to block the server's UDP and TCP ports: configure the \
                 TURN servers of the join response's iceServers"
            }
            (0, true) => "; no check arrived through the relay either: can it reach the server?",
            _ => "; checks arrived but none completed (a firewall on the way back?)",
        };
        format!(
            "no network path to the server worked: {} connectivity checks arrived over UDP, \
             {} over TCP (ICE-TCP); {relay}{hint}",
            self.udp_checks, self.tcp_checks
        )
    }
}

pub enum Command {
    /// Apply a (re-)offer of `key`. A session's first offer (`peer: None`) creates its peer;
    /// a re-offer names the peer it is for, and fails with `Closed` if that one is gone.
    Negotiate {
        offer: SessionOffer,
        reply: oneshot::Sender<Result<Negotiated, NegotiationError>>,
    },
    Close {
        peer: PeerId,
        reason: CloseReason,
    },
    /// What the session `key` wants to receive on its slots (its document's `receive`).
    Wishes {
        key: SessionKey,
        wishes: std::collections::HashMap<String, SlotWish>,
    },
    /// Which published tracks of the session `key` the application muted (its document's
    /// `muted`): they are not forwarded.
    Muted {
        key: SessionKey,
        mids: std::collections::BTreeSet<String>,
    },
    AttachSource {
        spec: source::SourceSpec,
        reply: oneshot::Sender<Result<PeerId, NegotiationError>>,
    },
    SourceRtp {
        source: PeerId,
        track: usize,
        packet: rtc::rtp::Packet,
    },
    DetachSource {
        source: PeerId,
    },
    /// Close every peer (reporting each) and stop.
    Shutdown,
    /// Test builds only: panic on the media thread.
    #[cfg(feature = "fault-injection")]
    InjectPanic,
}

/// Something the engine tells signalling about one session. It names the session itself, so
/// that it can be routed before signalling has learned the peer id from the negotiation reply.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaEvent {
    pub peer: PeerId,
    pub session: SessionKey,
    pub what: SessionEvent,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    Connected,
    Closed(CloseReason),
    ViewChanged(SessionView),
    /// Every few seconds: ICE round-trip time and the loss of what the peer publishes.
    Quality {
        rtt_ms: Option<f64>,
        loss: Option<f64>,
    },
    /// Which simulcast layers of the peer's published tracks someone receives (publish mid →
    /// rid → active): the client stops encoding inactive ones (dynacast).
    Layers(std::collections::BTreeMap<String, std::collections::BTreeMap<String, bool>>),
    /// The room's dominant speaker changed (session id and display name; `None`: nobody).
    /// Sent to one session of the room, which writes the room's `live/speaker`.
    Speaker(Option<(String, String)>),
}

/// Counters the engine keeps; read by telemetry and benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaStats {
    pub peers: usize,
    pub rooms: usize,
    /// Offers applied successfully (first offers and re-offers).
    pub negotiations: u64,
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    pub rtp_in: u64,
    pub rtp_forwarded: u64,
    pub rtp_bytes_in: u64,
    pub rtp_bytes_forwarded: u64,
    pub tracks_published: u64,
    pub tracks_forwarded: u64,
    /// NACK feedback from subscribers (answered by the stack's retransmission buffer).
    pub nacks_received: u64,
    pub dropped_unknown_sender: u64,
    /// Padding-only packets (bandwidth probes), not forwarded.
    pub dropped_padding: u64,
    /// Packets of tracks the application muted, not forwarded.
    pub dropped_muted: u64,
    pub dropped_codec_mismatch: u64,
    pub dropped_by_stack: u64,
    pub send_errors: u64,
    pub keyframe_requests: u64,
    /// Datagrams the kernel dropped because the receive buffer was full.
    pub kernel_receive_drops: Option<u64>,
    /// Mean loss of what connected peers publish to us, parts per million.
    pub loss_ppm: u32,
    /// Per room (with at least one peer), for the fleet's load reports.
    pub room_loads: Vec<RoomLoadStat>,
    /// Every peer and the session it serves (refreshed every second), for reconciliation.
    pub sessions: Vec<(SessionKey, PeerId)>,
    /// Binding requests from a new address whose MESSAGE-INTEGRITY did not verify.
    pub dropped_unauthenticated: u64,
    /// ICE-TCP: connections open now, refused (over the limits), frames in and out, and
    /// frames dropped because the client read too slowly (its queue was full).
    pub tcp_connections: u64,
    pub tcp_refused: u64,
    pub tcp_frames_in: u64,
    pub tcp_frames_out: u64,
    pub tcp_send_dropped: u64,
    /// Peers whose selected ICE path is TCP (as of the last second).
    pub peers_over_tcp: u64,
    /// Publisher packets a slot did not take because it forwards another simulcast layer
    /// (or is paused).
    pub dropped_other_layer: u64,
    /// Published packets that arrived after a later one of their stream: retransmissions
    /// the server asked for (NACK), and reordering.
    pub published_late: u64,
    /// Slots that changed simulcast layer (at a keyframe).
    pub layer_switches: u64,
    /// Video slots (as of the last adaptation) paused or held below what the subscriber
    /// asked for, for lack of downlink bandwidth; and paused at the subscriber's request.
    pub slots_constrained: u64,
    pub slots_paused: u64,
    /// Sender reports sent to subscribers, and how many of them were translated from the
    /// publisher's (the rest: from forwarding times, before the publisher's first report).
    pub sender_reports: u64,
    pub sender_reports_translated: u64,
    /// Each connected peer's downlink estimate, bits per second (as of the last second).
    pub downlinks: Vec<(SessionKey, Option<u64>)>,
    /// Entries of the engine's tables, by name (as of the last second).
    pub tables: Vec<(&'static str, usize)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomLoadStat {
    pub room: String,
    pub participants: u32,
    pub published_tracks: u32,
    pub forwarded_tracks: u32,
    /// Participants (peers, not sources) that may receive: a camera is pulled while it has one.
    pub viewers: u32,
}

pub type Commands = mpsc::UnboundedSender<Command>;
pub type Events = mpsc::UnboundedReceiver<MediaEvent>;
