//! Reaching the server by other paths than IPv4 UDP, with str0m peers (a stack independent of
//! the server's): ICE-TCP, ICE restart, IPv6, what a client that cannot connect is told, and
//! TCP clients that misbehave. Chromium and coturn cover the same ground in
//! `tests/connectivity/*.sh`.

mod common;

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::{Broadcast, BroadcastOptions, Project, eventually};
use testpeer::endpoint::Transport;
use testpeer::{Peer, PeerSpec, Report};

const T: Duration = Duration::from_secs(20);

fn receives_from(r: &Report, tag: &str, frames: u64) -> bool {
    r.video_from(tag) >= frames && r.audio_from(tag) >= frames
}

fn spec(room: &str, session: &str, transport: Transport) -> PeerSpec {
    let mut spec = PeerSpec::new(room, session);
    spec.transport = transport;
    spec
}

/// The `a=candidate` lines of an SDP.
fn candidates(sdp: &str) -> Vec<&str> {
    sdp.lines()
        .filter(|l| l.starts_with("a=candidate:"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_can_only_use_tcp_connects_over_ice_tcp() {
    let project = Project::new().await;
    let room = project.room("tcp").await;
    let extra = common::free_tcp_port();
    let sfu = Broadcast::start_with(
        &project,
        BroadcastOptions {
            // A second listener, as for port 443 behind a load balancer.
            extra: vec![("FIRESFU_ICE_TCP_EXTRA".into(), format!("127.0.0.1:{extra}"))],
            ..Default::default()
        },
    )
    .await;

    // Alice has only an active TCP candidate: the server's passive one is her only pair.
    let alice = Peer::join(&project.db, spec(&room, "alice", Transport::Tcp))
        .await
        .unwrap();
    let bob = project.join(&room, "bob").await;
    let a = alice
        .wait_until("alice receives bob over TCP", T, |r| {
            receives_from(r, "bob", 30)
        })
        .await
        .unwrap();
    bob.wait_until("bob receives alice", T, |r| receives_from(r, "alice", 30))
        .await
        .unwrap();
    assert_eq!(a.corrupt, 0);

    // The answer offers UDP first (by priority) and a passive TCP candidate on the same port.
    let doc = alice.doc.read().await.unwrap().unwrap();
    let answer = doc["answer"]["sdp"].as_str().unwrap();
    let lines = candidates(answer);
    let udp = lines
        .iter()
        .find(|l| l.contains(" udp "))
        .expect("a UDP candidate");
    let tcp = lines
        .iter()
        .find(|l| l.contains(" tcp ") && l.contains("tcptype passive"))
        .unwrap_or_else(|| panic!("no passive TCP candidate in\n{answer}"));
    let priority = |l: &str| l.split(' ').nth(3).unwrap().parse::<u64>().unwrap();
    assert!(priority(udp) > priority(tcp), "UDP must be preferred");
    let port = |l: &str| l.split(' ').nth(5).unwrap().to_owned();
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" tcp ") && port(l) == extra.to_string()),
        "no candidate for the second listener in\n{answer}"
    );
    assert_eq!(
        port(udp),
        port(tcp),
        "ICE-TCP listens on the UDP port's number"
    );

    // The server's counters (refreshed every second) say the same.
    let stats = eventually("TCP counters", Duration::from_secs(5), async || {
        let s = sfu.stats().await.ok()?;
        (s["tcpFramesIn"].as_u64()? > 100 && s["tcpFramesOut"].as_u64()? > 100).then_some(s)
    })
    .await
    .unwrap();
    assert_eq!(stats["peersOverTcp"], 1, "{stats}");
    // str0m opens a connection to each passive candidate (both listeners); one carries media.
    let connections = stats["tcpConnections"].as_u64().unwrap();
    assert!((1..=2).contains(&connections), "{stats}");
    assert_eq!(stats["tcpSendDropped"], 0, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ice_restart_keeps_the_session_and_its_roster_entry() {
    let project = Project::new().await;
    let room = project.room("restart").await;
    let _sfu = Broadcast::start(&project).await;
    let alice = project.join(&room, "alice").await;
    let bob = project.join(&room, "bob").await;
    for (peer, other) in [(&alice, "bob"), (&bob, "alice")] {
        peer.wait_until("media both ways", T, |r| receives_from(r, other, 20))
            .await
            .unwrap();
    }
    let roster_before = project.roster(&room).await;
    let ufrag = |sdp: &str| {
        sdp.lines()
            .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
            .unwrap()
            .to_owned()
    };
    let before = alice.doc.read().await.unwrap().unwrap();
    let server_ufrag = ufrag(before["answer"]["sdp"].as_str().unwrap());
    let client_ufrag = ufrag(before["offer"]["sdp"].as_str().unwrap());

    alice.ice_restart();
    let revision = before["offer"]["revision"].as_i64().unwrap() + 1;
    alice
        .wait_until("the restart answered", T, |r| {
            r.answered_revision == revision
        })
        .await
        .unwrap();
    let after = alice.doc.read().await.unwrap().unwrap();
    assert_ne!(ufrag(after["offer"]["sdp"].as_str().unwrap()), client_ufrag);
    // RFC 8839: the answerer's credentials change with the offerer's.
    assert_ne!(
        ufrag(after["answer"]["sdp"].as_str().unwrap()),
        server_ufrag
    );
    assert_eq!(after["state"], "connected", "{after}");

    // Media resumes both ways on the new credentials.
    let (a0, b0) = (alice.report(), bob.report());
    alice
        .wait_until("alice receives bob after the restart", T, |r| {
            r.video_from("bob") >= a0.video_from("bob") + 60
        })
        .await
        .unwrap();
    bob.wait_until("bob receives alice after the restart", T, |r| {
        r.video_from("alice") >= b0.video_from("alice") + 60
    })
    .await
    .unwrap();
    // No roster churn: the same participant documents, never rewritten as a new join.
    let roster_after = project.roster(&room).await;
    let created = |docs: &[firestore::FirestoreDocument]| {
        let mut v: Vec<_> = docs
            .iter()
            .map(|d| (d.name.clone(), d.create_time))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    assert_eq!(created(&roster_before), created(&roster_after));
    assert_eq!(roster_after.len(), 2);
    let b = bob.report();
    assert_eq!(
        b.slots.values().flatten().filter(|p| *p == "alice").count(),
        2
    );
    assert_eq!(b.corrupt + alice.report().corrupt, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_connect_over_ipv6() {
    let project = Project::new().await;
    let room = project.room("six").await;
    let port = common::free_udp_port();
    let sfu = Broadcast::start_with(
        &project,
        BroadcastOptions {
            extra: vec![
                ("FIRESFU_UDP_BIND".into(), format!("[::]:{port}")),
                ("FIRESFU_ADVERTISE_IPS".into(), "127.0.0.1,::1".into()),
            ],
            ..Default::default()
        },
    )
    .await;
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let mut alice = spec(&room, "alice", Transport::Udp);
    alice.bind_ip = v6;
    let mut carol = spec(&room, "carol", Transport::Tcp);
    carol.bind_ip = v6;
    let alice = Peer::join(&project.db, alice).await.unwrap();
    let carol = Peer::join(&project.db, carol).await.unwrap();
    // Bob stays on IPv4: the dual-stack socket serves both.
    let bob = project.join(&room, "bob").await;
    for (peer, others) in [
        (&alice, ["bob", "carol"]),
        (&bob, ["alice", "carol"]),
        (&carol, ["alice", "bob"]),
    ] {
        peer.wait_until("media from both others", T, |r| {
            others.iter().all(|o| receives_from(r, o, 20))
        })
        .await
        .unwrap();
    }
    let doc = alice.doc.read().await.unwrap().unwrap();
    let answer = doc["answer"]["sdp"].as_str().unwrap();
    assert!(
        candidates(answer)
            .iter()
            .any(|l| l.contains(" ::1 ") && l.contains(" udp ")),
        "{answer}"
    );
    assert_eq!(sfu.stat("peersOverTcp").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_cannot_connect_is_told_what_was_tried() {
    let project = Project::new().await;
    let room = project.room("unreachable").await;
    let _sfu = Broadcast::start_with(
        &project,
        BroadcastOptions {
            peer_timeout_secs: 3,
            ..Default::default()
        },
    )
    .await;
    // An offer whose client never sends a connectivity check (a network that blocks the
    // server's ports both ways, and no TURN).
    let session = "blocked";
    let offer = {
        let mut ep = testpeer::endpoint::Endpoint::bind(
            IpAddr::from([127, 0, 0, 1]),
            testpeer::endpoint::MediaSpec {
                tag: session.into(),
                publish_audio: true,
                publish_video: true,
                video: testpeer::VideoSource::Tagged { frame_bytes: 100 },
                video_delay: std::time::Duration::ZERO,
                remb: None,
                camera_codecs: false,
            },
            Default::default(),
        )
        .await
        .unwrap();
        ep.first_offer(0, 0).unwrap().0
    };
    let doc = testpeer::firestore::SessionDoc {
        db: project.db.clone(),
        room: room.clone(),
        session: session.into(),
    };
    doc.create("Blocked", "uid-blocked", None, None, &offer)
        .await
        .unwrap();
    let ended = eventually("the session fails", Duration::from_secs(30), async || {
        let d = doc.read().await.ok()??;
        (d["state"] == "failed").then_some(d)
    })
    .await
    .unwrap();
    assert_eq!(ended["error"]["code"], "connect-failed", "{ended}");
    let message = ended["error"]["message"].as_str().unwrap();
    for words in [
        "0 connectivity checks arrived over UDP",
        "0 over TCP",
        "no relay (TURN) candidates",
        "iceServers",
    ] {
        assert!(message.contains(words), "{words:?} not in {message:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_tcp_clients_do_not_disturb_a_call() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;

    let project = Project::new().await;
    let room = project.room("abuse").await;
    let sfu = Broadcast::start_with(
        &project,
        BroadcastOptions {
            extra: vec![
                ("FIRESFU_ICE_TCP_MAX_PER_IP".into(), "1100".into()),
                ("FIRESFU_ICE_TCP_MAX".into(), "1100".into()),
            ],
            ..Default::default()
        },
    )
    .await;
    let alice = Peer::join(&project.db, spec(&room, "alice", Transport::Tcp))
        .await
        .unwrap();
    let bob = project.join(&room, "bob").await;
    alice
        .wait_until("the call runs", T, |r| receives_from(r, "bob", 20))
        .await
        .unwrap();
    let tcp: SocketAddr = SocketAddr::new(sfu.udp.ip(), sfu.udp.port());
    let rss_before = sfu.rss_kib();

    // 1000 idle connections (they never send a frame), garbage framing, a frame larger than
    // any datagram, a valid frame that is no binding request, and a half-open connection.
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(TcpStream::connect(tcp).await.unwrap());
    }
    let mut garbage = TcpStream::connect(tcp).await.unwrap();
    garbage.write_all(&[0u8; 64]).await.unwrap();
    let mut huge = TcpStream::connect(tcp).await.unwrap();
    huge.write_all(&[0xff, 0xff, 1, 2, 3]).await.unwrap();
    let mut stranger = TcpStream::connect(tcp).await.unwrap();
    stranger.write_all(&[0, 4, 0x80, 0x60, 0, 1]).await.unwrap();
    let mut half = TcpStream::connect(tcp).await.unwrap();
    half.write_all(&[0, 20, 0, 1]).await.unwrap(); // a frame header and 2 of its 20 bytes
    half.shutdown().await.unwrap();
    eventually(
        "the idle connections held",
        Duration::from_secs(10),
        async || (sfu.stat("tcpConnections").await >= 1000).then_some(()),
    )
    .await
    .unwrap();

    // The call goes on, both ways.
    let (a0, b0) = (alice.report(), bob.report());
    alice
        .wait_until("alice still receives", T, |r| {
            r.video_from("bob") >= a0.video_from("bob") + 90
        })
        .await
        .unwrap();
    bob.wait_until("bob still receives", T, |r| {
        r.video_from("alice") >= b0.video_from("alice") + 90
    })
    .await
    .unwrap();
    let rss = sfu.rss_kib();
    assert!(
        rss < rss_before + 64 * 1024,
        "1000 idle connections cost {} KiB",
        rss - rss_before
    );

    // Beyond the limit, connections are refused at once.
    let mut more = Vec::new();
    for _ in 0..150 {
        if let Ok(s) = TcpStream::connect(tcp).await {
            more.push(s);
        }
    }
    eventually(
        "connections over the limit refused",
        Duration::from_secs(10),
        async || (sfu.stat("tcpRefused").await >= 40).then_some(()),
    )
    .await
    .unwrap();

    // Idle connections that never sent a frame are closed (slow-loris): FIRST_FRAME is 5 s.
    drop(more);
    let started = Instant::now();
    eventually(
        "silent connections closed",
        Duration::from_secs(15),
        async || (sfu.stat("tcpConnections").await <= 1).then_some(()),
    )
    .await
    .unwrap_or_else(|e| panic!("{e} (after {:?})", started.elapsed()));
    drop(idle);
    assert_eq!(alice.report().corrupt + bob.report().corrupt, 0);
    let stats = sfu.stats().await.unwrap();
    assert_eq!(stats["peersOverTcp"], 1, "{stats}");
}
