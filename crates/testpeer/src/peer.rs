//! A participant on str0m (a WebRTC stack independent of the server's): it offers, follows the
//! session document (answers, `wants`, `slots`), re-offers for more receive slots, publishes
//! tagged audio and video and checks every frame it receives.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RawPacket;
use str0m::rtp::rtcp::Rtcp;
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::firestore::SessionDoc;
use crate::ivf::IvfClip;
use crate::payload;

#[derive(Debug, Clone)]
pub enum VideoSource {
    /// Tagged synthetic frames of this many bytes (checked byte for byte by receivers).
    Tagged { frame_bytes: usize },
    /// Real VP8 frames from an IVF file, looped (for decoders such as Chromium's).
    Ivf(PathBuf),
}

#[derive(Debug, Clone)]
pub struct PeerSpec {
    pub room: String,
    pub session: String,
    pub display_name: String,
    pub token: Option<String>,
    pub publish_audio: bool,
    pub publish_video: bool,
    pub recv_audio: usize,
    pub recv_video: usize,
    /// Re-offer with more `recvonly` m-lines whenever the server's `wants` asks for them.
    pub follow_wants: bool,
    pub bind_ip: IpAddr,
    pub video: VideoSource,
}

impl PeerSpec {
    pub fn new(room: &str, session: &str) -> Self {
        PeerSpec {
            room: room.into(),
            session: session.into(),
            display_name: session.into(),
            token: None,
            publish_audio: true,
            publish_video: true,
            recv_audio: 0,
            recv_video: 0,
            follow_wants: true,
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            video: VideoSource::Tagged { frame_bytes: 2500 },
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
    pub connected: bool,
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

pub struct Peer {
    pub spec: PeerSpec,
    report: Arc<Mutex<Report>>,
    control: mpsc::UnboundedSender<Leave>,
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
        let socket = UdpSocket::bind(SocketAddr::new(spec.bind_ip, 0)).await?;
        let task = tokio::spawn(run(
            spec.clone(),
            doc.clone(),
            socket,
            report.clone(),
            control_rx,
        ));
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

    pub async fn leave(self, how: Leave) -> anyhow::Result<Report> {
        let _ = self.control.send(how);
        match tokio::time::timeout(Duration::from_secs(10), self.task).await {
            Ok(Ok(result)) => result?,
            Ok(Err(e)) => bail!("peer task panicked: {e}"),
            Err(_) => bail!("peer did not stop"),
        }
        Ok(self.report.lock().map(|r| r.clone()).unwrap_or_default())
    }
}

struct Media {
    audio_tx: Option<Mid>,
    video_tx: Option<Mid>,
    recv: Vec<(Mid, MediaKind)>,
    audio_seq: u32,
    video_seq: u32,
    next_audio: Instant,
    next_video: Instant,
    clip: Option<IvfClip>,
}

async fn run(
    spec: PeerSpec,
    doc: SessionDoc,
    socket: UdpSocket,
    report: Arc<Mutex<Report>>,
    mut control: mpsc::UnboundedReceiver<Leave>,
) -> anyhow::Result<()> {
    let result = drive(&spec, &doc, &socket, &report, &mut control).await;
    if let Ok(mut r) = report.lock() {
        r.finished = Some(match &result {
            Ok(()) => "left".into(),
            Err(e) => format!("error: {e:#}"),
        });
    }
    result
}

async fn drive(
    spec: &PeerSpec,
    doc: &SessionDoc,
    socket: &UdpSocket,
    report: &Arc<Mutex<Report>>,
    control: &mut mpsc::UnboundedReceiver<Leave>,
) -> anyhow::Result<()> {
    let local = socket.local_addr()?;
    let start = Instant::now();
    let mut rtc = Rtc::builder()
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .set_stats_interval(Some(Duration::from_secs(1)))
        .enable_raw_packets(true)
        .build(start);
    rtc.add_local_candidate(Candidate::host(local, "udp").context("host candidate")?)
        .context("candidate refused")?;

    let clip = match &spec.video {
        VideoSource::Ivf(path) => Some(IvfClip::load(path)?),
        VideoSource::Tagged { .. } => None,
    };
    let mut media = Media {
        audio_tx: None,
        video_tx: None,
        recv: Vec::new(),
        audio_seq: 0,
        video_seq: 0,
        next_audio: start,
        next_video: start,
        clip,
    };
    let mut api = rtc.sdp_api();
    let stream = Some(spec.session.clone());
    if spec.publish_audio {
        media.audio_tx = Some(api.add_media(
            MediaKind::Audio,
            Direction::SendOnly,
            stream.clone(),
            Some("mic".into()),
            None,
        ));
    }
    if spec.publish_video {
        media.video_tx = Some(api.add_media(
            MediaKind::Video,
            Direction::SendOnly,
            stream.clone(),
            Some("cam".into()),
            None,
        ));
    }
    for _ in 0..spec.recv_audio {
        media.recv.push((
            api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None),
            MediaKind::Audio,
        ));
    }
    for _ in 0..spec.recv_video {
        media.recv.push((
            api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None),
            MediaKind::Video,
        ));
    }
    let (offer, pending_offer) = api.apply().context("nothing to offer")?;

    let (mut snapshots, listener) = doc.listen().await?;
    doc.create(
        &spec.display_name,
        spec.token.as_deref(),
        &offer.to_sdp_string(),
    )
    .await?;
    let first_offer_at = Instant::now();
    let mut pending: Option<(SdpPendingOffer, i64, Instant)> =
        Some((pending_offer, 1, first_offer_at));
    let mut revision = 1i64;
    update(report, |r| {
        r.revision = 1;
        r.recv_slots = count(&media.recv);
    });

    let mut buf = vec![0u8; 2000];
    let outcome: anyhow::Result<()> = loop {
        // Drain everything str0m wants to do before waiting.
        let timeout = loop {
            match rtc.poll_output() {
                Ok(Output::Timeout(t)) => break t,
                Ok(Output::Transmit(t)) => {
                    let _ = socket.send_to(&t.contents, t.destination).await;
                }
                Ok(Output::Event(e)) => {
                    on_event(e, &mut rtc, &media, report, start, first_offer_at)
                }
                Err(e) => tracing::debug!("str0m: {e}"),
            }
        };
        if !rtc.is_alive() {
            break Err(anyhow::anyhow!("the peer connection died"));
        }
        let wait = timeout.min(Instant::now() + Duration::from_millis(10));
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let (n, source) = received?;
                if let Ok(contents) = (&buf[..n]).try_into() {
                    let input = Input::Receive(Instant::now(), Receive {
                        proto: Protocol::Udp,
                        source,
                        destination: local,
                        contents,
                    });
                    if let Err(e) = rtc.handle_input(input) {
                        tracing::debug!("str0m input: {e}");
                    }
                }
            }
            snapshot = snapshots.recv() => {
                let Some(snapshot) = snapshot else { break Err(anyhow::anyhow!("listener stopped")) };
                let Some(snapshot) = snapshot else {
                    update(report, |r| r.deleted = true);
                    continue;
                };
                on_snapshot(&snapshot, report);
                if let Err(e) = apply_answer(&snapshot, &mut rtc, &mut pending, report) {
                    break Err(e);
                }
                if spec.follow_wants && pending.is_none()
                    && let Some(sdp) = more_slots(&snapshot, &mut rtc, &mut media)
                {
                    revision += 1;
                    update(report, |r| { r.revision = revision; r.recv_slots = count(&media.recv); });
                    let (sdp, p) = sdp;
                    if let Err(e) = doc.reoffer(&sdp, revision).await {
                        break Err(e);
                    }
                    pending = Some((p, revision, Instant::now()));
                }
            }
            how = control.recv() => {
                match how {
                    Some(Leave::Close) => { doc.close().await?; }
                    Some(Leave::Delete) => { doc.delete().await?; }
                    Some(Leave::Vanish) | None => {}
                }
                break Ok(());
            }
            _ = tokio::time::sleep_until(wait.into()) => {
                let now = Instant::now();
                if let Err(e) = rtc.handle_input(Input::Timeout(now)) {
                    tracing::debug!("str0m timeout: {e}");
                }
                if rtc.is_connected() {
                    send_media(&mut rtc, &mut media, spec, now, report);
                }
            }
        }
    };
    listener.stop().await;
    rtc.disconnect();
    outcome
}

fn update(report: &Arc<Mutex<Report>>, f: impl FnOnce(&mut Report)) {
    if let Ok(mut r) = report.lock() {
        f(&mut r);
    }
}

fn count(recv: &[(Mid, MediaKind)]) -> (usize, usize) {
    (
        recv.iter().filter(|(_, k)| *k == MediaKind::Audio).count(),
        recv.iter().filter(|(_, k)| *k == MediaKind::Video).count(),
    )
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
    rtc: &mut Rtc,
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
        let answer = SdpAnswer::from_sdp_string(sdp).context("unparseable answer")?;
        rtc.sdp_api()
            .accept_answer(p, answer)
            .context("answer refused by str0m")?;
        // str0m's ICE agent only starts on an input: with an ICE-lite server nothing else would
        // wake it.
        rtc.handle_input(Input::Timeout(Instant::now()))?;
        update(report, |r| {
            r.answered_revision = revision;
            r.answer_latency.push(written.elapsed());
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

/// A re-offer when the server wants more receive slots than we have.
fn more_slots(doc: &Value, rtc: &mut Rtc, media: &mut Media) -> Option<(String, SdpPendingOffer)> {
    let state = doc.get("state").and_then(Value::as_str)?;
    if !matches!(state, "answered" | "connected") {
        return None;
    }
    let wants = doc.get("wants")?;
    let (have_a, have_v) = count(&media.recv);
    let need_a = (int(wants.get("audio")).unwrap_or(0) as usize).saturating_sub(have_a);
    let need_v = (int(wants.get("video")).unwrap_or(0) as usize).saturating_sub(have_v);
    if need_a + need_v == 0 {
        return None;
    }
    let mut api = rtc.sdp_api();
    for _ in 0..need_a {
        media.recv.push((
            api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None),
            MediaKind::Audio,
        ));
    }
    for _ in 0..need_v {
        media.recv.push((
            api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None),
            MediaKind::Video,
        ));
    }
    let (offer, pending) = api.apply()?;
    Some((offer.to_sdp_string(), pending))
}

fn on_event(
    event: Event,
    _rtc: &mut Rtc,
    media: &Media,
    report: &Arc<Mutex<Report>>,
    start: Instant,
    first_offer_at: Instant,
) {
    match event {
        Event::Connected => update(report, |r| r.connected = true),
        Event::MediaData(data) => {
            let now = start.elapsed();
            let mid = data.mid.to_string();
            let kind = media
                .recv
                .iter()
                .find(|(m, _)| *m == data.mid)
                .map(|(_, k)| *k);
            update(report, |r| {
                if r.first_media.is_none() {
                    r.first_media = Some(first_offer_at.elapsed());
                }
                let source = match payload::check(&data.data) {
                    Some(stamp) => {
                        let expected = match kind {
                            Some(MediaKind::Audio) => b'a',
                            _ => b'v',
                        };
                        if stamp.kind != expected {
                            r.corrupt += 1;
                            return;
                        }
                        stamp.tag
                    }
                    None if payload::is_tagged(&data.data) => {
                        r.corrupt += 1;
                        return;
                    }
                    // Media from a publisher that is not a testpeer (a browser): attribute it
                    // to the participant the document says this slot carries.
                    None => {
                        r.foreign += 1;
                        match r.slots.get(&mid).cloned().flatten() {
                            Some(participant) => participant,
                            None => return,
                        }
                    }
                };
                let entry = r.received.entry(source.clone()).or_insert(Received {
                    first: now,
                    ..Default::default()
                });
                entry.last = now;
                match kind {
                    Some(MediaKind::Audio) => entry.audio += 1,
                    _ => entry.video += 1,
                }
                r.mid_sources.insert(mid, source);
            });
        }
        // str0m 0.25 neither emits `KeyframeRequest` reliably nor media stats events here, so
        // keyframe requests are counted from the raw RTCP it received.
        Event::RawPacket(raw) => {
            if let RawPacket::RtcpRx(Rtcp::Pli(_) | Rtcp::Fir(_)) = *raw {
                update(report, |r| r.keyframe_requests += 1);
            }
        }
        Event::PeerStats(stats) => update(report, |r| {
            r.rtt = stats
                .selected_candidate_pair
                .and_then(|p| p.current_round_trip_time)
        }),
        _ => {}
    }
}

fn send_media(
    rtc: &mut Rtc,
    media: &mut Media,
    spec: &PeerSpec,
    now: Instant,
    report: &Arc<Mutex<Report>>,
) {
    if let Some(mid) = media.audio_tx
        && now >= media.next_audio
    {
        media.next_audio += Duration::from_millis(20);
        if media.next_audio < now {
            media.next_audio = now + Duration::from_millis(20);
        }
        let seq = media.audio_seq;
        let data = payload::make(&spec.session, b'a', seq, 120);
        if write(
            rtc,
            mid,
            Codec::Opus,
            MediaTime::new(seq as u64 * 960, Frequency::FORTY_EIGHT_KHZ),
            now,
            data,
        ) {
            media.audio_seq += 1;
            update(report, |r| r.sent_audio += 1);
        }
    }
    if let Some(mid) = media.video_tx
        && now >= media.next_video
    {
        media.next_video += Duration::from_millis(33);
        if media.next_video < now {
            media.next_video = now + Duration::from_millis(33);
        }
        let seq = media.video_seq;
        let data = match (&spec.video, media.clip.as_mut()) {
            (VideoSource::Ivf(_), Some(clip)) => clip.next_frame(),
            (VideoSource::Tagged { frame_bytes }, _) => {
                payload::make(&spec.session, b'v', seq, *frame_bytes)
            }
            _ => return,
        };
        if write(
            rtc,
            mid,
            Codec::Vp8,
            MediaTime::from_90khz(seq as u64 * 3000),
            now,
            data,
        ) {
            media.video_seq += 1;
            update(report, |r| r.sent_video += 1);
        }
    }
}

fn write(
    rtc: &mut Rtc,
    mid: Mid,
    codec: Codec,
    time: MediaTime,
    now: Instant,
    data: Arc<[u8]>,
) -> bool {
    let Some(writer) = rtc.writer(mid) else {
        return false;
    };
    let Some(pt) = writer
        .payload_params()
        .find(|p| p.spec().codec == codec)
        .map(|p| p.pt())
    else {
        return false;
    };
    writer.write(pt, now, time, data).is_ok()
}
