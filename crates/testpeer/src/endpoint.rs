//! A str0m WebRTC endpoint with its own UDP socket, independent of any signalling: it makes
//! and accepts SDP, publishes tagged (or real VP8) media, and records what it receives into a
//! shared [`Report`]. The Firestore participant (`peer.rs`) and the Janus benchmark client
//! drive it from their own loops.
//!
//! With [`Transport::Tcp`] it offers only an active ICE-TCP candidate (RFC 6544): the only
//! pair that can work is with the server's passive TCP candidate, so the test knows which
//! path the media took. Connections are opened when str0m first sends to an address and carry
//! RFC 4571 frames.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use str0m::bwe::Bitrate;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::rtp::rtcp::Rtcp;
use str0m::rtp::{Extension, ExtensionMap, RawPacket};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;

use crate::ivf::IvfClip;
use crate::payload;
use crate::peer::{Received, Report, VideoSource};

/// What the endpoint publishes.
#[derive(Debug, Clone)]
pub struct MediaSpec {
    /// Written into every tagged payload: receivers know the sender from it.
    pub tag: String,
    pub publish_audio: bool,
    pub publish_video: bool,
    pub video: VideoSource,
    /// Video leaves this long after it was captured (an encoder's and pacer's delay), while
    /// its timestamps and sender reports say when it was captured; audio leaves at once.
    pub video_delay: Duration,
    /// Offer no transport-wide congestion control and send a REMB of this many bits per
    /// second every second on each receive slot (a client whose estimate is REMB).
    pub remb: Option<u64>,
    /// Also receive H.264 and G.711 (what IP cameras send).
    pub camera_codecs: bool,
}

/// A frame's capture time on the publisher's clock, from its sequence number: audio every
/// 20 ms (960 ticks at 48 kHz), video every 1/30 s (3000 ticks at 90 kHz).
pub fn capture_offset(kind: MediaKind, seq: u32) -> Duration {
    match kind {
        MediaKind::Audio => Duration::from_millis(20) * seq,
        MediaKind::Video => Duration::from_micros(u64::from(seq) * 100_000 / 3),
    }
}

/// Per stream, the frame (RTP timestamp) whose packets are arriving: when its first and
/// last packet came and how many.
#[derive(Default)]
struct FrameArrivals(HashMap<u32, (u32, Instant, Instant, u32)>);

impl FrameArrivals {
    /// A packet of stream `ssrc` with `timestamp` arrived; returns the previous frame of that
    /// stream when it had at least 20 packets (count, first-to-last arrival).
    fn arrived(&mut self, now: Instant, ssrc: u32, timestamp: u32) -> Option<(u32, Duration)> {
        let entry = self.0.entry(ssrc).or_insert((timestamp, now, now, 0));
        if entry.0 == timestamp {
            entry.2 = now;
            entry.3 += 1;
            return None;
        }
        let done = *entry;
        *entry = (timestamp, now, now, 1);
        (done.3 >= 20).then(|| (done.3, done.2 - done.1))
    }
}

/// A sender that fell this far behind its capture schedule skips frames (as a camera drops
/// them) instead of sending a burst.
const MAX_LAG: Duration = Duration::from_millis(500);

/// How the endpoint reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    #[default]
    Udp,
    /// ICE-TCP only (an active candidate).
    Tcp,
}

/// Something that arrived, already in the endpoint's buffer.
pub struct Incoming {
    n: usize,
    source: SocketAddr,
    proto: Protocol,
}

pub struct Endpoint {
    pub rtc: Rtc,
    pub socket: UdpSocket,
    local: SocketAddr,
    transport: Transport,
    /// The active TCP candidate's address (what str0m names as source and destination).
    tcp_local: SocketAddr,
    tcp: HashMap<SocketAddr, OwnedWriteHalf>,
    frames_tx: mpsc::UnboundedSender<(SocketAddr, Vec<u8>)>,
    frames: mpsc::UnboundedReceiver<(SocketAddr, Vec<u8>)>,
    spec: MediaSpec,
    report: Arc<Mutex<Report>>,
    audio_tx: Option<Mid>,
    video_tx: Option<Mid>,
    recv: Vec<(Mid, MediaKind)>,
    audio_seq: u32,
    video_seq: u32,
    next_remb: Option<Instant>,
    frame_arrivals: FrameArrivals,
    clip: Option<IvfClip>,
    start: Instant,
    /// When the first offer (or answer) went out; `first_media` counts from it.
    pub signalled_at: Option<Instant>,
    /// When the first remote description was applied; `connect_time` counts from it.
    described_at: Option<Instant>,
    buf: Vec<u8>,
}

/// When the frame was captured according to the sender reports of its stream (microseconds
/// since the Unix epoch): the SR's NTP time moved by the frame's timestamp distance from the
/// SR's timestamp. `None` before the first SR.
fn sync_sample(data: &str0m::media::MediaData, kind: Option<MediaKind>) -> Option<i64> {
    let sr = data.last_sender_info.as_ref()?;
    kind?;
    let rate = i64::from(data.time.denom());
    let ticks = (data.time.numer() as u32).wrapping_sub(sr.rtp_time.numer() as u32) as i32;
    let ntp = sr
        .ntp_time
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_micros() as i64;
    Some(ntp + i64::from(ticks) * 1_000_000 / rate)
}

pub fn update(report: &Arc<Mutex<Report>>, f: impl FnOnce(&mut Report)) {
    if let Ok(mut r) = report.lock() {
        f(&mut r);
    }
}

impl Endpoint {
    pub async fn bind(
        ip: IpAddr,
        spec: MediaSpec,
        report: Arc<Mutex<Report>>,
    ) -> anyhow::Result<Endpoint> {
        Self::bind_with(ip, Transport::Udp, spec, report).await
    }

    pub async fn bind_with(
        ip: IpAddr,
        transport: Transport,
        spec: MediaSpec,
        report: Arc<Mutex<Report>>,
    ) -> anyhow::Result<Endpoint> {
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
        let local = socket.local_addr()?;
        let start = Instant::now();
        let rtc = Rtc::builder()
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .enable_h264(spec.camera_codecs)
            .enable_pcmu(spec.camera_codecs, false)
            .enable_pcma(spec.camera_codecs, false)
            .set_stats_interval(Some(Duration::from_secs(1)))
            // Keyframe requests and RTP packets are counted from the raw packets: str0m 0.25
            // emits neither `KeyframeRequest` reliably nor per-media stats events here.
            .enable_raw_packets(true);
        let mut rtc = if spec.remb.is_some() {
            let mut exts = ExtensionMap::standard();
            let mut without = ExtensionMap::empty();
            for (id, ext) in exts.iter() {
                if *ext != Extension::TransportSequenceNumber {
                    without.set(id, ext.clone());
                }
            }
            exts = without;
            rtc.set_extension_map(exts)
        } else {
            rtc
        }
        .build(start);
        // Active TCP candidates carry the discard port (RFC 6544 §4.5).
        let tcp_local = SocketAddr::new(ip, 9);
        let candidate = match transport {
            Transport::Udp => Candidate::host(local, "udp").context("host candidate")?,
            Transport::Tcp => Candidate::builder()
                .tcp()
                .host(tcp_local)
                .tcptype(TcpType::Active)
                .build()
                .context("tcp candidate")?,
        };
        rtc.add_local_candidate(candidate)
            .context("candidate refused")?;
        let (frames_tx, frames) = mpsc::unbounded_channel();
        let clip = match &spec.video {
            VideoSource::Ivf(path) => Some(IvfClip::load(path)?),
            VideoSource::Tagged { .. } | VideoSource::Keyframes { .. } => None,
        };
        Ok(Endpoint {
            rtc,
            socket,
            local,
            transport,
            tcp_local,
            tcp: HashMap::new(),
            frames_tx,
            frames,
            spec,
            report,
            audio_tx: None,
            video_tx: None,
            recv: Vec::new(),
            audio_seq: 0,
            video_seq: 0,
            next_remb: None,
            frame_arrivals: FrameArrivals::default(),
            clip,
            start,
            signalled_at: None,
            described_at: None,
            buf: vec![0; 2000],
        })
    }

    /// The first offer: what the spec publishes (`sendonly`) plus receive slots.
    pub fn first_offer(
        &mut self,
        recv_audio: usize,
        recv_video: usize,
    ) -> anyhow::Result<(String, SdpPendingOffer)> {
        let mut api = self.rtc.sdp_api();
        let stream = Some(self.spec.tag.clone());
        if self.spec.publish_audio {
            self.audio_tx = Some(api.add_media(
                MediaKind::Audio,
                Direction::SendOnly,
                stream.clone(),
                Some("mic".into()),
                None,
            ));
        }
        if self.spec.publish_video {
            self.video_tx = Some(api.add_media(
                MediaKind::Video,
                Direction::SendOnly,
                stream,
                Some("cam".into()),
                None,
            ));
        }
        for (n, kind) in [
            (recv_audio, MediaKind::Audio),
            (recv_video, MediaKind::Video),
        ] {
            for _ in 0..n {
                self.recv.push((
                    api.add_media(kind, Direction::RecvOnly, None, None, None),
                    kind,
                ));
            }
        }
        let (offer, pending) = api.apply().context("nothing to offer")?;
        self.note_slots();
        Ok((offer.to_sdp_string(), pending))
    }

    /// A re-offer with more receive slots; `None` when nothing is missing.
    pub fn more_slots(&mut self, audio: usize, video: usize) -> Option<(String, SdpPendingOffer)> {
        if audio + video == 0 {
            return None;
        }
        let mut api = self.rtc.sdp_api();
        for (n, kind) in [(audio, MediaKind::Audio), (video, MediaKind::Video)] {
            for _ in 0..n {
                self.recv.push((
                    api.add_media(kind, Direction::RecvOnly, None, None, None),
                    kind,
                ));
            }
        }
        let (offer, pending) = api.apply()?;
        self.note_slots();
        Some((offer.to_sdp_string(), pending))
    }

    /// A re-offer that starts publishing audio and video (`sendonly`), whatever the spec said:
    /// what a client does to publish after joining to listen. `None` if it publishes both.
    pub fn publish_more(&mut self) -> Option<(String, SdpPendingOffer)> {
        if self.audio_tx.is_some() && self.video_tx.is_some() {
            return None;
        }
        let mut api = self.rtc.sdp_api();
        let stream = Some(self.spec.tag.clone());
        if self.audio_tx.is_none() {
            self.audio_tx = Some(api.add_media(
                MediaKind::Audio,
                Direction::SendOnly,
                stream.clone(),
                Some("mic".into()),
                None,
            ));
        }
        if self.video_tx.is_none() {
            self.video_tx = Some(api.add_media(
                MediaKind::Video,
                Direction::SendOnly,
                stream,
                Some("cam".into()),
                None,
            ));
        }
        let (offer, pending) = api.apply()?;
        Some((offer.to_sdp_string(), pending))
    }

    pub fn accept_answer(&mut self, pending: SdpPendingOffer, sdp: &str) -> anyhow::Result<()> {
        let answer = SdpAnswer::from_sdp_string(sdp).context("unparseable answer")?;
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .context("answer refused by str0m")?;
        self.described_at.get_or_insert_with(Instant::now);
        // str0m's ICE agent starts only on an input: against an ICE-lite server nothing else
        // would wake it.
        self.rtc.handle_input(Input::Timeout(Instant::now()))?;
        Ok(())
    }

    /// Answers a remote offer (servers that offer, like Janus for subscribers).
    pub fn accept_offer(&mut self, sdp: &str) -> anyhow::Result<String> {
        let offer = SdpOffer::from_sdp_string(sdp).context("unparseable offer")?;
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .context("offer refused by str0m")?;
        self.described_at.get_or_insert_with(Instant::now);
        self.rtc.handle_input(Input::Timeout(Instant::now()))?;
        Ok(answer.to_sdp_string())
    }

    /// Receive slots by kind.
    pub fn slots(&self) -> (usize, usize) {
        (
            self.recv
                .iter()
                .filter(|(_, k)| *k == MediaKind::Audio)
                .count(),
            self.recv
                .iter()
                .filter(|(_, k)| *k == MediaKind::Video)
                .count(),
        )
    }

    fn note_slots(&self) {
        let slots = self.slots();
        update(&self.report, |r| r.recv_slots = slots);
    }

    /// Sends what str0m wants sent, handles its events; returns when it next needs a tick.
    pub async fn drain(&mut self) -> Instant {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => return t,
                Ok(Output::Transmit(t)) => match t.proto {
                    Protocol::Tcp => self.send_tcp(t.destination, &t.contents).await,
                    _ => {
                        let _ = self.socket.send_to(&t.contents, t.destination).await;
                    }
                },
                Ok(Output::Event(e)) => self.on_event(e),
                // A malformed incoming payload: str0m already consumed it; keep polling.
                Err(e) => tracing::debug!("str0m: {e}"),
            }
        }
    }

    /// Writes one RFC 4571 frame to `to`, connecting first if needed.
    async fn send_tcp(&mut self, to: SocketAddr, data: &[u8]) {
        if !self.tcp.contains_key(&to) {
            let stream = match tokio::net::TcpStream::connect(to).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!("tcp connect to {to}: {e}");
                    return;
                }
            };
            let _ = stream.set_nodelay(true);
            let (mut reader, writer) = stream.into_split();
            let frames = self.frames_tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = vec![0u8; 16384];
                loop {
                    let n = match reader.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    while buf.len() >= 2 {
                        let len = u16::from_be_bytes([buf[0], buf[1]]) as usize;
                        if buf.len() < 2 + len {
                            break;
                        }
                        let frame = buf[2..2 + len].to_vec();
                        buf.drain(..2 + len);
                        if frames.send((to, frame)).is_err() {
                            return;
                        }
                    }
                }
            });
            self.tcp.insert(to, writer);
        }
        let Some(writer) = self.tcp.get_mut(&to) else {
            return;
        };
        let mut framed = Vec::with_capacity(data.len() + 2);
        framed.extend_from_slice(&(data.len() as u16).to_be_bytes());
        framed.extend_from_slice(data);
        if writer.write_all(&framed).await.is_err() {
            self.tcp.remove(&to);
        }
    }

    /// The next datagram or frame (pass it to [`receive`](Self::receive)).
    pub async fn recv(&mut self) -> std::io::Result<Incoming> {
        tokio::select! {
            received = self.socket.recv_from(&mut self.buf) => {
                let (n, source) = received?;
                Ok(Incoming { n, source, proto: Protocol::Udp })
            }
            Some((source, frame)) = self.frames.recv() => {
                let n = frame.len().min(self.buf.len());
                self.buf[..n].copy_from_slice(&frame[..n]);
                Ok(Incoming { n, source, proto: Protocol::Tcp })
            }
        }
    }

    /// A re-offer with new ICE credentials (`iceRestart`), keeping everything else.
    pub fn ice_restart(&mut self) -> Option<(String, SdpPendingOffer)> {
        let mut api = self.rtc.sdp_api();
        api.ice_restart(true);
        let (offer, pending) = api.apply()?;
        Some((offer.to_sdp_string(), pending))
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// One turn of a loop without signalling: drain, then a datagram or a tick.
    pub async fn step(&mut self) -> anyhow::Result<()> {
        let deadline = self.drain().await;
        let wait = deadline.min(Instant::now() + Duration::from_millis(10));
        tokio::select! {
            received = self.recv() => self.receive(received?),
            _ = tokio::time::sleep_until(wait.into()) => self.tick(Instant::now()),
        }
        Ok(())
    }

    pub fn receive(&mut self, incoming: Incoming) {
        let Incoming { n, source, proto } = incoming;
        let destination = match proto {
            Protocol::Tcp => self.tcp_local,
            _ => self.local,
        };
        if let Ok(contents) = (&self.buf[..n]).try_into() {
            let input = Input::Receive(
                Instant::now(),
                Receive {
                    proto,
                    source,
                    destination,
                    contents,
                },
            );
            if let Err(e) = self.rtc.handle_input(input) {
                tracing::debug!("str0m input: {e}");
            }
        }
    }

    /// Timers, and the media that is due.
    pub fn tick(&mut self, now: Instant) {
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            tracing::debug!("str0m timeout: {e}");
        }
        if self.rtc.is_connected() {
            self.send_media(now);
            self.send_remb(now);
        }
    }

    /// A REMB on every receive slot once a second, when the spec asks for it.
    fn send_remb(&mut self, now: Instant) {
        let Some(bps) = self.spec.remb else {
            return;
        };
        if self.next_remb.is_some_and(|t| now < t) {
            return;
        }
        self.next_remb = Some(now + Duration::from_secs(1));
        let mids: Vec<Mid> = self.recv.iter().map(|(m, _)| *m).collect();
        let mut api = self.rtc.direct_api();
        for mid in mids {
            if let Some(stream) = api.stream_rx_by_mid(mid, None) {
                stream.request_remb(Bitrate::bps(bps));
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Connected => {
                let took = self.described_at.map(|t| t.elapsed());
                update(&self.report, |r| {
                    r.connected = true;
                    r.connect_time = took;
                })
            }
            Event::MediaData(data) => self.on_media(data),
            Event::RawPacket(raw) => match *raw {
                RawPacket::RtcpRx(Rtcp::Pli(_) | Rtcp::Fir(_)) => {
                    update(&self.report, |r| r.keyframe_requests += 1)
                }
                RawPacket::RtpRx(header, _) => {
                    let burst =
                        self.frame_arrivals
                            .arrived(Instant::now(), *header.ssrc, header.timestamp);
                    update(&self.report, |r| {
                        r.rtp_received += 1;
                        if let Some(burst) = burst {
                            if r.bursts.len() >= 50 {
                                r.bursts.remove(0);
                            }
                            r.bursts.push(burst);
                        }
                    })
                }
                _ => {}
            },
            Event::PeerStats(stats) => update(&self.report, |r| {
                r.rtt = stats
                    .selected_candidate_pair
                    .and_then(|p| p.current_round_trip_time)
            }),
            _ => {}
        }
    }

    fn on_media(&mut self, data: str0m::media::MediaData) {
        let now = self.start.elapsed();
        let mid = data.mid.to_string();
        let kind = self
            .recv
            .iter()
            .find(|(m, _)| *m == data.mid)
            .map(|(_, k)| *k);
        let since_signal = self.signalled_at.map(|t| t.elapsed());
        let sync = sync_sample(&data, kind);
        update(&self.report, |r| {
            if r.first_media.is_none() {
                r.first_media = since_signal;
            }
            let source = match payload::check(&data.data) {
                Some(stamp) => {
                    let expected = if kind == Some(MediaKind::Audio) {
                        b'a'
                    } else {
                        b'v'
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
                // Media from a publisher that is not a testpeer (a browser): attribute it to
                // the participant the session document says this slot carries.
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
            if let (Some(sample), Some(kind)) = (sync, kind)
                && let Some(stamp) = payload::check(&data.data)
            {
                entry.sync.add(kind, sample, stamp.seq);
            }
            r.mid_sources.insert(mid, source);
        });
    }

    fn send_media(&mut self, now: Instant) {
        if let Some(mid) = self.audio_tx {
            let seq = self.due(now, MediaKind::Audio, self.audio_seq, Duration::ZERO);
            if let Some(seq) = seq {
                self.audio_seq = seq;
                let data = payload::make(&self.spec.tag, b'a', seq, 120);
                let time = MediaTime::new(seq as u64 * 960, Frequency::FORTY_EIGHT_KHZ);
                let captured = self.start + capture_offset(MediaKind::Audio, seq);
                if self.write(mid, Codec::Opus, time, captured, data) {
                    self.audio_seq += 1;
                    update(&self.report, |r| r.sent_audio += 1);
                }
            }
        }
        if let Some(mid) = self.video_tx {
            let seq = self.due(now, MediaKind::Video, self.video_seq, self.spec.video_delay);
            if let Some(seq) = seq {
                self.video_seq = seq;
                let data = match (&self.spec.video, self.clip.as_mut()) {
                    (VideoSource::Ivf(_), Some(clip)) => clip.next_frame(),
                    (VideoSource::Tagged { frame_bytes }, _) => {
                        payload::make(&self.spec.tag, b'v', seq, *frame_bytes)
                    }
                    (
                        VideoSource::Keyframes {
                            frame_bytes,
                            keyframe_bytes,
                            every,
                        },
                        _,
                    ) => {
                        let big = seq % (*every).max(1) == 0;
                        let n = if big { *keyframe_bytes } else { *frame_bytes };
                        payload::make(&self.spec.tag, b'v', seq, n)
                    }
                    _ => return,
                };
                let time = MediaTime::from_90khz(seq as u64 * 3000);
                let captured = self.start + capture_offset(MediaKind::Video, seq);
                if self.write(mid, Codec::Vp8, time, captured, data) {
                    self.video_seq += 1;
                    update(&self.report, |r| r.sent_video += 1);
                }
            }
        }
    }

    /// The frame `seq` of `kind` when it is due at `now` (captured, plus `delay`); a later
    /// one when the sender fell more than [`MAX_LAG`] behind.
    fn due(&self, now: Instant, kind: MediaKind, seq: u32, delay: Duration) -> Option<u32> {
        let elapsed = now.checked_duration_since(self.start + delay)?;
        if elapsed < capture_offset(kind, seq) {
            return None;
        }
        if elapsed > capture_offset(kind, seq) + MAX_LAG {
            let period = capture_offset(kind, 3).as_micros() / 3;
            return Some((elapsed.as_micros() / period) as u32);
        }
        Some(seq)
    }

    fn write(
        &mut self,
        mid: Mid,
        codec: Codec,
        time: MediaTime,
        captured: Instant,
        data: Arc<[u8]>,
    ) -> bool {
        let Some(writer) = self.rtc.writer(mid) else {
            return false;
        };
        let Some(pt) = writer
            .payload_params()
            .find(|p| p.spec().codec == codec)
            .map(|p| p.pt())
        else {
            return false;
        };
        writer.write(pt, captured, time, data).is_ok()
    }

    pub fn close(&mut self) {
        self.rtc.disconnect();
    }
}
