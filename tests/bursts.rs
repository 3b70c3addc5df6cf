//! Bursts: many documents at once, as a hostile or broken client writes them, while real
//! people are in a call (docs/reliability.md). Each test states its bounds.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::documents::{good_doc, junk_kinds, sdp_with};
use common::{Broadcast, Project, eventually};
use futures::StreamExt;
use serde_json::Value;
use testpeer::Leave;
use testpeer::firestore::SessionDoc;

const T: Duration = Duration::from_secs(60);

/// Samples `peer`'s video from `from` every 10 ms until `stop`; returns the longest time
/// without a new frame.
fn longest_gap(
    peer: Arc<testpeer::Peer>,
    from: &'static str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Duration> {
    tokio::spawn(async move {
        let (mut frames, mut since, mut longest) = (0, Instant::now(), Duration::ZERO);
        while !stop.load(Ordering::Relaxed) {
            let now = peer.report().video_from(from);
            if now > frames {
                longest = longest.max(since.elapsed());
                (frames, since) = (now, Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        longest.max(since.elapsed())
    })
}

/// 500 junk session documents of 10 kinds (50 each, across 10 rooms) are written at once while
/// a pair is in a call on the same instance: every one gets its own error code, the pair's
/// video never pauses for more than 500 ms, and the instance's memory is back near where it
/// was once the burst is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_junk_documents_each_get_their_code_and_the_call_goes_on() {
    const GAP_BOUND: Duration = Duration::from_millis(500);
    let project = Project::new().await;
    let call = project.room("call").await;
    let mut rooms = Vec::new();
    for i in 0..10 {
        rooms.push(project.room(&format!("junk-{i}")).await);
    }
    let sfu = Broadcast::start(&project).await;
    let alice = Arc::new(project.join(&call, "alice").await);
    let bob = Arc::new(project.join(&call, "bob").await);
    bob.wait_until("video", T, |r| r.video_from("alice") > 30)
        .await
        .unwrap();
    let baseline = sfu.rss_kib();

    let stop = Arc::new(AtomicBool::new(false));
    let gap = longest_gap(bob.clone(), "alice", stop.clone());
    let kinds = junk_kinds();
    let docs: Vec<(SessionDoc, Value, &str)> = (0..500)
        .map(|i| {
            let (kind, doc, code) = &kinds[i % kinds.len()];
            let room = if *kind == "no-room" {
                format!("nowhere-{}", i % 10)
            } else {
                rooms[i % 10].clone()
            };
            let s = SessionDoc {
                db: project.db.clone(),
                room,
                session: format!("{kind}-{i}"),
            };
            (s, doc.clone(), *code)
        })
        .collect();
    let started = Instant::now();
    futures::stream::iter(docs.iter())
        .map(|(s, doc, _)| async move { s.write_raw(doc).await.unwrap() })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    let written = started.elapsed();
    let mut peak = sfu.rss_kib();
    // Every document ends `failed` with its code.
    let mut pending: Vec<&(SessionDoc, Value, &str)> = docs.iter().collect();
    let deadline = Instant::now() + T;
    while !pending.is_empty() {
        peak = peak.max(sfu.rss_kib());
        let reads = futures::stream::iter(pending.iter())
            .map(|d| async move { d.0.read().await.ok().flatten() })
            .buffered(16)
            .collect::<Vec<Option<Value>>>()
            .await;
        let mut still = Vec::new();
        for (d, doc) in pending.into_iter().zip(reads) {
            match doc {
                Some(doc) if doc["state"] == "failed" => {
                    assert_eq!(doc["error"]["code"], d.2, "{}: {doc:#}", d.0.session)
                }
                _ => still.push(d),
            }
        }
        pending = still;
        assert!(
            Instant::now() < deadline,
            "{} documents still without their error after {T:?}, e.g. {}",
            pending.len(),
            pending[0].0.session
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drained = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let gap = gap.await.unwrap();
    // Memory settles (allocator arenas keep some of what the burst used).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = sfu.rss_kib();
    eprintln!(
        "500 junk documents written in {written:?}, all refused with their codes {drained:?} \
         after the first; longest pause of the pair's video {gap:?}; RSS {} → peak {} → {} MiB",
        baseline / 1024,
        peak / 1024,
        after / 1024
    );
    assert!(gap < GAP_BOUND, "the call paused for {gap:?}");
    assert!(
        after < baseline + 16 * 1024,
        "memory did not come back: {baseline} → {after} KiB"
    );
    for p in [alice, bob] {
        if let Ok(p) = Arc::try_unwrap(p) {
            let _ = p.leave(Leave::Close).await;
        }
    }
}

/// 200 sessions open and leave: 100 offers deleted or closed before or right after their answer,
/// and 100 str0m participants that connect and then close or delete their documents. Within
/// 10 s of the last leave the instance holds no peer and the room's roster is empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_sessions_open_and_leave_and_nothing_stays() {
    const BOUND: Duration = Duration::from_secs(10);
    let project = Project::new().await;
    let room = project.room("churn").await;
    let sfu = Broadcast::start(&project).await;
    let offer = good_doc(&sdp_with(&[
        ("audio", "sendonly", "opus"),
        ("video", "sendonly", "VP8"),
    ]));
    let started = Instant::now();
    // Offers that leave at once: deleted, or closed.
    futures::stream::iter(0..100)
        .map(|i| {
            let (db, room, offer) = (project.db.clone(), room.clone(), offer.clone());
            async move {
                let s = SessionDoc {
                    db,
                    room,
                    session: format!("flash-{i}"),
                };
                s.write_raw(&offer).await.unwrap();
                if i % 2 == 0 {
                    s.delete().await.unwrap();
                } else {
                    s.close().await.unwrap();
                }
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    // Participants that connect, then leave, twenty at a time.
    let mut connected = 0;
    for wave in 0..5 {
        let peers = futures::stream::iter(0..20)
            .map(|i| {
                let (project, room) = (&project, &room);
                async move { project.join(room, &format!("p{wave}-{i}")).await }
            })
            .buffer_unordered(20)
            .collect::<Vec<testpeer::Peer>>()
            .await;
        for p in &peers {
            p.wait_until("connected", T, |r| r.connected).await.unwrap();
            connected += 1;
        }
        futures::stream::iter(peers.into_iter().enumerate())
            .map(|(i, p)| async move {
                let how = if i % 2 == 0 {
                    Leave::Close
                } else {
                    Leave::Delete
                };
                p.leave(how).await.unwrap();
            })
            .buffer_unordered(20)
            .collect::<Vec<()>>()
            .await;
    }
    let left = Instant::now();
    let empty = eventually("no peer and an empty roster", BOUND, async || {
        let peers = sfu.stats().await.ok()?["peers"].as_u64()?;
        (peers == 0 && project.roster(&room).await.is_empty()).then(|| left.elapsed())
    })
    .await;
    let Ok(empty) = empty else {
        let roster: Vec<String> = project
            .roster(&room)
            .await
            .iter()
            .map(|d| d.name.rsplit('/').next().unwrap_or_default().to_owned())
            .collect();
        panic!(
            "{:?}: {} peers, {} roster entries: {roster:?}",
            empty.err(),
            sfu.stat("peers").await,
            roster.len(),
        );
    };
    eprintln!(
        "200 sessions opened and left ({connected} of them connected first) in {:?}; no peer \
         and an empty roster {empty:?} after the last leave",
        left - started
    );
}
