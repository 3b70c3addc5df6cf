//! A participant on str0m (a WebRTC stack independent of the server's): it offers, follows the
//! session document (answers, `wants`, `slots`), re-offers for more receive slots, publishes
//! tagged audio and video and checks every frame it receives.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use str0m::change::SdpPendingOffer;
use tokio::sync::mpsc;

use crate::endpoint::{Endpoint, MediaSpec, Transport, update};
use crate::firestore::SessionDoc;

#[derive(Debug, Clone)]
pub enum VideoSource {
    /// Tagged synthetic frames of this many bytes (checked byte for byte by receivers).
    Tagged { frame_bytes: usize },
    /// Real VP8 frames from an IVF file, looped (for decoders such as Chromium's).
    Ivf(PathBuf),
    /// Tagged frames of `frame_bytes`, and one of `keyframe_bytes` every `every` frames (the
    /// burst a keyframe makes).
    Keyframes {
        frame_bytes: usize,
        keyframe_bytes: usize,
        every: u32,
    },
}

#[derive(Debug, Clone)]
pub struct PeerSpec {
    pub room: String,
    pub session: String,
    pub display_name: String,
    pub token: Option<String>,
    /// The `uid` written into the session document (default `uid-<session>`).
    pub uid: Option<String>,
    /// W3C trace context to pass to the server (the sidecar's join response carries one).
    pub traceparent: Option<String>,
    pub publish_audio: bool,
    pub publish_video: bool,
    pub recv_audio: usize,
    pub recv_video: usize,
    /// Re-offer with more `recvonly` m-lines whenever the server's `wants` asks for them.
    pub follow_wants: bool,
    pub bind_ip: IpAddr,
    pub transport: Transport,
    pub video: VideoSource,
    /// Video leaves this long after its capture time (see `MediaSpec::video_delay`).
    pub video_delay: Duration,
    /// See `MediaSpec::remb`.
    pub remb: Option<u64>,
    /// See `MediaSpec::camera_codecs`.
    pub camera_codecs: bool,
}

impl PeerSpec {
    pub fn new(room: &str, session: &str) -> Self {
        PeerSpec {
            room: room.into(),
            session: session.into(),
            display_name: session.into(),
            token: None,
            uid: None,
            traceparent: None,
            publish_audio: true,
            publish_video: true,
            recv_audio: 0,
            recv_video: 0,
            follow_wants: true,
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            transport: Transport::Udp,
            video: VideoSource::Tagged { frame_bytes: 2500 },
            video_delay: Duration::ZERO,
            remb: None,
            camera_codecs: false,
        }
    }
}

/// What one source (another participant) delivered to us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    pub audio: u64,
    pub video: u64,
    /// Since the peer started.
    pub first: Duration,
    pub last: Duration,
    /// Capture times from the sender reports, for lip sync.
    pub sync: SyncSamples,
}

/// Per kind, recent values of (capture time from the sender reports − the frame's nominal
/// capture offset from its sequence number): each is the publisher's start as the reports
/// place it, in microseconds. Audio and video agree when the reports keep them in sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncSamples {
    pub audio: Vec<i64>,
    pub video: Vec<i64>,
}

impl SyncSamples {
    const KEEP: usize = 600;

    pub fn add(&mut self, kind: str0m::media::MediaKind, captured: i64, seq: u32) {
        let nominal = crate::endpoint::capture_offset(kind, seq).as_micros() as i64;
        let list = match kind {
            str0m::media::MediaKind::Audio => &mut self.audio,
            str0m::media::MediaKind::Video => &mut self.video,
        };
        if list.len() >= Self::KEEP {
            list.drain(..Self::KEEP / 6);
        }
        list.push(captured - nominal);
    }

    /// How much later video plays than audio captured at the same time, by the sender
    /// reports (medians), in milliseconds; `None` with fewer than `min` samples of either.
    pub fn av_offset_ms(&self, min: usize) -> Option<f64> {
        fn median(v: &[i64]) -> i64 {
            let mut v = v.to_vec();
            v.sort_unstable();
            v[v.len() / 2]
        }
        if self.audio.len() < min || self.video.len() < min {
            return None;
        }
        Some((median(&self.video) - median(&self.audio)) as f64 / 1000.0)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub state: Option<String>,
    /// `error.code`, `error.message` of the document.
    pub error: Option<(String, String)>,
    pub revision: i64,
    pub answered_revision: i64,
    /// Offer written → answer seen, per answered revision.
    pub answer_latency: Vec<Duration>,
    /// Offer written → answer written, in Firestore's own clock (the document's create and
    /// update times), for the first offer.
    pub answer_written: Option<Duration>,
    /// RTP packets received (all kinds).
    pub rtp_received: u64,
    pub connected: bool,
    /// Remote description applied → ICE and DTLS connected (this client's side).
    pub connect_time: Option<Duration>,
    pub sent_audio: u64,
    pub sent_video: u64,
    /// By the source tag in the payload (the publisher's session id).
    pub received: BTreeMap<String, Received>,
    /// Tagged frames that arrived damaged (or on a slot of the wrong kind).
    pub corrupt: u64,
    /// Frames without our tag (from browsers), counted under the slot's participant.
    pub foreign: u64,
    /// The last source tag seen per receive mid.
    pub mid_sources: BTreeMap<String, String>,
    /// `slots` of the document: mid → participant (None = idle).
    pub slots: BTreeMap<String, Option<String>>,
    pub wants: (usize, usize),
    pub recv_slots: (usize, usize),
    /// Frames of at least 20 packets that arrived (the latest 50): their packet count and the
    /// time from their first packet's arrival to their last's.
    pub bursts: Vec<(u32, Duration)>,
    /// Keyframe requests (PLI + FIR) received for what we publish.
    pub keyframe_requests: u64,
    pub rtt: Option<Duration>,
    /// First offer written → first media received from anyone.
    pub first_media: Option<Duration>,
    pub deleted: bool,
    pub finished: Option<String>,
}

impl Report {
    pub fn video_from(&self, tag: &str) -> u64 {
        self.received.get(tag).map(|r| r.video).unwrap_or(0)
    }
    pub fn audio_from(&self, tag: &str) -> u64 {
        self.received.get(tag).map(|r| r.audio).unwrap_or(0)
    }
}

pub enum Leave {
    /// Write `state: "closed"`.
    Close,
    /// Delete the document.
    Delete,
    /// Stop everything without a word (a killed tab).
    Vanish,
}

/// What a test asks a running peer to do.
enum Control {
    Leave(Leave),
    /// Re-offer, now publishing audio and video too.
    Publish,
    /// Delete the session document but keep the peer connection (and ICE) alive: a client
    /// that misbehaves, or a delete the server's listener missed.
    DeleteDocumentOnly,
    /// Re-offer with new ICE credentials (what a browser does after a network change).
    IceRestart,
}

pub struct Peer {
    pub spec: PeerSpec,
    report: Arc<Mutex<Report>>,
    control: mpsc::UnboundedSender<Control>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub doc: SessionDoc,
}

impl Peer {
    pub async fn join(db: &firestore::FirestoreDb, spec: PeerSpec) -> anyhow::Result<Peer> {
        let doc = SessionDoc {
            db: db.clone(),
            room: spec.room.clone(),
            session: spec.session.clone(),
        };
        let report = Arc::new(Mutex::new(Report::default()));
        let (control, control_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(spec.clone(), doc.clone(), report.clone(), control_rx));
        Ok(Peer {
            spec,
            report,
            control,
            task,
            doc,
        })
    }

    pub fn report(&self) -> Report {
        self.report.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Waits until `cond` holds, or fails with the last report.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&Report) -> bool,
    ) -> anyhow::Result<Report> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.report();
            if cond(&r) {
                return Ok(r);
            }
            if Instant::now() >= deadline || self.task.is_finished() {
                bail!(
                    "{}: timed out waiting for {what}; report: {r:#?}",
                    self.spec.session
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Re-offers publishing audio and video (the offer's revision grows by one).
    pub fn publish(&self) {
        let _ = self.control.send(Control::Publish);
    }

    /// Re-offers with new ICE credentials (the offer's revision grows by one).
    pub fn ice_restart(&self) {
        let _ = self.control.send(Control::IceRestart);
    }

    /// Deletes the session document and keeps the peer connection running.
    pub fn delete_document_only(&self) {
        let _ = self.control.send(Control::DeleteDocumentOnly);
    }

    pub async fn leave(self, how: Leave) -> anyhow::Result<Report> {
        let _ = self.control.send(Control::Leave(how));
        match tokio::time::timeout(Duration::from_secs(10), self.task).await {
            Ok(Ok(result)) => result?,
            Ok(Err(e)) => bail!("peer task panicked: {e}"),
            Err(_) => bail!("peer did not stop"),
        }
        Ok(self.report.lock().map(|r| r.clone()).unwrap_or_default())
    }
}

async fn run(
    spec: PeerSpec,
    doc: SessionDoc,
    report: Arc<Mutex<Report>>,
    mut control: mpsc::UnboundedReceiver<Control>,
) -> anyhow::Result<()> {
    let result = drive(&spec, &doc, &report, &mut control).await;
    update(&report, |r| {
        r.finished = Some(match &result {
            Ok(()) => "left".into(),
            Err(e) => format!("error: {e:#}"),
        })
    });
    result
}

async fn drive(
    spec: &PeerSpec,
    doc: &SessionDoc,
    report: &Arc<Mutex<Report>>,
    control: &mut mpsc::UnboundedReceiver<Control>,
) -> anyhow::Result<()> {
    let media = MediaSpec {
        tag: spec.session.clone(),
        publish_audio: spec.publish_audio,
        publish_video: spec.publish_video,
        video: spec.video.clone(),
        video_delay: spec.video_delay,
        remb: spec.remb,
        camera_codecs: spec.camera_codecs,
    };
    let mut ep = Endpoint::bind_with(spec.bind_ip, spec.transport, media, report.clone()).await?;
    let (offer, first) = ep.first_offer(spec.recv_audio, spec.recv_video)?;

    let (mut snapshots, listener) = doc.listen().await?;
    let uid = spec
        .uid
        .clone()
        .unwrap_or_else(|| format!("uid-{}", spec.session));
    doc.create(
        &spec.display_name,
        &uid,
        spec.token.as_deref(),
        spec.traceparent.as_deref(),
        &offer,
    )
    .await?;
    let now = Instant::now();
    ep.signalled_at = Some(now);
    let mut pending: Option<(SdpPendingOffer, i64, Instant)> = Some((first, 1, now));
    let mut revision = 1i64;
    update(report, |r| r.revision = 1);

    let outcome: anyhow::Result<()> = loop {
        let deadline = ep.drain().await;
        if !ep.rtc.is_alive() {
            break Err(anyhow::anyhow!("the peer connection died"));
        }
        let wait = deadline.min(Instant::now() + Duration::from_millis(10));
        tokio::select! {
            received = ep.recv() => ep.receive(received?),
            snapshot = snapshots.recv() => {
                let Some(snapshot) = snapshot else { break Err(anyhow::anyhow!("listener stopped")) };
                let Some(snapshot) = snapshot else {
                    update(report, |r| r.deleted = true);
                    continue;
                };
                on_snapshot(&snapshot, report);
                if let Err(e) = apply_answer(&snapshot, &mut ep, &mut pending, report) {
                    break Err(e);
                }
                if spec.follow_wants
                    && pending.is_none()
                    && let Some((sdp, p)) = more_slots(&snapshot, &mut ep)
                {
                    revision += 1;
                    update(report, |r| r.revision = revision);
                    if let Err(e) = doc.reoffer(&sdp, revision).await {
                        break Err(e);
                    }
                    pending = Some((p, revision, Instant::now()));
                }
            }
            what = control.recv() => {
                match what {
                    Some(Control::Publish) => {
                        if pending.is_none() && let Some((sdp, p)) = ep.publish_more() {
                            revision += 1;
                            update(report, |r| r.revision = revision);
                            doc.reoffer(&sdp, revision).await?;
                            pending = Some((p, revision, Instant::now()));
                        }
                        continue;
                    }
                    Some(Control::IceRestart) => {
                        if pending.is_none() && let Some((sdp, p)) = ep.ice_restart() {
                            revision += 1;
                            update(report, |r| r.revision = revision);
                            doc.reoffer(&sdp, revision).await?;
                            pending = Some((p, revision, Instant::now()));
                        }
                        continue;
                    }
                    Some(Control::DeleteDocumentOnly) => {
                        doc.delete().await?;
                        continue;
                    }
                    Some(Control::Leave(Leave::Close)) => doc.close().await?,
                    Some(Control::Leave(Leave::Delete)) => doc.delete().await?,
                    Some(Control::Leave(Leave::Vanish)) | None => {}
                }
                break Ok(());
            }
            _ = tokio::time::sleep_until(wait.into()) => ep.tick(Instant::now()),
        }
    };
    listener.stop().await;
    ep.close();
    outcome
}

fn int(v: Option<&Value>) -> Option<i64> {
    v.and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
}

fn on_snapshot(doc: &Value, report: &Arc<Mutex<Report>>) {
    update(report, |r| {
        r.state = doc.get("state").and_then(Value::as_str).map(str::to_owned);
        r.error = doc.get("error").filter(|e| !e.is_null()).map(|e| {
            (
                e.get("code")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                e.get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            )
        });
        if let Some(w) = doc.get("wants") {
            r.wants = (
                int(w.get("audio")).unwrap_or(0) as usize,
                int(w.get("video")).unwrap_or(0) as usize,
            );
        }
        if let Some(Value::Object(slots)) = doc.get("slots") {
            r.slots = slots
                .iter()
                .map(|(mid, s)| {
                    (
                        mid.clone(),
                        s.get("participant")
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                    )
                })
                .collect();
        }
    });
}

fn apply_answer(
    doc: &Value,
    ep: &mut Endpoint,
    pending: &mut Option<(SdpPendingOffer, i64, Instant)>,
    report: &Arc<Mutex<Report>>,
) -> anyhow::Result<()> {
    let Some((_, revision, _)) = pending.as_ref() else {
        return Ok(());
    };
    let revision = *revision;
    let answer = doc.get("answer");
    let answered = int(answer.and_then(|a| a.get("revision")));
    let state = doc.get("state").and_then(Value::as_str).unwrap_or_default();
    if answered == Some(revision) && matches!(state, "answered" | "connected") {
        let sdp = answer
            .and_then(|a| a.get("sdp"))
            .and_then(Value::as_str)
            .context("answer without sdp")?;
        let (p, _, written) = pending.take().expect("checked above");
        ep.accept_answer(p, sdp)?;
        let in_firestore = (revision == 1).then(|| firestore_elapsed(doc)).flatten();
        update(report, |r| {
            r.answered_revision = revision;
            r.answer_latency.push(written.elapsed());
            if in_firestore.is_some() {
                r.answer_written = in_firestore;
            }
        });
        return Ok(());
    }
    let refused = doc
        .get("error")
        .and_then(|e| int(e.get("revision")))
        .is_some_and(|r| r == revision);
    if refused && !matches!(state, "offered" | "answering") {
        // The server refused this offer: drop it (str0m rolls back on drop).
        pending.take();
    }
    Ok(())
}

/// Update time − create time of a document snapshot (both Firestore server times).
fn firestore_elapsed(doc: &Value) -> Option<Duration> {
    let time = |field: &str| chrono::DateTime::parse_from_rfc3339(doc.get(field)?.as_str()?).ok();
    (time("_firestore_updated")? - time("_firestore_created")?)
        .to_std()
        .ok()
}

/// A re-offer when the server wants more receive slots than we have.
fn more_slots(doc: &Value, ep: &mut Endpoint) -> Option<(String, SdpPendingOffer)> {
    let state = doc.get("state").and_then(Value::as_str)?;
    if !matches!(state, "answered" | "connected") {
        return None;
    }
    let wants = doc.get("wants")?;
    let (have_a, have_v) = ep.slots();
    let need_a = (int(wants.get("audio")).unwrap_or(0) as usize).saturating_sub(have_a);
    let need_v = (int(wants.get("video")).unwrap_or(0) as usize).saturating_sub(have_v);
    ep.more_slots(need_a, need_v)
}
