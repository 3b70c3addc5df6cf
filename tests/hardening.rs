//! What probing the server as an attacker, and breaking it on purpose, found: paths taken over
//! with a sniffed username, peers that outlive their documents, offers left hanging after a
//! failed write, a dead media thread nobody notices, a restart that leaves ghosts.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::{Broadcast, BroadcastOptions, Project};
use serde_json::Value;
use testpeer::{Leave, Peer, PeerSpec};

const T: Duration = Duration::from_secs(25);

fn receives_from(r: &testpeer::Report, tag: &str, frames: u64) -> bool {
    r.video_from(tag) >= frames && r.audio_from(tag) >= frames
}

fn with(extra: &[(&str, &str)]) -> BroadcastOptions {
    BroadcastOptions {
        extra: extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

/// `a=ice-ufrag:` of an SDP.
fn ufrag(sdp: &str) -> String {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .unwrap()
        .to_owned()
}

/// A binding request with USERNAME `username` and a MESSAGE-INTEGRITY that is not keyed with
/// the server's password (an attacker who sniffed the username, not the password).
fn forged_binding_request(username: &str) -> Vec<u8> {
    let mut attrs = Vec::new();
    attrs.extend_from_slice(&0x0006u16.to_be_bytes());
    attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
    attrs.extend_from_slice(username.as_bytes());
    while attrs.len() % 4 != 0 {
        attrs.push(0);
    }
    attrs.extend_from_slice(&0x0008u16.to_be_bytes());
    attrs.extend_from_slice(&20u16.to_be_bytes());
    attrs.extend_from_slice(&[0x5a; 20]);
    let mut m = vec![0x00, 0x01];
    m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    m.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
    m.extend_from_slice(&rand::random::<[u8; 12]>());
    m.extend_from_slice(&attrs);
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sniffed_username_without_the_password_takes_over_no_path() {
    let project = Project::new().await;
    let room = project.room("hijack").await;
    let sfu = Broadcast::start(&project).await;
    let alice = project.join(&room, "alice").await;
    let bob = project.join(&room, "bob").await;
    bob.wait_until("bob receives alice", T, |r| receives_from(r, "alice", 10))
        .await
        .unwrap();

    let doc = bob.doc.read().await.unwrap().unwrap();
    let username = format!(
        "{}:{}",
        ufrag(doc["answer"]["sdp"].as_str().unwrap()),
        ufrag(doc["offer"]["sdp"].as_str().unwrap())
    );
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    attacker
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let unknown_before = sfu.stat("droppedUnknownSender").await;
    for _ in 0..5 {
        attacker
            .send_to(&forged_binding_request(&username), sfu.udp)
            .unwrap();
        // Then media "from Bob", which a learned path would route into Bob's peer.
        attacker
            .send_to(&[0x80, 96, 0, 1, 0, 0, 0, 1], sfu.udp)
            .unwrap();
    }
    let mut buf = [0u8; 1500];
    let mut answered = 0;
    for _ in 0..5 {
        if attacker.recv_from(&mut buf).is_ok() {
            answered += 1;
        }
    }
    assert_eq!(answered, 0, "the server answered a forged request");
    common::eventually("the forged requests counted", T, async || {
        (sfu.stat("droppedUnauthenticated").await >= 5).then_some(())
    })
    .await
    .unwrap();
    assert!(
        sfu.stat("droppedUnknownSender").await >= unknown_before + 5,
        "media from the attacker's address was routed to a peer"
    );
    // Bob's own path is untouched: media keeps arriving.
    let before = bob.report().video_from("alice");
    bob.wait_until("bob still receives", T, |r| {
        r.video_from("alice") > before + 20
    })
    .await
    .unwrap();
    alice.leave(Leave::Close).await.unwrap();
    bob.leave(Leave::Close).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_document_releases_its_peer_even_while_ice_stays_up() {
    let project = Project::new().await;
    let room = project.room("deleted").await;
    let sfu = Broadcast::start_with(&project, with(&[("FIRESFU_RECONCILE_SECS", "2")])).await;
    let alice = project.join(&room, "alice").await;
    let bob = project.join(&room, "bob").await;
    alice
        .wait_until("alice receives bob", T, |r| receives_from(r, "bob", 10))
        .await
        .unwrap();
    // Bob deletes his document but his peer connection keeps consent checks going.
    bob.delete_document_only();
    common::eventually("bob's peer released", Duration::from_secs(15), async || {
        (sfu.stat("peers").await == 1 && project.roster(&room).await.len() == 1).then_some(())
    })
    .await
    .unwrap();
    // Alice's slots for Bob went idle.
    alice
        .wait_until("alice's slots idle", T, |r| {
            r.slots.values().all(|s| s.as_deref() != Some("bob"))
        })
        .await
        .unwrap();
    alice.leave(Leave::Close).await.unwrap();
    // The server closed Bob's peer connection: his client sees it die.
    let _ = bob.leave(Leave::Vanish).await;
}

async fn both_connect(project: &Project, room: &str) {
    let alice = project.join(room, "alice").await;
    let bob = project.join(room, "bob").await;
    for (peer, other) in [(&alice, "bob"), (&bob, "alice")] {
        let r = peer
            .wait_until("media both ways", T, |r| receives_from(r, other, 10))
            .await
            .unwrap();
        assert_eq!(r.state.as_deref(), Some("connected"), "{r:#?}");
    }
    alice.leave(Leave::Close).await.unwrap();
    bob.leave(Leave::Close).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_are_answered_after_failed_answer_writes() {
    let project = Project::new().await;
    let room = project.room("flaky-writes").await;
    // Six failures: four retries with backoff, then the sweep of unanswered claims.
    let sfu =
        Broadcast::start_with(&project, with(&[("FIRESFU_FAULT_FAIL_ANSWER_WRITES", "6")])).await;
    both_connect(&project, &room).await;
    assert!(
        sfu.log_text()
            .contains("cannot write to the session (retrying)")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_are_answered_after_failed_claims() {
    let project = Project::new().await;
    let room = project.room("flaky-claims").await;
    let sfu = Broadcast::start_with(&project, with(&[("FIRESFU_FAULT_FAIL_CLAIMS", "6")])).await;
    both_connect(&project, &room).await;
    assert!(sfu.log_text().contains("cannot claim an offer (retrying)"));
}

fn post(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_media_thread_fails_health_and_exits_non_zero() {
    let project = Project::new().await;
    let room = project.room("panic").await;
    let mut sfu = Broadcast::start(&project).await;
    let alice = project.join(&room, "alice").await;
    alice
        .wait_until("connected", T, |r| r.connected)
        .await
        .unwrap();
    let http = sfu.http;
    let reply = tokio::task::spawn_blocking(move || post(http, "/fault/engine-panic"))
        .await
        .unwrap()
        .unwrap();
    assert!(reply.contains("injected"), "{reply}");
    let status = sfu
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("the broadcast kept running with a dead media thread");
    assert!(!status.success(), "exit status {status}");
    assert!(
        sfu.log_text()
            .contains("the media engine stopped unexpectedly"),
        "{}",
        sfu.log_text()
    );
    alice.leave(Leave::Vanish).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_instance_ends_what_its_previous_life_left() {
    let project = Project::new().await;
    let room = project.room("ghosts").await;
    let options = || BroadcastOptions {
        instance: Some("stable-id".into()),
        ..Default::default()
    };
    let mut sfu = Broadcast::start_with(&project, options()).await;
    let mut spec = PeerSpec::new(&room, "ghost");
    spec.follow_wants = false;
    let ghost = Peer::join(&project.db, spec).await.unwrap();
    ghost
        .wait_until("connected", T, |r| r.connected)
        .await
        .unwrap();
    assert_eq!(project.roster(&room).await.len(), 1);
    sfu.kill();
    let _sfu = Broadcast::start_with(&project, options()).await;
    let doc = common::eventually("the old session ended", T, async || {
        let d: Value = ghost.doc.read().await.ok()??;
        (d["state"] == "failed").then_some(d)
    })
    .await
    .unwrap();
    assert_eq!(doc["error"]["code"], "session-lost", "{doc:#}");
    common::eventually("the old roster entry gone", T, async || {
        project.roster(&room).await.is_empty().then_some(())
    })
    .await
    .unwrap();
    ghost.leave(Leave::Vanish).await.unwrap();
}
