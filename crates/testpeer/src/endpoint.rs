//! A str0m WebRTC endpoint with its own UDP socket, independent of any signalling: it makes
//! and accepts SDP, publishes tagged (or real VP8) media, and records what it receives into a
//! shared [`Report`]. The Firestore participant (`peer.rs`) and the Janus benchmark client
//! drive it from their own loops.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RawPacket;
use str0m::rtp::rtcp::Rtcp;
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;

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
}

pub struct Endpoint {
    pub rtc: Rtc,
    pub socket: UdpSocket,
    local: SocketAddr,
    spec: MediaSpec,
    report: Arc<Mutex<Report>>,
    audio_tx: Option<Mid>,
    video_tx: Option<Mid>,
    recv: Vec<(Mid, MediaKind)>,
    audio_seq: u32,
    video_seq: u32,
    next_audio: Instant,
    next_video: Instant,
    clip: Option<IvfClip>,
    start: Instant,
    /// When the first offer (or answer) went out; `first_media` counts from it.
    pub signalled_at: Option<Instant>,
    /// When the first remote description was applied; `connect_time` counts from it.
    described_at: Option<Instant>,
    buf: Vec<u8>,
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
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
        let local = socket.local_addr()?;
        let start = Instant::now();
        let mut rtc = Rtc::builder()
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .set_stats_interval(Some(Duration::from_secs(1)))
            // Keyframe requests and RTP packets are counted from the raw packets: str0m 0.25
            // emits neither `KeyframeRequest` reliably nor per-media stats events here.
            .enable_raw_packets(true)
            .build(start);
        rtc.add_local_candidate(Candidate::host(local, "udp").context("host candidate")?)
            .context("candidate refused")?;
        let clip = match &spec.video {
            VideoSource::Ivf(path) => Some(IvfClip::load(path)?),
            VideoSource::Tagged { .. } => None,
        };
        Ok(Endpoint {
            rtc,
            socket,
            local,
            spec,
            report,
            audio_tx: None,
            video_tx: None,
            recv: Vec::new(),
            audio_seq: 0,
            video_seq: 0,
            next_audio: start,
            next_video: start,
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
                Ok(Output::Transmit(t)) => {
                    let _ = self.socket.send_to(&t.contents, t.destination).await;
                }
                Ok(Output::Event(e)) => self.on_event(e),
                // A malformed incoming payload: str0m already consumed it; keep polling.
                Err(e) => tracing::debug!("str0m: {e}"),
            }
        }
    }

    /// The next datagram (pass it to [`receive`](Self::receive)).
    pub async fn recv(&mut self) -> std::io::Result<(usize, SocketAddr)> {
        self.socket.recv_from(&mut self.buf).await
    }

    /// One turn of a loop without signalling: drain, then a datagram or a tick.
    pub async fn step(&mut self) -> anyhow::Result<()> {
        let deadline = self.drain().await;
        let wait = deadline.min(Instant::now() + Duration::from_millis(10));
        tokio::select! {
            received = self.recv() => {
                let (n, source) = received?;
                self.receive(n, source);
            }
            _ = tokio::time::sleep_until(wait.into()) => self.tick(Instant::now()),
        }
        Ok(())
    }

    pub fn receive(&mut self, n: usize, source: SocketAddr) {
        if let Ok(contents) = (&self.buf[..n]).try_into() {
            let input = Input::Receive(
                Instant::now(),
                Receive {
                    proto: Protocol::Udp,
                    source,
                    destination: self.local,
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
                RawPacket::RtpRx(..) => update(&self.report, |r| r.rtp_received += 1),
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
            r.mid_sources.insert(mid, source);
        });
    }

    fn send_media(&mut self, now: Instant) {
        if let Some(mid) = self.audio_tx
            && now >= self.next_audio
        {
            self.next_audio = (self.next_audio + Duration::from_millis(20)).max(now);
            let seq = self.audio_seq;
            let data = payload::make(&self.spec.tag, b'a', seq, 120);
            let time = MediaTime::new(seq as u64 * 960, Frequency::FORTY_EIGHT_KHZ);
            if self.write(mid, Codec::Opus, time, now, data) {
                self.audio_seq += 1;
                update(&self.report, |r| r.sent_audio += 1);
            }
        }
        if let Some(mid) = self.video_tx
            && now >= self.next_video
        {
            self.next_video = (self.next_video + Duration::from_millis(33)).max(now);
            let seq = self.video_seq;
            let data = match (&self.spec.video, self.clip.as_mut()) {
                (VideoSource::Ivf(_), Some(clip)) => clip.next_frame(),
                (VideoSource::Tagged { frame_bytes }, _) => {
                    payload::make(&self.spec.tag, b'v', seq, *frame_bytes)
                }
                _ => return,
            };
            if self.write(
                mid,
                Codec::Vp8,
                MediaTime::from_90khz(seq as u64 * 3000),
                now,
                data,
            ) {
                self.video_seq += 1;
                update(&self.report, |r| r.sent_video += 1);
            }
        }
    }

    fn write(
        &mut self,
        mid: Mid,
        codec: Codec,
        time: MediaTime,
        now: Instant,
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
        writer.write(pt, now, time, data).is_ok()
    }

    pub fn close(&mut self) {
        self.rtc.disconnect();
    }
}
