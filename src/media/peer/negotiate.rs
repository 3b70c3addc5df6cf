//! Answering a peer's offers: the peer connection is built once per session and every offer
//! (first and re-offers) is applied to it. The `rtc` stack's answer-side `add_track` attaches a
//! sender to the first transceiver of that kind that has none, which is usually the client's
//! own publish m-line, and then answers a `sendonly` offer `sendrecv` (a JSEP violation). So
//! every m-line gets its sender in m-line order, and each transceiver's direction is set
//! explicitly from what the client offered: publish lines are answered `recvonly`, receive
//! slots `sendonly`, the rest `inactive`.

use super::*;

/// `a=ice-ufrag:` and `a=ice-pwd:` of an SDP (session or first media level).
fn ice_credentials(sdp: &str) -> Option<(String, String)> {
    let value = |key: &str| {
        sdp.lines()
            .find_map(|l| l.trim_end().strip_prefix(key))
            .map(str::to_owned)
    };
    Some((value("a=ice-ufrag:")?, value("a=ice-pwd:")?))
}

fn to_rtc_kind(kind: MediaKind) -> RtpCodecKind {
    match kind {
        MediaKind::Audio => RtpCodecKind::Audio,
        MediaKind::Video => RtpCodecKind::Video,
    }
}

impl Peer {
    pub fn new(
        id: PeerId,
        key: SessionKey,
        display_name: String,
        setup: &PeerSetup,
        now: Instant,
    ) -> Result<Peer, String> {
        let downlink = SharedEstimate::default();
        let (media_engine, registry) =
            build_media_engine(&setup.codecs, downlink.clone()).map_err(|e| e.to_string())?;
        // No fixed ICE credentials: the stack draws them, and draws new ones when the client
        // restarts ICE (RFC 8839 wants the answerer's to change too). The answer says which
        // they are; the engine's demux learns them from it after every negotiation.
        let settings = SettingEngineBuilder::new()
            .with_lite(setup.ice_lite)
            .build();
        let config = RTCConfigurationBuilder::new()
            .with_certificates(vec![setup.certificate.clone()])
            .build();
        let pc = RTCPeerConnectionBuilder::new()
            .with_configuration(config)
            .with_setting_engine(settings)
            .with_media_engine(media_engine)
            .with_interceptor_registry(registry)
            .build(now)
            .map_err(|e| e.to_string())?;
        Ok(Peer {
            id,
            key,
            display_name,
            ufrag: String::new(),
            ice_password: String::new(),
            pc,
            candidates: setup.candidates.clone(),
            tcp_candidates: setup.tcp_candidates.clone(),
            has_candidates: false,
            published_tracks: HashMap::new(),
            publishes: HashMap::new(),
            sources: Default::default(),
            muted: Default::default(),
            watch: None,
            slots: HashMap::new(),
            wishes: HashMap::new(),
            downlink,
            remb_only: false,
            pacer: Pacer::default(),
            paced_due: Vec::new(),
            clock: PublisherClock::default(),
            last_heard: now,
            connected: false,
            broken: false,
            deadline: None,
            attempt: ConnectAttempt::default(),
            transport: TransportProtocol::UDP,
        })
    }

    /// Our host candidates: UDP, and passive TCP (RFC 6544) where the instance listens; the
    /// stack's priorities put UDP first.
    fn add_candidates(&mut self) -> Result<(), String> {
        let udp = self.candidates.iter().map(|a| (*a, TcpType::Unspecified));
        let tcp = self.tcp_candidates.iter().map(|a| (*a, TcpType::Passive));
        let all: Vec<(SocketAddr, TcpType)> = udp.chain(tcp).collect();
        for (addr, tcp_type) in all {
            let network = if tcp_type == TcpType::Passive {
                "tcp"
            } else {
                "udp"
            };
            let candidate = CandidateHostConfig {
                base_config: CandidateConfig {
                    network: network.to_owned(),
                    address: addr.ip().to_string(),
                    port: addr.port(),
                    component: 1,
                    ..Default::default()
                },
                tcp_type,
            }
            .new_candidate_host()
            .map_err(|e| e.to_string())?;
            let init = RTCIceCandidate::from(&candidate)
                .to_json()
                .map_err(|e| e.to_string())?;
            self.pc
                .add_local_candidate(init)
                .map_err(|e| e.to_string())?;
        }
        self.has_candidates = true;
        Ok(())
    }

    fn transceivers_by_mid(&mut self) -> HashMap<String, RTCRtpTransceiverId> {
        let ids: Vec<RTCRtpTransceiverId> = self.pc.get_transceivers().collect();
        let mut out = HashMap::new();
        for id in ids {
            if let Some(t) = self.pc.rtp_transceiver(id)
                && let Some(mid) = t.mid().clone()
            {
                out.insert(mid, id);
            }
        }
        out
    }

    /// Applies an offer and returns the answer SDP. `slot_stream` names the msid stream of a
    /// new receive slot (the publisher it will carry, when known).
    pub fn negotiate(
        &mut self,
        now: Instant,
        sdp: &str,
        summary: &OfferSummary,
        slot_stream: impl Fn(&str) -> String,
    ) -> Result<String, String> {
        let offer = RTCSessionDescription::offer(sdp.to_owned()).map_err(|e| e.to_string())?;
        self.remb_only = !summary.transport_cc;
        self.attempt.relay_offered |= sdp
            .lines()
            .any(|l| l.starts_with("a=candidate:") && l.contains(" typ relay"));
        self.pc
            .set_remote_description(now, offer)
            .map_err(|e| e.to_string())?;
        let by_mid = self.transceivers_by_mid();
        for m in &summary.media {
            let id = *by_mid
                .get(&m.mid)
                .ok_or_else(|| format!("the stack has no transceiver for mid {}", m.mid))?;
            let has_sender = self
                .pc
                .rtp_transceiver(id)
                .and_then(|t| t.sender())
                .is_some();
            if !has_sender {
                let (stream, track) = if m.is_slot() {
                    (slot_stream(&m.mid), format!("firesfu-{}", m.mid))
                } else {
                    ("firesfu".to_owned(), format!("firesfu-unused-{}", m.mid))
                };
                // The encoding names its codec: the stack binds the stream to its interceptors
                // (NACK responder, sender reports, transport-wide sequence numbers) only when
                // that codec is among the negotiated ones.
                let codec = m
                    .codec
                    .as_ref()
                    .map(|(name, clock_rate)| RTCRtpCodec {
                        mime_type: format!("{}/{name}", m.kind.as_str()),
                        clock_rate: *clock_rate,
                        ..Default::default()
                    })
                    .unwrap_or_default();
                let track = MediaStreamTrack::new(
                    stream,
                    track.clone(),
                    track,
                    to_rtc_kind(m.kind),
                    vec![RTCRtpEncodingParameters {
                        rtp_coding_parameters: RTCRtpCodingParameters {
                            ssrc: Some(rand::random::<u32>()),
                            // Retransmissions on their own stream where the subscriber can
                            // take them (the NACK responder then sends RTX, RFC 4588).
                            rtx: (m.is_slot() && m.rtx).then(|| RTCRtpRtxParameters {
                                ssrc: rand::random::<u32>(),
                            }),
                            ..Default::default()
                        },
                        codec,
                        ..Default::default()
                    }],
                );
                let sender = self.pc.add_track(track).map_err(|e| e.to_string())?;
                if RTCRtpTransceiverId::from(sender) != id {
                    return Err(format!(
                        "the stack attached the sender for mid {} to another m-line",
                        m.mid
                    ));
                }
            }
            let direction = if m.publishes() {
                RTCRtpTransceiverDirection::Recvonly
            } else if m.is_slot() {
                RTCRtpTransceiverDirection::Sendonly
            } else {
                RTCRtpTransceiverDirection::Inactive
            };
            if let Some(mut t) = self.pc.rtp_transceiver(id) {
                t.set_direction(direction);
            }
        }
        if !self.has_candidates {
            self.add_candidates()?;
        }
        let answer = self.pc.create_answer(None).map_err(|e| e.to_string())?;
        self.pc
            .set_local_description(now, answer)
            .map_err(|e| e.to_string())?;
        let answer = self
            .pc
            .local_description()
            .ok_or("the stack produced no local description")?
            .sdp;
        self.index_media(summary, &by_mid);
        let (ufrag, password) =
            ice_credentials(&answer).ok_or("the answer carries no ICE credentials")?;
        (self.ufrag, self.ice_password) = (ufrag, password);
        super::super::answer::finish(&answer).map_err(|e| e.to_string())
    }

    /// Rebuilds the mid ↔ sender/receiver maps and each side's negotiated parameters.
    fn index_media(
        &mut self,
        summary: &OfferSummary,
        by_mid: &HashMap<String, RTCRtpTransceiverId>,
    ) {
        self.published_tracks.clear();
        let mut publishes = HashMap::new();
        let mut slots = HashMap::new();
        for m in &summary.media {
            let Some(&id) = by_mid.get(&m.mid) else {
                continue;
            };
            if m.publishes() {
                let receiver = RTCRtpReceiverId::from(id);
                if let Some(mut r) = self.pc.rtp_receiver(receiver) {
                    let params = r.get_parameters().rtp_parameters.clone();
                    let track_id = r.track().track_id().clone();
                    self.published_tracks.insert(track_id, m.mid.clone());
                    let old = self.publishes.remove(&m.mid);
                    publishes.insert(
                        m.mid.clone(),
                        Publish::new(
                            receiver,
                            m.kind == super::MediaKind::Video,
                            &m.rids,
                            &m.sim_ssrcs,
                            codec_descs(&params),
                            ext_descs(&params),
                            old,
                        ),
                    );
                }
            } else if m.is_slot() {
                let sender = RTCRtpSenderId::from(id);
                if let Some(mut s) = self.pc.rtp_sender(sender) {
                    let params = s.get_parameters().rtp_parameters.clone();
                    let ssrc = s.track().ssrcs().next().unwrap_or_default();
                    let slot = match self.slots.remove(&m.mid) {
                        Some(mut old) => {
                            old.sender = sender;
                            old.codecs = codec_descs(&params);
                            old.exts = ext_descs(&params);
                            old
                        }
                        None => Slot::new(sender, codec_descs(&params), ext_descs(&params), ssrc),
                    };
                    slots.insert(m.mid.clone(), slot);
                }
            }
        }
        self.publishes = publishes;
        self.slots = slots;
    }

    /// The peer shares a screen (publishes a track declared `screen`).
    pub fn presents(&self) -> bool {
        self.sources.iter().any(|(mid, s)| {
            *s == crate::media::TrackSource::Screen && self.publishes.contains_key(mid)
        })
    }

    pub fn publish_params(&self, mid: &str) -> Option<(&[CodecDesc], &[ExtDesc])> {
        self.publishes
            .get(mid)
            .map(|p| (p.codecs.as_slice(), p.exts.as_slice()))
    }
}
