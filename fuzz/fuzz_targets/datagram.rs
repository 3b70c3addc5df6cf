//! The datagram path of a connected peer: a str0m client (an independent WebRTC stack) has
//! completed ICE and DTLS with a firesfu peer, in memory. Each input is either a raw datagram
//! from the client's address (STUN, DTLS, SRTP, RTCP or garbage: routed by the shared socket's
//! table, then fed to the stack), a raw datagram from an unknown address, or an RTP packet
//! (header fields and payload from the input) that the client encrypts and sends on its audio
//! or video stream, so that it reaches the server's payload inspection. A panic anywhere
//! (the engine would close the peer; here it is a crash) or a stuck harness is a finding.
#![no_main]

use std::net::SocketAddr;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use firesfu::media::fuzzing::{self, FuzzPeer};
use libfuzzer_sys::fuzz_target;
use rtc::peer_connection::certificate::RTCCertificate;
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc};

const CLIENT: &str = "10.0.0.2:5000";
const SERVER: &str = "10.0.0.1:4443";
const STRANGER: &str = "10.0.0.3:6000";

struct Harness {
    client: Rtc,
    server: FuzzPeer,
    audio: Mid,
    video: Mid,
    now: Instant,
    seq: u64,
}

static CERTIFICATE: LazyLock<RTCCertificate> = LazyLock::new(fuzzing::certificate);

static HARNESS: LazyLock<Mutex<Option<Harness>>> = LazyLock::new(|| Mutex::new(None));

impl Harness {
    fn connect() -> Harness {
        let mut now = Instant::now();
        let mut client = Rtc::builder().set_rtp_mode(true).build(now);
        let client_addr: SocketAddr = CLIENT.parse().unwrap();
        client
            .add_local_candidate(Candidate::host(client_addr, "udp").unwrap())
            .unwrap();
        let mut api = client.sdp_api();
        let audio = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let video = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        let (offer, pending) = api.apply().unwrap();
        let (server, answer) = FuzzPeer::answer(
            &offer.to_sdp_string(),
            SERVER.parse().unwrap(),
            CERTIFICATE.clone(),
            now,
        )
        .expect("the server answers str0m's offer");
        client
            .sdp_api()
            .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
            .unwrap();
        let mut h = Harness {
            client,
            server,
            audio,
            video,
            now,
            seq: 1,
        };
        let mut connected = false;
        for _ in 0..2000 {
            connected |= h.pump();
            if connected && h.server.connected() {
                // The path the inputs take: a packet the client sends reaches the server's
                // media handling (SRTP decrypted, parsed, inspected).
                for seq in 0..20u16 {
                    let mut rtp = vec![0u8; 7];
                    rtp[..2].copy_from_slice(&seq.to_be_bytes());
                    rtp.extend_from_slice(&[
                        0x90, 0x80, 0x81, 0x23, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a,
                    ]);
                    h.rtp(true, &rtp);
                    h.pump();
                    h.now += Duration::from_millis(5);
                    h.tick();
                }
                assert!(
                    h.server.media_packets > 0,
                    "the client's RTP does not reach the server"
                );
                return h;
            }
            now += Duration::from_millis(5);
            h.now = now;
            h.tick();
        }
        panic!("the in-memory connection did not complete");
    }

    /// Moves every datagram both ways until both sides are quiet; true once the client
    /// reported itself connected.
    fn pump(&mut self) -> bool {
        let mut connected = false;
        for _ in 0..200 {
            let mut moved = false;
            loop {
                match self.client.poll_output() {
                    Ok(Output::Transmit(t)) => {
                        self.server.receive(self.now, t.source, &t.contents);
                        moved = true;
                    }
                    Ok(Output::Event(Event::Connected)) => connected = true,
                    Ok(Output::Event(_)) => {}
                    Ok(Output::Timeout(_)) | Err(_) => break,
                }
            }
            while let Some((_, data)) = self.server.transmit() {
                moved = true;
                if let Ok(contents) = (&data[..]).try_into() {
                    let input = Input::Receive(
                        self.now,
                        Receive {
                            proto: Protocol::Udp,
                            source: SERVER.parse().unwrap(),
                            destination: CLIENT.parse().unwrap(),
                            contents,
                        },
                    );
                    let _ = self.client.handle_input(input);
                }
            }
            if !moved {
                break;
            }
        }
        connected
    }

    fn tick(&mut self) {
        let _ = self.client.handle_input(Input::Timeout(self.now));
        self.server.timeout(self.now);
    }

    fn rtp(&mut self, video: bool, data: &[u8]) {
        let (mid, pt) = if video {
            (self.video, 96)
        } else {
            (self.audio, 111)
        };
        let seq = u16::from_be_bytes([data[0], data[1]]);
        let time = u32::from_be_bytes([data[2], data[3], data[4], data[5]]);
        self.seq = (self.seq & !0xffff) | seq as u64;
        let pt = Pt::from(pt);
        let now = self.now;
        if let Some(tx) = self.client.direct_api().stream_tx_by_mid(mid, None) {
            let write = RtpWrite::new(pt, SeqNo::from(self.seq), time, now, data[7..].to_vec())
                .marker(data[6] & 1 == 1);
            tx.write_rtp(write);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut guard = HARNESS.lock().unwrap_or_else(|e| e.into_inner());
    if guard.as_ref().is_none_or(|h| h.server.failed) {
        *guard = Some(Harness::connect());
    }
    let h = guard.as_mut().unwrap();
    match mode % 4 {
        0 => {
            h.server.receive(h.now, CLIENT.parse().unwrap(), rest);
        }
        1 | 2 if rest.len() >= 7 => h.rtp(mode % 4 == 1, rest),
        3 => {
            assert!(
                !h.server.receive(h.now, STRANGER.parse().unwrap(), rest)
                    || rest.first().is_some_and(|b| *b <= 3),
                "only a binding request may open a path from an unknown address"
            );
        }
        _ => {}
    }
    h.pump();
    h.now += Duration::from_millis(2);
    h.tick();
    h.pump();
});
