//! The media loop: one thread, one UDP socket (and ICE-TCP listeners), every peer connection
//! of the instance.
//!
//! The `rtc` stack is sans-I/O: we own the sockets and the clock. Each turn of the loop waits
//! for a command, readable datagrams, ICE-TCP frames or the earliest timer, then drains every
//! peer it touched:
//! its events and inbound RTP first (forwarding publisher packets into subscribers), then
//! everybody's outbound datagrams. Running on its own thread keeps the per-packet path away
//! from the signalling tasks on the main runtime.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use rtc::crypto::SignatureScheme;
use rtc::peer_connection::certificate::{CertificateParams, RTCCertificate};
use rtc::rtp;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

mod adapt;
mod focus;
mod housekeeping;
mod io;
mod reports;
mod routing;
mod sources;
mod speaking;

use io::Transports;

use super::metrics::MediaInstruments;

use super::demux::Demux;
use super::forward::ForwardTable;
use super::payload::{FrameInfo, VideoCodec};
use super::peer::{ForwardError, Forwarded, Inbound, Peer, PeerOutput, PeerSetup};
use super::rewrite::Unforwardable;
use super::room::{Room, TrackRef};
use super::socket::{DropCounter, bind_tcp, bind_udp};
use super::source::{ExternalSource, SourceSpec};
use super::sync::WallClock;
use super::tcp::{self, TcpEvent};
use super::{
    CloseReason, Command, Commands, Events, MediaConfig, MediaEvent, MediaStats, Negotiated,
    NegotiationError, PeerId, SessionEvent, SessionKey, SessionOffer, TcpListen,
};

/// How often silent peers are looked for and shared statistics refreshed.
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// Every this many housekeeping ticks, each peer's quality is reported to signalling.
const QUALITY_REPORT_EVERY: u64 = 5;
/// Datagrams read per wake-up before peers are drained (bounds latency under load).
const READ_BATCH: usize = 256;
/// ICE-TCP frames queued toward the loop (readers wait when it is full).
const TCP_EVENTS: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Socket(#[from] super::socket::SocketError),
    #[error("no address to advertise: the bind address {0} is unspecified; set the advertised IPs")]
    NothingToAdvertise(SocketAddr),
    #[error("cannot create the DTLS certificate: {0}")]
    Certificate(String),
    #[error("cannot start the media thread: {0}")]
    Thread(std::io::Error),
}

/// The signalling side's grip on the engine.
pub struct EngineHandle {
    commands: Commands,
    stats: Arc<Mutex<MediaStats>>,
    local_addr: SocketAddr,
    candidates: Vec<SocketAddr>,
    tcp_candidates: Vec<SocketAddr>,
    thread: Option<JoinHandle<()>>,
    /// Closed (its sender dropped) when the media thread ends, however it ends.
    life: tokio::sync::watch::Receiver<()>,
    stopping: Arc<AtomicBool>,
}

/// Held by the media thread: dropping it (the thread returned or unwound from a panic) tells
/// every [`EngineHandle::failed`] waiter.
struct Life(#[allow(dead_code)] tokio::sync::watch::Sender<()>);

impl EngineHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The UDP host candidates every answer carries.
    pub fn candidates(&self) -> &[SocketAddr] {
        &self.candidates
    }

    /// The passive ICE-TCP candidates every answer carries (empty without ICE-TCP).
    pub fn tcp_candidates(&self) -> &[SocketAddr] {
        &self.tcp_candidates
    }

    pub fn stats(&self) -> MediaStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The shared counters (refreshed every second), for metric observers.
    pub fn stats_handle(&self) -> Arc<Mutex<MediaStats>> {
        self.stats.clone()
    }

    /// Whether the media thread still runs.
    pub fn alive(&self) -> bool {
        self.life.has_changed().is_ok()
    }

    /// Resolves if the media thread ends without having been asked to (a panic): the
    /// process must then report unhealthy and exit, so that its rooms move elsewhere.
    pub async fn failed(&self) {
        let mut life = self.life.clone();
        while life.changed().await.is_ok() {}
        if self.stopping.load(Ordering::Acquire) {
            std::future::pending::<()>().await;
        }
    }

    /// Every peer and the session it serves (as of the last housekeeping second).
    pub fn sessions(&self) -> Vec<(SessionKey, PeerId)> {
        self.stats
            .lock()
            .map(|s| s.sessions.clone())
            .unwrap_or_default()
    }

    /// Applies a session's offer.
    pub async fn negotiate(&self, offer: SessionOffer) -> Result<Negotiated, NegotiationError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Negotiate { offer, reply })
            .map_err(|_| NegotiationError::EngineGone)?;
        answer.await.map_err(|_| NegotiationError::EngineGone)?
    }

    pub fn close(&self, peer: PeerId, reason: CloseReason) {
        let _ = self.commands.send(Command::Close { peer, reason });
    }

    /// What session `key` wants to receive on its slots (replaces earlier wishes).
    pub fn set_wishes(&self, key: SessionKey, wishes: HashMap<String, super::SlotWish>) {
        let _ = self.commands.send(Command::Wishes { key, wishes });
    }

    /// Which published tracks of session `key` are muted by the application (replaces the
    /// earlier set).
    pub fn set_muted(&self, key: SessionKey, mids: std::collections::BTreeSet<String>) {
        let _ = self.commands.send(Command::Muted { key, mids });
    }

    /// Joins a source (a camera) to its room; its id names it in [`EngineHandle::source_rtp`].
    pub async fn attach_source(&self, spec: SourceSpec) -> Result<PeerId, NegotiationError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::AttachSource { spec, reply })
            .map_err(|_| NegotiationError::EngineGone)?;
        answer.await.map_err(|_| NegotiationError::EngineGone)?
    }

    /// One RTP packet of a source's track `track` (its index in the spec). False once the
    /// engine has stopped.
    pub fn source_rtp(&self, source: PeerId, track: usize, packet: rtp::Packet) -> bool {
        self.commands
            .send(Command::SourceRtp {
                source,
                track,
                packet,
            })
            .is_ok()
    }

    /// The source leaves its room.
    pub fn detach_source(&self, source: PeerId) {
        let _ = self.commands.send(Command::DetachSource { source });
    }

    /// Asks the engine to close every peer (each reported as a `Closed` event) and stop.
    pub fn request_shutdown(&self) {
        self.stopping.store(true, Ordering::Release);
        let _ = self.commands.send(Command::Shutdown);
    }

    /// Test builds only: makes the media thread panic, as a bug in the stack would.
    #[cfg(feature = "fault-injection")]
    pub fn inject_panic(&self) {
        let _ = self.commands.send(Command::InjectPanic);
    }

    /// Stops the engine and waits for its thread.
    pub fn join(mut self) {
        self.request_shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub fn spawn_engine(config: MediaConfig) -> Result<(EngineHandle, Events), EngineError> {
    let (std_socket, buffers) = bind_udp(config.bind, config.receive_buffer, config.send_buffer)?;
    let local_addr = std_socket
        .local_addr()
        .map_err(super::socket::SocketError::from)?;
    let ips: Vec<IpAddr> = if config.advertise.is_empty() {
        if local_addr.ip().is_unspecified() {
            return Err(EngineError::NothingToAdvertise(local_addr));
        }
        vec![local_addr.ip()]
    } else {
        config.advertise.clone()
    };
    let candidates: Vec<SocketAddr> = ips
        .iter()
        .map(|ip| SocketAddr::new(*ip, local_addr.port()))
        .collect();
    let listeners = bind_listeners(&config.tcp, local_addr.port())?;
    let tcp_candidates: Vec<SocketAddr> = listeners
        .iter()
        .flat_map(|(_, port)| ips.iter().map(|ip| SocketAddr::new(*ip, *port)))
        .collect();
    let certificate = generate_certificate()?;
    tracing::info!(
        %local_addr,
        candidates = ?candidates,
        tcp_candidates = ?tcp_candidates,
        receive_buffer = buffers.receive,
        send_buffer = buffers.send,
        ice_lite = config.ice_lite,
        "media socket ready"
    );
    if buffers.receive < config.receive_buffer {
        tracing::warn!(
            asked = config.receive_buffer,
            got = buffers.receive,
            "the kernel capped the UDP receive buffer (net.core.rmem_max); bursts may be dropped"
        );
    }

    let (commands, command_rx) = mpsc::unbounded_channel();
    let (event_tx, events) = mpsc::unbounded_channel();
    let stats = Arc::new(Mutex::new(MediaStats::default()));
    let setup = PeerSetup {
        certificate,
        codecs: config.codecs.clone(),
        ice_lite: config.ice_lite,
        candidates: candidates.clone(),
        tcp_candidates: tcp_candidates.clone(),
    };
    let shared = stats.clone();
    let (life_tx, life) = tokio::sync::watch::channel(());
    let thread = std::thread::Builder::new()
        .name("firesfu-media".into())
        .spawn(move || {
            let _life = Life(life_tx);
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("cannot start the media runtime: {e}");
                    return;
                }
            };
            runtime.block_on(async move {
                let drops = DropCounter::for_socket(&std_socket, local_addr.is_ipv6());
                let socket = match UdpSocket::from_std(std_socket) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!("cannot register the media socket: {e}");
                        return;
                    }
                };
                let (tcp_tx, tcp_events) = mpsc::channel(TCP_EVENTS);
                let tcp_refused = Arc::new(AtomicU64::new(0));
                let next_conn = Arc::new(AtomicU64::new(1));
                for (listener, port) in listeners {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => {
                            tokio::spawn(tcp::serve(
                                listener,
                                port,
                                config.tcp_limits,
                                tcp_tx.clone(),
                                next_conn.clone(),
                                tcp_refused.clone(),
                            ));
                        }
                        Err(e) => tracing::error!("cannot register an ICE-TCP listener: {e}"),
                    }
                }
                drop(tcp_tx);
                let engine = Engine {
                    config,
                    setup,
                    io: Transports::new(socket, local_addr.is_ipv6()),
                    udp_port: local_addr.port(),
                    tcp_refused,
                    drops,
                    peers: HashMap::new(),
                    sources: HashMap::new(),
                    sessions: HashMap::new(),
                    rooms: HashMap::new(),
                    demux: Demux::default(),
                    forwards: ForwardTable::default(),
                    next_id: 1,
                    views_made: 0,
                    housekeeping_ticks: 0,
                    events: event_tx,
                    stats: MediaStats::default(),
                    shared,
                    instruments: MediaInstruments::default(),
                    dirty: Vec::new(),
                    outputs: Vec::new(),
                    inbound: Vec::new(),
                    adapt_now: Vec::new(),
                    speakers: HashMap::new(),
                    wall: WallClock::new(Instant::now(), SystemTime::now()),
                };
                engine.run(command_rx, tcp_events).await;
            });
        })
        .map_err(EngineError::Thread)?;

    Ok((
        EngineHandle {
            commands,
            stats,
            local_addr,
            candidates,
            tcp_candidates,
            thread: Some(thread),
            life,
            stopping: Arc::new(AtomicBool::new(false)),
        },
        events,
    ))
}

/// Binds the ICE-TCP listeners; returns each with the port its candidates advertise. A
/// listener with port 0 takes the UDP port's number (or, if that TCP port is taken, any).
fn bind_listeners(
    listens: &[TcpListen],
    udp_port: u16,
) -> Result<Vec<(std::net::TcpListener, u16)>, EngineError> {
    let mut out = Vec::new();
    for listen in listens {
        let listener = if listen.bind.port() == 0 {
            let mut same = listen.bind;
            same.set_port(udp_port);
            match bind_tcp(same) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!("{e}; ICE-TCP takes another port");
                    bind_tcp(listen.bind)?
                }
            }
        } else {
            bind_tcp(listen.bind)?
        };
        let bound = listener
            .local_addr()
            .map_err(super::socket::SocketError::from)?
            .port();
        let advertised = if listen.advertised_port == 0 {
            bound
        } else {
            listen.advertised_port
        };
        out.push((listener, advertised));
    }
    Ok(out)
}

pub(crate) fn generate_certificate() -> Result<RTCCertificate, EngineError> {
    let provider =
        rtc::crypto::default_provider().map_err(|e| EngineError::Certificate(e.to_string()))?;
    let params = CertificateParams::new(vec!["firesfu".to_owned()])
        .map_err(|e| EngineError::Certificate(e.to_string()))?;
    RTCCertificate::generate(provider.crypto(), SignatureScheme::EcdsaP256Sha256, params)
        .map_err(|e| EngineError::Certificate(e.to_string()))
}

struct Engine {
    config: MediaConfig,
    setup: PeerSetup,
    io: Transports,
    /// The UDP port our candidates name.
    udp_port: u16,
    /// ICE-TCP connections the listeners refused (over the limits).
    tcp_refused: Arc<AtomicU64>,
    drops: Option<DropCounter>,
    peers: HashMap<PeerId, Peer>,
    /// Publishers that are not peer connections (cameras), in the same id space.
    sources: HashMap<PeerId, ExternalSource>,
    sessions: HashMap<SessionKey, PeerId>,
    rooms: HashMap<String, Room>,
    demux: Demux,
    forwards: ForwardTable,
    next_id: u64,
    views_made: u64,
    housekeeping_ticks: u64,
    events: mpsc::UnboundedSender<MediaEvent>,
    stats: MediaStats,
    shared: Arc<Mutex<MediaStats>>,
    instruments: MediaInstruments,
    /// Peers touched since the last drain (may repeat; deduplicated when drained).
    dirty: Vec<PeerId>,
    /// Reused buffers, so that a drain allocates nothing in the steady state.
    outputs: Vec<PeerOutput>,
    inbound: Vec<Received>,
    /// Subscribers whose layers must be reconsidered before the next forwarding.
    adapt_now: Vec<PeerId>,
    /// Per room: who speaks.
    speakers: HashMap<String, speaking::RoomSpeaker>,
    /// Our wall clock for sender reports.
    wall: WallClock,
}

/// A publisher's packet waiting to be forwarded.
struct Received {
    publisher: PeerId,
    mid: String,
    layer: u8,
    codec: VideoCodec,
    info: FrameInfo,
    packet: rtp::Packet,
}

impl Engine {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut tcp_events: mpsc::Receiver<TcpEvent>,
    ) {
        let mut tcp_open = !self.config.tcp.is_empty();
        let mut buf = vec![0u8; 2048];
        let mut next_housekeeping = Instant::now() + HOUSEKEEPING;
        let mut next_adapt = Instant::now() + adapt::ADAPT_EVERY;
        let mut next_speakers = Instant::now() + speaking::SPEAKER_POLL;
        let mut next_reports = Instant::now() + reports::REPORT_EVERY;
        loop {
            self.drain(Instant::now());
            let deadline = self
                .next_deadline()
                .unwrap_or(next_housekeeping)
                .min(next_housekeeping)
                .min(next_adapt)
                .min(next_speakers)
                .min(next_reports);
            tokio::select! {
                biased;
                command = commands.recv() => match command {
                    None | Some(Command::Shutdown) => break,
                    Some(command) => self.handle_command(command),
                },
                ready = self.io.udp.readable() => {
                    if ready.is_ok() {
                        self.read_datagrams(&mut buf);
                    }
                }
                event = tcp_events.recv(), if tcp_open => match event {
                    Some(event) => {
                        let now = Instant::now();
                        self.on_tcp(now, event);
                        for _ in 1..READ_BATCH {
                            match tcp_events.try_recv() {
                                Ok(event) => self.on_tcp(now, event),
                                Err(_) => break,
                            }
                        }
                    }
                    None => tcp_open = false,
                },
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
            let now = Instant::now();
            self.run_timers(now);
            if now >= next_adapt {
                self.adapt(now, None);
                next_adapt = now + adapt::ADAPT_EVERY;
            }
            if now >= next_speakers {
                self.poll_speakers(now);
                next_speakers = now + speaking::SPEAKER_POLL;
            }
            if now >= next_reports {
                self.send_reports(now);
                next_reports = now + reports::REPORT_EVERY;
            }
            if now >= next_housekeeping {
                self.housekeeping(now);
                next_housekeeping = now + HOUSEKEEPING;
            }
        }
        let now = Instant::now();
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            self.close_peer(now, id, CloseReason::Shutdown);
        }
        self.publish_stats();
    }

    fn handle_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Negotiate { offer, reply } => {
                let _ = reply.send(self.negotiate(now, offer));
            }
            Command::Close { peer, reason } => self.close_peer(now, peer, reason),
            Command::AttachSource { spec, reply } => {
                let _ = reply.send(self.attach_source(now, spec));
            }
            Command::SourceRtp {
                source,
                track,
                packet,
            } => self.source_rtp(now, source, track, packet),
            Command::DetachSource { source } => self.detach_source(now, source),
            Command::Wishes { key, wishes } => {
                if let Some(&id) = self.sessions.get(&key)
                    && let Some(peer) = self.peers.get_mut(&id)
                {
                    peer.set_wishes(wishes);
                    self.adapt_now.push(id);
                    self.dirty.push(id);
                }
            }
            Command::Muted { key, mids } => self.set_muted(now, &key, mids),
            Command::Shutdown => {}
            #[cfg(feature = "fault-injection")]
            Command::InjectPanic => panic!("fault injection: the media thread panics"),
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.peers
            .values()
            .flat_map(|p| [p.deadline, p.keyframe_deadline(), p.pace_deadline()])
            .flatten()
            .min()
    }

    fn run_timers(&mut self, now: Instant) {
        for (id, peer) in self.peers.iter_mut() {
            let mut touched = false;
            if peer.deadline.is_some_and(|d| d <= now) {
                peer.handle_timeout(now);
                touched = true;
            }
            if peer.pace_deadline().is_some_and(|d| d <= now) {
                peer.release_paced(now);
                touched = true;
            }
            if peer.keyframe_deadline().is_some_and(|d| d <= now) {
                self.stats.keyframe_requests += peer.poll_keyframes(now) as u64;
                touched = true;
            }
            if touched {
                self.dirty.push(*id);
            }
        }
    }

    /// Processes every touched peer: events and inbound media, forwarding, then datagrams out.
    fn drain(&mut self, now: Instant) {
        if self.dirty.is_empty() && self.inbound.is_empty() {
            return;
        }
        let mut closing = Vec::new();
        let mut touched = std::mem::take(&mut self.dirty);
        touched.sort_unstable();
        touched.dedup();
        for &id in &touched {
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            let mut outputs = std::mem::take(&mut self.outputs);
            peer.poll_outputs(now, &mut outputs);
            for output in outputs.drain(..) {
                match output {
                    PeerOutput::Connected => {
                        self.emit(id, SessionEvent::Connected);
                        let sources: Vec<TrackRef> = self
                            .peers
                            .get(&id)
                            .map(|p| p.slot_sources().cloned().collect())
                            .unwrap_or_default();
                        for track in sources {
                            let layer = self.peers.get(&id).and_then(|p| {
                                p.slot_states()
                                    .find(|(_, t, _, _)| **t == track)
                                    .and_then(|(_, _, _, s)| s.target())
                            });
                            self.request_keyframe(now, &track, layer);
                        }
                    }
                    PeerOutput::Failed => closing.push(id),
                    PeerOutput::Nack => self.stats.nacks_received += 1,
                    PeerOutput::Media {
                        mid,
                        layer,
                        codec,
                        info,
                        audio_level,
                        late,
                        packet,
                    } => {
                        self.stats.published_late += late as u64;
                        // A track the application muted is neither forwarded nor heard.
                        if self.peers.get(&id).is_some_and(|p| p.muted.contains(&mid)) {
                            self.stats.dropped_muted += 1;
                            continue;
                        }
                        if let Some((level, voice)) = audio_level {
                            self.on_audio_level(now, id, level, voice);
                        }
                        self.stats.rtp_in += 1;
                        self.stats.rtp_bytes_in += packet.payload.len() as u64;
                        // Padding-only packets are the publisher's bandwidth probes toward us;
                        // forwarding them would only spend subscribers' bandwidth.
                        if packet.payload.is_empty() {
                            self.stats.dropped_padding += 1;
                        } else {
                            self.inbound.push(Received {
                                publisher: id,
                                mid,
                                layer,
                                codec,
                                info,
                                packet,
                            });
                        }
                    }
                    PeerOutput::SenderReport { ssrc, ntp, rtp } => {
                        let arrived = self.wall.ntp(now);
                        if let Some(p) = self.peers.get_mut(&id) {
                            p.clock.on_sender_report(ssrc, ntp, rtp, arrived);
                        }
                    }
                    PeerOutput::KeyframeRequest { slot } => {
                        if let Some((track, layer)) = self.peers.get(&id).and_then(|p| {
                            Some((p.slot_source(&slot)?.clone(), p.slot_layer(&slot)))
                        }) {
                            self.request_keyframe(now, &track, layer);
                        }
                    }
                }
            }
            self.outputs = outputs;
        }

        if !self.adapt_now.is_empty() {
            let mut ids = std::mem::take(&mut self.adapt_now);
            ids.sort_unstable();
            ids.dedup();
            self.adapt(now, Some(&ids));
        }
        let mut inbound = std::mem::take(&mut self.inbound);
        for received in inbound.drain(..) {
            let packet = Inbound {
                packet: &received.packet,
                layer: received.layer,
                codec: received.codec,
                info: received.info,
            };
            for slot in self.forwards.slots_of(received.publisher, &received.mid) {
                let Some(subscriber) = self.peers.get_mut(&slot.subscriber) else {
                    continue;
                };
                if !subscriber.connected {
                    continue;
                }
                match subscriber.forward(now, &slot.mid, &packet) {
                    Ok(Forwarded::NotSelected) => self.stats.dropped_other_layer += 1,
                    Ok(outcome) => {
                        if outcome == Forwarded::Switched {
                            self.stats.layer_switches += 1;
                        }
                        self.stats.rtp_forwarded += 1;
                        self.stats.rtp_bytes_forwarded += received.packet.payload.len() as u64;
                        touched.push(slot.subscriber);
                    }
                    Err(ForwardError::Unforwardable(Unforwardable::CodecMismatch)) => {
                        self.stats.dropped_codec_mismatch += 1;
                    }
                    Err(ForwardError::Stack(e)) => {
                        self.stats.dropped_by_stack += 1;
                        tracing::trace!("forward refused by the stack: {e}");
                    }
                    Err(ForwardError::NoSlot) => {}
                }
            }
        }
        self.inbound = inbound;
        // Keyframe requests made above touched publishers after `touched` was taken.
        touched.append(&mut self.dirty);
        touched.sort_unstable();
        touched.dedup();

        for &id in &touched {
            self.transmit(id, now);
            if let Some(peer) = self.peers.get_mut(&id) {
                peer.refresh_deadline();
            }
        }
        touched.clear();
        self.dirty = touched;

        for id in closing {
            let attempt = self.peers.get(&id).map(|p| p.attempt).unwrap_or_default();
            self.close_peer(now, id, CloseReason::ConnectFailed(attempt));
        }
    }

    fn close_peer(&mut self, now: Instant, id: PeerId, reason: CloseReason) {
        if let Some(peer) = self.remove_peer(now, id) {
            let _ = self.events.send(MediaEvent {
                peer: id,
                session: peer.key,
                what: SessionEvent::Closed(reason),
            });
        }
    }

    /// Closes a peer and frees its slots everywhere, without telling its session.
    fn remove_peer(&mut self, now: Instant, id: PeerId) -> Option<Peer> {
        let mut peer = self.peers.remove(&id)?;
        peer.close();
        while let Some((to, protocol, datagram)) = peer.poll_transmit() {
            self.io.send(to, protocol, &datagram, &mut self.stats);
        }
        self.io.drop_peer(id);
        self.demux.remove_peer(id);
        if self.sessions.get(&peer.key) == Some(&id) {
            self.sessions.remove(&peer.key);
        }
        self.forwards.remove_peer(id);
        self.forget_speaker(&peer.key.room, id);
        if let Some(room) = self.rooms.get_mut(&peer.key.room) {
            let changes = room.leave(id);
            if room.is_empty() {
                self.rooms.remove(&peer.key.room);
            }
            self.apply_changes(now, &changes, None);
            self.refocus(now, &peer.key.room);
        }
        Some(peer)
    }
}
