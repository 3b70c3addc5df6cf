//! Participants joining through the Firestore emulator with str0m peers: who receives whom,
//! with every payload checked byte for byte.

mod common;

use std::time::Duration;

use common::{Broadcast, Project};
use testpeer::{Leave, Peer, PeerSpec};

const T: Duration = Duration::from_secs(20);

/// (mid, direction) of every m-line.
fn directions(sdp: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in sdp.lines() {
        if line.starts_with("m=") {
            out.push((String::new(), String::new()));
        } else if let (Some(last), Some(mid)) = (out.last_mut(), line.strip_prefix("a=mid:")) {
            last.0 = mid.to_owned();
        } else if let Some(last) = out.last_mut()
            && matches!(
                line,
                "a=sendonly" | "a=recvonly" | "a=sendrecv" | "a=inactive"
            )
        {
            last.1 = line[2..].to_owned();
        }
    }
    out
}

/// Waits until the server's downlink estimate toward `session` is `bps` (its REMB).
async fn estimate_is(sfu: &Broadcast, session: &str, bps: u64) {
    common::eventually("the REMB as the estimate", T, async || {
        let stats = sfu.stats().await.ok()?;
        let estimate = stats["downlinks"]
            .as_array()?
            .iter()
            .find(|d| d["session"] == session)?["estimateBps"]
            .as_u64()?;
        (estimate == bps).then_some(())
    })
    .await
    .unwrap();
}

fn receives_from(r: &testpeer::Report, tag: &str, frames: u64) -> bool {
    r.video_from(tag) >= frames && r.audio_from(tag) >= frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_participants_exchange_audio_and_video() {
    let project = Project::new().await;
    let room = project.room("duo").await;
    let sfu = Broadcast::start(&project).await;

    let alice = project.join(&room, "alice").await;
    let mut bob_spec = PeerSpec::new(&room, "bob");
    (bob_spec.recv_audio, bob_spec.recv_video) = (1, 1);
    let bob = Peer::join(&project.db, bob_spec).await.unwrap();

    // A new subscriber triggers a keyframe request (PLI) to the publisher it receives.
    let a = alice
        .wait_until("alice receives bob", T, |r| {
            receives_from(r, "bob", 20) && r.keyframe_requests >= 1
        })
        .await
        .unwrap();
    let b = bob
        .wait_until("bob receives alice", T, |r| {
            receives_from(r, "alice", 20) && r.keyframe_requests >= 1
        })
        .await
        .unwrap();

    // Alice offered no receive slot: she learned from `wants` and re-offered (revision 2).
    assert_eq!(a.answered_revision, 2, "{a:#?}");
    assert_eq!(a.recv_slots, (1, 1));
    assert_eq!(b.answered_revision, 1);
    for r in [&a, &b] {
        assert_eq!(r.corrupt, 0, "damaged frames: {r:#?}");
        assert_eq!(r.state.as_deref(), Some("connected"));
        assert!(r.error.is_none());
        assert_eq!(r.wants, (1, 1));
    }
    // The answer is JSEP-correct: what Bob sends is answered recvonly, his receive slots
    // sendonly; ICE-lite with one host candidate on the instance's port.
    let doc = bob.doc.read().await.unwrap().unwrap();
    let offer = directions(doc["offer"]["sdp"].as_str().unwrap());
    let answer_sdp = doc["answer"]["sdp"].as_str().unwrap();
    let answer = directions(answer_sdp);
    assert_eq!(offer.len(), answer.len());
    for ((mid, offered), (answered_mid, answered)) in offer.iter().zip(&answer) {
        assert_eq!(mid, answered_mid);
        let expected = match offered.as_str() {
            "sendonly" => "recvonly",
            "recvonly" => "sendonly",
            other => panic!("testpeer offered {other}"),
        };
        assert_eq!(answered, expected, "mid {mid}: {answer_sdp}");
    }
    assert!(answer_sdp.contains("a=ice-lite"));
    let candidate = format!("127.0.0.1 {} typ host", sfu.udp.port());
    assert!(
        answer_sdp
            .lines()
            .any(|l| l.starts_with("a=candidate:") && l.contains(&candidate)),
        "{answer_sdp}"
    );

    // `slots` names the participant whose payload actually arrives on each mid.
    for (mid, tag) in &a.mid_sources {
        assert_eq!(a.slots.get(mid), Some(&Some(tag.clone())));
    }
    assert_eq!(a.mid_sources.values().filter(|t| *t == "bob").count(), 2);

    // The roster lists both with their tracks.
    let roster = project.roster(&room).await;
    assert_eq!(roster.len(), 2);

    // The server's counters (refreshed every second) show the forwarding.
    common::eventually("forwarding counters", T, async || {
        (sfu.stat("rtpForwarded").await > 80).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(sfu.stat("droppedCodecMismatch").await, 0);
    alice.leave(Leave::Close).await.unwrap();
    bob.leave(Leave::Close).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_participants_each_receive_both_others_and_a_late_joiner_is_received() {
    let project = Project::new().await;
    let room = project.room("trio").await;
    let _sfu = Broadcast::start(&project).await;

    let a = project.join(&room, "ann").await;
    let b = project.join(&room, "ben").await;
    a.wait_until("ann receives ben", T, |r| receives_from(r, "ben", 10))
        .await
        .unwrap();
    b.wait_until("ben receives ann", T, |r| receives_from(r, "ann", 10))
        .await
        .unwrap();

    // Cid joins later: the earlier two re-offer for more slots and receive her too.
    let c = project.join(&room, "cid").await;
    for (peer, others) in [
        (&a, ["ben", "cid"]),
        (&b, ["ann", "cid"]),
        (&c, ["ann", "ben"]),
    ] {
        let r = peer
            .wait_until("both others", T, |r| {
                others.iter().all(|o| receives_from(r, o, 10))
            })
            .await
            .unwrap();
        assert_eq!(r.corrupt, 0);
        assert_eq!(r.wants, (2, 2));
        assert_eq!(r.recv_slots, (2, 2));
    }
    let ra = a.report();
    assert!(
        ra.answered_revision >= 2,
        "ann re-offered after cid joined: {ra:#?}"
    );

    for p in [a, b, c] {
        p.leave(Leave::Close).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_who_leave_stop_being_received() {
    let project = Project::new().await;
    let room = project.room("leavers").await;
    let sfu = Broadcast::start(&project).await;

    let a = project.join(&room, "stay").await;
    let b = project.join(&room, "closer").await;
    let c = project.join(&room, "deleter").await;
    a.wait_until("all", T, |r| {
        receives_from(r, "closer", 10) && receives_from(r, "deleter", 10)
    })
    .await
    .unwrap();

    // One leaves by writing `closed`, the other by deleting its document.
    let closed = b.doc.clone();
    b.leave(Leave::Close).await.unwrap();
    c.leave(Leave::Delete).await.unwrap();

    let r = a
        .wait_until("slots go idle", T, |r| {
            !r.slots.values().any(|s| s.is_some())
        })
        .await
        .unwrap();
    let frozen = (r.video_from("closer"), r.video_from("deleter"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let later = a.report();
    assert_eq!(
        (later.video_from("closer"), later.video_from("deleter")),
        frozen
    );
    assert_eq!(later.wants, (0, 0));

    // The server released both peers and removed them from the roster.
    common::eventually("peers released", T, async || {
        (sfu.stat("peers").await == 1).then_some(())
    })
    .await
    .unwrap();
    let roster = project.roster(&room).await;
    assert_eq!(roster.len(), 1, "{roster:?}");
    let doc = closed.read().await.unwrap().unwrap();
    assert_eq!(doc["state"], "closed");
    a.leave(Leave::Close).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_goes_silent_is_closed_with_peer_timeout() {
    let project = Project::new().await;
    let room = project.room("silence").await;
    let sfu = Broadcast::start_with(
        &project,
        common::BroadcastOptions {
            peer_timeout_secs: 2,
            ..Default::default()
        },
    )
    .await;
    let a = project.join(&room, "ghost").await;
    a.wait_until("connected", T, |r| r.state.as_deref() == Some("connected"))
        .await
        .unwrap();
    let doc = a.doc.clone();
    a.leave(Leave::Vanish).await.unwrap();
    let ended = common::eventually("peer-timeout", T, async || {
        let d = doc.read().await.ok()??;
        (d["state"] == "closed").then_some(d)
    })
    .await
    .unwrap();
    assert_eq!(ended["error"]["code"], "peer-timeout");
    assert_eq!(sfu.stat("peers").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_ice_mode_also_connects() {
    let project = Project::new().await;
    let room = project.room("full-ice").await;
    let sfu = Broadcast::start_with(
        &project,
        common::BroadcastOptions {
            extra: vec![("FIRESFU_ICE_LITE".into(), "false".into())],
            ..Default::default()
        },
    )
    .await;
    let a = project.join(&room, "full-a").await;
    let b = project.join(&room, "full-b").await;
    let ra = a
        .wait_until("media", T, |r| receives_from(r, "full-b", 10))
        .await
        .unwrap();
    b.wait_until("media", T, |r| receives_from(r, "full-a", 10))
        .await
        .unwrap();
    let doc = a.doc.read().await.unwrap().unwrap();
    assert!(
        !doc["answer"]["sdp"]
            .as_str()
            .unwrap()
            .contains("a=ice-lite")
    );
    assert_eq!(ra.corrupt, 0);
    assert_eq!(sfu.stat("droppedUnknownSender").await, 0);
    a.leave(Leave::Close).await.unwrap();
    b.leave(Leave::Close).await.unwrap();
}

/// Lip sync through the SFU: the publisher's video leaves 200 ms after its capture time (an
/// encoder's delay) while its sender reports say when it was captured. The subscriber maps
/// both streams to capture time through the server's sender reports: audio and video must
/// agree within 40 ms. Sender reports made from forwarding times would put video 200 ms late.
/// Retransmissions go on an RTX stream: the answer groups each video slot's SSRC with one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_reports_keep_audio_and_video_in_sync() {
    let project = Project::new().await;
    let room = project.room("lipsync").await;
    let sfu = Broadcast::start(&project).await;

    let mut spec = PeerSpec::new(&room, "speaker");
    spec.video_delay = Duration::from_millis(200);
    let speaker = Peer::join(&project.db, spec).await.unwrap();
    let mut spec = PeerSpec::new(&room, "viewer");
    (spec.publish_audio, spec.publish_video) = (false, false);
    (spec.recv_audio, spec.recv_video) = (1, 1);
    let viewer = Peer::join(&project.db, spec).await.unwrap();

    // Browsers send a sender report about every second per stream, as does str0m: several
    // reports on each side make the offset settle.
    let r = viewer
        .wait_until(
            "a/v offset from sender reports",
            Duration::from_secs(30),
            |r| {
                r.received
                    .get("speaker")
                    .and_then(|s| s.sync.av_offset_ms(120))
                    .is_some()
            },
        )
        .await
        .unwrap();
    let offset = r.received["speaker"].sync.av_offset_ms(120).unwrap();
    eprintln!("a/v offset at the subscriber: {offset:.1} ms");
    assert!(
        offset.abs() < 40.0,
        "video plays {offset:.1} ms after the audio captured with it"
    );
    assert!(sfu.stat("senderReportsTranslated").await > 0);
    assert_eq!(r.corrupt, 0);

    let doc = viewer.doc.read().await.unwrap().unwrap();
    let answer = doc["answer"]["sdp"].as_str().unwrap();
    assert!(
        answer.lines().any(|l| l.starts_with("a=ssrc-group:FID ")),
        "{answer}"
    );
    speaker.leave(Leave::Close).await.unwrap();
    viewer.leave(Leave::Close).await.unwrap();
}

/// A subscriber whose offer has no transport-wide congestion control (no `transport-cc`
/// extension) and whose REMB says 60 kbit/s: the REMB is its downlink estimate, so its video
/// slot is paused (the publisher sends ≈ 600 kbit/s) while audio keeps arriving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remb_is_the_estimate_of_a_subscriber_without_transport_cc() {
    let project = Project::new().await;
    let room = project.room("remb").await;
    let sfu = Broadcast::start(&project).await;

    let publisher = project.join(&room, "pub").await;
    let mut spec = PeerSpec::new(&room, "remb-viewer");
    (spec.publish_audio, spec.publish_video) = (false, false);
    (spec.recv_audio, spec.recv_video) = (1, 1);
    spec.remb = Some(60_000);
    let viewer = Peer::join(&project.db, spec).await.unwrap();

    estimate_is(&sfu, "remb-viewer", 60_000).await;
    let doc = viewer.doc.read().await.unwrap().unwrap();
    let offer = doc["offer"]["sdp"].as_str().unwrap();
    assert!(!offer.contains("transport-wide-cc"), "{doc:#}");
    // Give the allocation a moment to act on it, then watch: audio flows, video does not.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = viewer.report();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = viewer.report();
    let audio = after.audio_from("pub") - before.audio_from("pub");
    let video = after.video_from("pub") - before.video_from("pub");
    eprintln!("in 3 s at a 60 kbit/s REMB: {audio} audio frames, {video} video frames");
    assert!(audio >= 100, "audio stalled: {audio} frames in 3 s");
    assert!(video <= 3, "video kept flowing: {video} frames in 3 s");
    assert!(sfu.stat("slotsConstrained").await >= 1);
    publisher.leave(Leave::Close).await.unwrap();
    viewer.leave(Leave::Close).await.unwrap();
}

/// Pacing: the publisher sends a 100 kB frame (a keyframe's burst, ≈ 85 packets at once) every
/// second. A subscriber whose estimate is 3 Mbit/s (its REMB) receives each such frame spread
/// at ≈ 7.5 Mbit/s (2.5 × the estimate) over ≈ 110 ms; one without an estimate at 20 Mbit/s
/// over ≈ 40 ms. Unpaced, both got it within a few milliseconds of loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyframe_bursts_are_paced_toward_subscribers() {
    let project = Project::new().await;
    let room = project.room("pacing").await;
    let sfu = Broadcast::start(&project).await;

    let mut spec = PeerSpec::new(&room, "pub");
    spec.video = testpeer::VideoSource::Keyframes {
        frame_bytes: 2500,
        keyframe_bytes: 100_000,
        every: 30,
    };
    let publisher = Peer::join(&project.db, spec).await.unwrap();
    let viewer = |session: &str, remb: Option<u64>| {
        let mut spec = PeerSpec::new(&room, session);
        (spec.publish_audio, spec.publish_video) = (false, false);
        (spec.recv_audio, spec.recv_video) = (1, 1);
        spec.remb = remb;
        spec
    };
    let slow = Peer::join(&project.db, viewer("slow", Some(3_000_000)))
        .await
        .unwrap();
    let fast = Peer::join(&project.db, viewer("fast", None)).await.unwrap();

    // Wait for the estimate, then for three big frames received after it.
    estimate_is(&sfu, "slow", 3_000_000).await;
    let skip = slow.report().bursts.len();
    let slow_r = slow
        .wait_until("three paced big frames", T, |r| r.bursts.len() >= skip + 3)
        .await
        .unwrap();
    let fast_r = fast
        .wait_until("three big frames", T, |r| r.bursts.len() >= 3)
        .await
        .unwrap();
    let spreads = |r: &testpeer::Report, skip: usize| -> Vec<(u32, u128)> {
        r.bursts[skip..]
            .iter()
            .map(|(n, d)| (*n, d.as_millis()))
            .collect()
    };
    let (slow_b, fast_b) = (
        spreads(&slow_r, skip),
        spreads(&fast_r, fast_r.bursts.len() - 3),
    );
    eprintln!(
        "big frames (packets, first-to-last ms): estimate 3 Mbit/s {slow_b:?}, none {fast_b:?}"
    );
    for (n, ms) in &slow_b {
        assert!(*n >= 80, "{slow_b:?}");
        assert!((70..=260).contains(ms), "paced at 7.5 Mbit/s: {slow_b:?}");
    }
    for (_, ms) in &fast_b {
        assert!((20..=100).contains(ms), "paced at 20 Mbit/s: {fast_b:?}");
    }
    // Nothing lost on the way: every frame arrives whole (the payloads are checked).
    assert_eq!(slow_r.corrupt + fast_r.corrupt, 0);
    assert!(slow_r.video_from("pub") >= 60 && fast_r.video_from("pub") >= 60);
    for p in [publisher, slow, fast] {
        p.leave(Leave::Close).await.unwrap();
    }
}
