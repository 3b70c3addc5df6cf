//! Firestore listeners replay documents; the server must act on document state so that a
//! replayed event never produces a second answer.

mod common;

use std::time::Duration;

use common::{Broadcast, BroadcastOptions, Project};
use serde_json::{Value, json};
use testpeer::firestore::SessionDoc;
use testpeer::{Leave, Peer, PeerSpec};

const T: Duration = Duration::from_secs(20);

/// Every distinct `answer` a document ever showed, from a listener of our own.
async fn watch_answers(
    doc: &SessionDoc,
) -> (
    tokio::task::JoinHandle<Vec<Value>>,
    testpeer::firestore::Listener,
) {
    let (mut rx, listener) = doc.listen().await.unwrap();
    let task = tokio::spawn(async move {
        let mut answers: Vec<Value> = Vec::new();
        while let Some(snapshot) = rx.recv().await {
            if let Some(a) = snapshot.as_ref().and_then(|s| s.get("answer"))
                && answers.last() != Some(a)
            {
                answers.push(a.clone());
            }
        }
        answers
    });
    (task, listener)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_events_never_produce_a_second_answer() {
    let project = Project::new().await;
    let room = project.room("echo").await;
    let sfu = Broadcast::start(&project).await;

    let mut spec = PeerSpec::new(&room, "solo");
    spec.follow_wants = false;
    let solo = Peer::join(&project.db, spec).await.unwrap();
    let (answers, listener) = watch_answers(&solo.doc).await;
    solo.wait_until("connected", T, |r| r.state.as_deref() == Some("connected"))
        .await
        .unwrap();

    // Churn in the server's listener targets: the emulator replays every document of a target
    // after each change, so `solo`'s document is re-delivered dozens of times.
    for i in 0..30 {
        let noise = SessionDoc {
            db: project.db.clone(),
            room: "no-such-room".into(),
            session: format!("noise{i}"),
        };
        noise
            .write_raw(&json!({"v": 1, "displayName": "n", "offer": {"sdp": "v=0", "revision": 1}, "state": "offered"}))
            .await
            .unwrap();
    }
    let last_noise = SessionDoc {
        db: project.db.clone(),
        room: "no-such-room".into(),
        session: "noise29".into(),
    };
    common::eventually("noise handled", T, async || {
        let d = last_noise.read().await.ok()??;
        (d["state"] == "failed").then_some(())
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let r = solo.report();
    assert_eq!(r.answered_revision, 1);
    assert_eq!(r.state.as_deref(), Some("connected"));
    common::eventually("stats", T, async || {
        (sfu.stat("negotiations").await == 1).then_some(())
    })
    .await
    .unwrap_or_else(|_| panic!("one offer, one negotiation; stats {:?}", 0));
    listener.stop().await;
    let seen = answers.await.unwrap();
    assert_eq!(seen.len(), 1, "the answer was written once: {seen:#?}");
    solo.leave(Leave::Close).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_instance_answers_pending_offers_once_and_reports_lost_sessions() {
    let project = Project::new().await;
    let room = project.room("phoenix").await;
    let options = || BroadcastOptions {
        instance: Some("bc-phoenix".into()),
        ..Default::default()
    };
    let mut first = Broadcast::start_with(&project, options()).await;

    let mut spec = PeerSpec::new(&room, "before");
    spec.follow_wants = false;
    let before = Peer::join(&project.db, spec).await.unwrap();
    before
        .wait_until("connected", T, |r| r.state.as_deref() == Some("connected"))
        .await
        .unwrap();

    // The instance dies without a word; an offer arrives while it is down.
    first.kill();
    let mut spec = PeerSpec::new(&room, "during");
    spec.follow_wants = false;
    let during = Peer::join(&project.db, spec).await.unwrap();
    let (answers, listener) = watch_answers(&during.doc).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(during.report().answered_revision, 0);

    // Same instance id again: its listener replays everything from scratch.
    let second = Broadcast::start_with(&project, options()).await;
    during
        .wait_until("answered after restart", T, |r| {
            r.state.as_deref() == Some("connected")
        })
        .await
        .unwrap();
    let lost = common::eventually("session-lost", T, async || {
        let d = before.doc.read().await.ok()??;
        (d["state"] == "failed").then_some(d)
    })
    .await
    .unwrap();
    assert_eq!(lost["error"]["code"], "session-lost");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        second.stat("negotiations").await,
        1,
        "only the pending offer was answered"
    );
    listener.stop().await;
    assert_eq!(answers.await.unwrap().len(), 1);
    during.leave(Leave::Close).await.unwrap();
    before.leave(Leave::Vanish).await.unwrap();
}
