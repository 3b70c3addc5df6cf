//! One camera, pulled: open its credentials, connect, join the room as a source, forward its
//! frames, and on failure say why and try again (or, when only new settings can help, wait).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use retina::codec::CodecItem;
use tokio::sync::{mpsc, watch};

use super::backoff::Backoff;
use super::documents::{
    CameraError, CameraErrorCode, CameraSecret, CameraSourceDoc, CameraState, session_id,
};
use super::h264;
use super::packetize::Packetizer;
use super::rtsp::{self, G711, Opened};
use super::store::{CameraStatus, CameraStore};
use crate::media::rewrite::CodecDesc;
use crate::media::source::{SourceSpec, SourceTrack};
use crate::media::{EngineHandle, MediaKind, PeerId, Roster, SessionKey, TrackSource};
use crate::sealed::SealKey;
use crate::signalling::store::{ParticipantEntry, Store};

/// The H.264 the answers offer (`codecs.rs`): packetization mode 1, constrained baseline
/// level 3.1. Cameras' main or high profile without B-frames decodes under it in browsers.
pub const H264_PT: u8 = 102;
const H264_FMTP: &str = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";

/// `profile_idc` of H.264's baseline profile: no B-frames.
const BASELINE: u8 = 66;
/// Frames of another profile seen (and held) before the first is forwarded: B-frames show in
/// the first few frames after a keyframe (x264 and cameras put them right after the first P).
const PROBE_FRAMES: u32 = 8;

fn audio_packetizer(g: Option<G711>) -> Packetizer {
    let pt = g.map_or(0, G711::payload_type);
    Packetizer::audio(pt, rand::random(), 8000, (rand::random(), rand::random()))
}

/// Why a camera's task ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Nobody in the room receives: the camera's state becomes `idle`.
    NoViewers,
    /// Its settings changed, it was disabled or deleted, or the instance stops: someone else
    /// says what its state is.
    Quietly,
}

/// What every camera task shares.
pub struct Context {
    pub engine: Arc<EngineHandle>,
    pub cameras: CameraStore,
    pub roster: Arc<Store>,
    pub key: Option<Arc<SealKey>>,
    pub group: Arc<retina::client::SessionGroup>,
    /// Bounds connecting (DESCRIBE → PLAY).
    pub connect_timeout: Duration,
    /// No frame for this long: the camera stopped sending.
    pub read_timeout: Duration,
    /// Where state changes are reported for webhooks (`camera.changed`).
    pub events: crate::events::Emitter,
}

/// One camera to pull.
#[derive(Debug, Clone)]
pub struct Camera {
    pub id: String,
    pub doc: CameraSourceDoc,
}

struct Attached {
    peer: PeerId,
    audio: Option<G711>,
}

/// Pulls `camera` until `stop` says otherwise.
pub async fn run(ctx: Arc<Context>, camera: Camera, mut stop: watch::Receiver<Option<Stop>>) {
    let (statuses, queue) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write_statuses(ctx.clone(), camera.clone(), queue));
    let mut pull = Pull {
        statuses,
        key: SessionKey {
            room: camera.doc.room.clone(),
            session: session_id(&camera.id),
        },
        ctx,
        camera,
        attached: None,
        video: Packetizer::h264(H264_PT, rand::random(), (rand::random(), rand::random())),
        audio: None,
        backoff: Backoff::default(),
        joined: SystemTime::now(),
    };
    let reason = pull.until_stopped(&mut stop).await;
    pull.detach().await;
    if reason == Stop::NoViewers {
        pull.status(CameraState::Idle, None);
    }
    drop(pull);
    let _ = writer.await;
}

/// Writes the camera's states in the order they were reached, away from the camera's reads:
/// a slow Firestore delays the document, never the frames.
/// Each change of state (or of its error's code) is also reported for webhooks.
async fn write_statuses(
    ctx: Arc<Context>,
    camera: Camera,
    mut queue: mpsc::UnboundedReceiver<CameraStatus>,
) {
    let room = &camera.doc.room;
    let mut reported = None;
    while let Some(status) = queue.recv().await {
        if let Err(e) = ctx.cameras.set_status(room, &camera.id, &status).await {
            tracing::warn!(%room, camera = %camera.id, "camera state not written: {e}");
        }
        let now = (status.state, status.error.as_ref().map(|e| e.code));
        if reported != Some(now) {
            reported = Some(now);
            ctx.events.emit(room, camera_changed(&camera, &status));
        }
    }
}

/// A state or error code as its document spells it (`live`, `unreachable`).
fn wire_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn camera_changed(camera: &Camera, status: &CameraStatus) -> crate::events::Kind {
    crate::events::Kind::CameraChanged(crate::events::proto::CameraChanged {
        camera_id: camera.id.clone(),
        name: camera.doc.name.clone(),
        state: wire_name(&status.state),
        error_code: status
            .error
            .as_ref()
            .map(|e| wire_name(&e.code))
            .unwrap_or_default(),
        error_message: status
            .error
            .as_ref()
            .map(|e| e.message.clone())
            .unwrap_or_default(),
        instance_id: status.instance.clone(),
    })
}

struct Pull {
    ctx: Arc<Context>,
    /// To [`write_statuses`].
    statuses: mpsc::UnboundedSender<CameraStatus>,
    camera: Camera,
    key: SessionKey,
    attached: Option<Attached>,
    video: Packetizer,
    audio: Option<Packetizer>,
    backoff: Backoff,
    joined: SystemTime,
}

async fn stopped(stop: &mut watch::Receiver<Option<Stop>>) -> Stop {
    loop {
        if let Some(reason) = *stop.borrow_and_update() {
            return reason;
        }
        if stop.changed().await.is_err() {
            return Stop::Quietly;
        }
    }
}

impl Pull {
    async fn until_stopped(&mut self, stop: &mut watch::Receiver<Option<Stop>>) -> Stop {
        let secret = match self.secret() {
            Ok(secret) => secret,
            Err(e) => {
                self.status(CameraState::Failed, Some(e));
                return stopped(stop).await;
            }
        };
        loop {
            self.status(CameraState::Connecting, None);
            let opened = tokio::select! {
                reason = stopped(stop) => return reason,
                opened = rtsp::open(&secret, self.camera.doc.transport, self.ctx.group.clone(), self.ctx.connect_timeout) => opened,
            };
            let failure = match opened {
                Err(e) => e,
                Ok(opened) => {
                    tokio::select! {
                        reason = stopped(stop) => return reason,
                        failure = self.stream(opened) => failure,
                    }
                }
            };
            tracing::info!(
                room = %self.key.room,
                camera = %self.camera.id,
                code = ?failure.code,
                "camera: {}", failure.message
            );
            self.detach().await;
            if !failure.code.transient() {
                self.status(CameraState::Failed, Some(failure));
                return stopped(stop).await;
            }
            self.status(CameraState::Retrying, Some(failure));
            let wait = self.backoff.next(rand::random());
            tokio::select! {
                reason = stopped(stop) => return reason,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn secret(&self) -> Result<CameraSecret, CameraError> {
        let Some(key) = &self.ctx.key else {
            return Err(CameraError {
                code: CameraErrorCode::Credentials,
                message: "this server has no camera key (FIRESFU_CAMERA_KEY)".into(),
            });
        };
        let opened = key.open(&self.camera.id, &self.camera.doc.sealed);
        let secret = opened
            .ok()
            .and_then(|plain| serde_json::from_slice::<CameraSecret>(&plain).ok());
        let secret = secret.ok_or_else(|| CameraError {
            code: CameraErrorCode::Credentials,
            message: "the camera's settings do not open with this server's camera key \
                      (FIRESFU_CAMERA_KEY differs from the sidecar's)"
                .into(),
        })?;
        rtsp::parse_url(&secret.url)?;
        Ok(secret)
    }

    /// Forwards the camera's frames until something fails (what, is returned).
    async fn stream(&mut self, mut opened: Opened) -> CameraError {
        let audio = opened.audio.map(|(_, g)| g);
        let now = Instant::now();
        self.video.timeline.restart(now);
        if let Some(a) = &mut self.audio {
            a.timeline.restart(now);
        }
        let audio_stream = opened.audio.map(|(i, _)| i);
        // From the first keyframe on, what arrives is held until the stream is known to have
        // no B-frames (a baseline SPS says so; other profiles show theirs within a few frames):
        // a stream refused for them never reaches a viewer.
        let mut started = false;
        let mut probing = 0u32;
        let mut held: Vec<(usize, rtc::rtp::Packet)> = Vec::new();
        let mut live = false;
        let mut packets = Vec::new();
        let read_timeout = self.ctx.read_timeout;
        loop {
            let item = match tokio::time::timeout(read_timeout, opened.stream.next()).await {
                Err(_) => {
                    return CameraError {
                        code: CameraErrorCode::NoMedia,
                        message: format!(
                            "the camera sent nothing for {} s",
                            read_timeout.as_secs()
                        ),
                    };
                }
                Ok(None) => {
                    return CameraError {
                        code: CameraErrorCode::NoMedia,
                        message: "the camera ended the stream".into(),
                    };
                }
                Ok(Some(Err(e))) => return rtsp::classify(&e),
                Ok(Some(Ok(item))) => item,
            };
            let now = Instant::now();
            match item {
                CodecItem::VideoFrame(frame) if frame.stream_id() == opened.video => {
                    let au = h264::inspect(frame.data());
                    if au.b_slice {
                        return CameraError {
                            code: CameraErrorCode::BFrames,
                            message: "the camera's H.264 has B-frames, which WebRTC cannot \
                                      carry: turn B-frames off (or pick a baseline-profile \
                                      stream) in the camera's settings"
                                .into(),
                        };
                    }
                    if !started {
                        if !frame.is_random_access_point() {
                            continue;
                        }
                        started = true;
                        probing = if au.profile == Some(BASELINE) {
                            0
                        } else {
                            PROBE_FRAMES
                        };
                    }
                    let new_parameters = frame.has_new_parameters();
                    let ts = self.video.timeline.map(frame.timestamp().elapsed(), now);
                    self.video
                        .frame(ts, &Bytes::from(frame.into_data()), &mut packets);
                    if live {
                        self.send(0, &mut packets);
                    } else {
                        held.extend(packets.drain(..).map(|p| (0, p)));
                        probing = probing.saturating_sub(1);
                        if probing > 0 {
                            continue;
                        }
                        if let Err(e) = self.attach(audio).await {
                            return e;
                        }
                        for (track, packet) in held.drain(..) {
                            self.send_one(track, packet);
                        }
                    }
                    if !live || new_parameters {
                        if !live {
                            self.backoff.reset();
                        }
                        live = true;
                        let (width, height, codec) =
                            rtsp::video_parameters(&opened.stream.streams()[opened.video]);
                        opened.width = width;
                        opened.height = height;
                        opened.codec = codec;
                        self.live_status(&opened);
                    }
                }
                CodecItem::AudioFrame(frame) if Some(frame.stream_id()) == audio_stream => {
                    if !started {
                        continue;
                    }
                    let a = match &mut self.audio {
                        Some(a) if Some(a.payload_type()) == audio.map(G711::payload_type) => a,
                        slot => slot.insert(audio_packetizer(audio)),
                    };
                    let ts = a.timeline.map(frame.timestamp().elapsed(), now);
                    a.frame(ts, &Bytes::copy_from_slice(frame.data()), &mut packets);
                    if live {
                        self.send(1, &mut packets);
                    } else {
                        held.extend(packets.drain(..).map(|p| (1, p)));
                    }
                }
                _ => {}
            }
        }
    }

    fn send(&self, track: usize, packets: &mut Vec<rtc::rtp::Packet>) {
        for p in packets.drain(..) {
            self.send_one(track, p);
        }
    }

    fn send_one(&self, track: usize, packet: rtc::rtp::Packet) {
        if let Some(a) = &self.attached {
            self.ctx.engine.source_rtp(a.peer, track, packet);
        }
    }

    /// Joins the room as a source with video (and the audio the camera now has).
    async fn attach(&mut self, audio: Option<G711>) -> Result<(), CameraError> {
        if let Some(a) = &self.attached
            && a.audio == audio
        {
            return Ok(());
        }
        let mut tracks = vec![SourceTrack {
            mid: "video".into(),
            kind: MediaKind::Video,
            source: TrackSource::Camera,
            codec: CodecDesc {
                payload_type: H264_PT,
                mime: "video/H264".into(),
                fmtp: H264_FMTP.into(),
                clock_rate: 90_000,
            },
            height: None,
        }];
        if let Some(g) = audio {
            tracks.push(SourceTrack {
                mid: "audio".into(),
                kind: MediaKind::Audio,
                source: TrackSource::Microphone,
                codec: CodecDesc {
                    payload_type: g.payload_type(),
                    mime: format!("audio/{}", g.name()),
                    fmtp: String::new(),
                    clock_rate: 8000,
                },
                height: None,
            });
            if self
                .audio
                .as_ref()
                .is_none_or(|a| a.payload_type() != g.payload_type())
            {
                self.audio = Some(audio_packetizer(Some(g)));
            }
        }
        let spec = SourceSpec {
            key: self.key.clone(),
            display_name: self.camera.doc.name.clone(),
            tracks,
        };
        let roster = Roster {
            display_name: spec.display_name.clone(),
            tracks: spec
                .tracks
                .iter()
                .map(|t| (t.mid.clone(), t.kind))
                .collect(),
            sources: spec
                .tracks
                .iter()
                .map(|t| (t.mid.clone(), t.source))
                .collect(),
            watching: None,
        };
        let peer = self
            .ctx
            .engine
            .attach_source(spec)
            .await
            .map_err(|e| CameraError {
                code: CameraErrorCode::Protocol,
                message: format!("the room cannot take the camera: {e}"),
            })?;
        self.attached = Some(Attached { peer, audio });
        let now = SystemTime::now();
        let media = serde_json::json!({"camera": true});
        let entry = ParticipantEntry {
            roster: &roster,
            media: &media,
            hand: None,
            muted: &Default::default(),
            uid: None,
            joined: self.joined,
            expires: now + Duration::from_secs(24 * 3600),
        };
        if let Err(e) = self
            .ctx
            .roster
            .put_participant(&self.key, &entry, now)
            .await
        {
            tracing::warn!(room = %self.key.room, camera = %self.camera.id, "camera roster entry not written: {e}");
        }
        Ok(())
    }

    async fn detach(&mut self) {
        if let Some(a) = self.attached.take() {
            self.ctx.engine.detach_source(a.peer);
            if let Err(e) = self.ctx.roster.delete_participant(&self.key).await {
                tracing::warn!(room = %self.key.room, camera = %self.camera.id, "camera roster entry not deleted: {e}");
            }
        }
    }

    fn live_status(&self, opened: &Opened) {
        let mut status = self
            .ctx
            .cameras
            .status(CameraState::Live, None, SystemTime::now());
        status.codec = Some(opened.codec.clone());
        status.width = opened.width;
        status.height = opened.height;
        status.audio = opened.audio.map(|(_, g)| g.name().to_owned());
        status.audio_error = opened.audio_refused.clone().map(|message| CameraError {
            code: CameraErrorCode::UnsupportedCodec,
            message,
        });
        self.write(status);
    }

    fn status(&self, state: CameraState, error: Option<CameraError>) {
        self.write(self.ctx.cameras.status(state, error, SystemTime::now()));
    }

    /// Queued for [`write_statuses`]: in order, and never waited for on the media path.
    fn write(&self, status: CameraStatus) {
        let _ = self.statuses.send(status);
    }
}
