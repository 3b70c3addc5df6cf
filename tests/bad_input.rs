//! Every class of bad session document gets its own `error.code`, and the daemon keeps serving.

mod common;

use std::time::Duration;

use common::documents::{good_doc, junk_kinds, sdp_with};
use common::{Broadcast, Project};
use serde_json::{Value, json};
use testpeer::Leave;
use testpeer::firestore::SessionDoc;

const T: Duration = Duration::from_secs(20);

async fn expect_error(
    project: &Project,
    room: &str,
    session: &str,
    doc: Value,
    code: &str,
) -> Value {
    let s = SessionDoc {
        db: project.db.clone(),
        room: room.into(),
        session: session.into(),
    };
    s.write_raw(&doc).await.unwrap();
    let ended = common::eventually(&format!("{session} refused"), T, async || {
        let d = s.read().await.ok()??;
        (d["state"] == "failed").then_some(d)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; the document is {:?}", last_state(&s)));
    assert_eq!(ended["error"]["code"], code, "{session}: {ended:#}");
    assert!(
        ended["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert!(
        ended.get("answer").is_none(),
        "no answer for a refused offer"
    );
    ended
}

fn last_state(s: &SessionDoc) -> Option<Value> {
    let s = s.clone();
    std::thread::spawn(move || {
        tokio::runtime::Runtime::new()
            .ok()?
            .block_on(async { s.read().await.ok()? })
    })
    .join()
    .ok()?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_document_gets_its_own_error_code_and_others_are_still_served() {
    let project = Project::new().await;
    let room = project.room("hostile").await;
    let sfu = Broadcast::start(&project).await;
    let good = sdp_with(&[("audio", "sendonly", "opus"), ("video", "sendonly", "VP8")]);

    // The ten kinds of the burst test (tests/bursts.rs), and more.
    let mut cases = junk_kinds();
    let mut d = good_doc(&good);
    d["displayName"] = json!(7);
    cases.push(("name-number", d, "invalid-document"));
    let mut d = good_doc(&good);
    d["offer"] = json!(good.clone());
    cases.push(("offer-string", d, "invalid-document"));
    let mut d = good_doc(&good);
    d["offer"]["revision"] = json!("1");
    cases.push(("revision-string", d, "invalid-document"));
    cases.push((
        "no-mid",
        good_doc(&good.replace("a=mid:0\r\n", "")),
        "sdp-malformed",
    ));
    cases.push((
        "all-inactive",
        good_doc(&sdp_with(&[("audio", "inactive", "opus")])),
        "no-usable-media",
    ));
    // Sources: an unknown one, and a screen on an audio m-line.
    let mut d = good_doc(&good);
    d["sources"] = json!({"1": "window"});
    cases.push(("source-unknown", d, "invalid-document"));
    let mut d = good_doc(&good);
    d["sources"] = json!({"0": "screen"});
    cases.push(("screen-on-audio", d, "invalid-document"));
    // Names that would spoof other people's interfaces.
    for (session, name) in [("nul-name", "Mal\u{0}lory"), ("bom-name", "\u{FEFF}Bob")] {
        let mut d = good_doc(&good);
        d["displayName"] = json!(name);
        cases.push((session, d, "invalid-document"));
    }

    for (session, doc, code) in cases {
        // `no-room` is an offer for a room that does not exist.
        let room = if session == "no-room" {
            "nowhere"
        } else {
            room.as_str()
        };
        expect_error(&project, room, session, doc, code).await;
    }

    // The daemon is still up and serves a real pair in the same room.
    let a = project.join(&room, "alice").await;
    let b = project.join(&room, "bob").await;
    a.wait_until("media", T, |r| r.video_from("bob") > 5)
        .await
        .unwrap();
    b.wait_until("media", T, |r| r.video_from("alice") > 5)
        .await
        .unwrap();
    assert!(sfu.stats().await.is_ok());
    a.leave(Leave::Close).await.unwrap();
    b.leave(Leave::Close).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_room_refuses_the_next_participant_and_keeps_serving() {
    let project = Project::new().await;
    let room = project.room("small").await;
    let _sfu = Broadcast::start_with(
        &project,
        common::BroadcastOptions {
            extra: vec![("FIRESFU_MAX_ROOM_PARTICIPANTS".into(), "2".into())],
            ..Default::default()
        },
    )
    .await;
    let a = project.join(&room, "alice").await;
    let b = project.join(&room, "bob").await;
    b.wait_until("media", T, |r| r.video_from("alice") > 5)
        .await
        .unwrap();
    let good = sdp_with(&[("audio", "sendonly", "opus"), ("video", "sendonly", "VP8")]);
    let refused = expect_error(&project, &room, "carol", good_doc(&good), "room-full").await;
    assert!(
        refused["error"]["message"].as_str().unwrap().contains('2'),
        "{refused:#}"
    );
    let before = a.report().video_from("bob");
    a.wait_until("media goes on", T, |r| r.video_from("bob") > before + 20)
        .await
        .unwrap();
    a.leave(Leave::Close).await.unwrap();
    b.leave(Leave::Close).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_reoffer_is_refused_without_ending_the_session() {
    let project = Project::new().await;
    let room = project.room("stale").await;
    let _sfu = Broadcast::start(&project).await;
    let a = project.join(&room, "alice").await;
    let b = project.join(&room, "bob").await;
    let before = b
        .wait_until("media", T, |r| r.video_from("alice") > 5)
        .await
        .unwrap();
    let answered = a.report().answered_revision;

    // A re-offer that does not raise the revision (written behind the client's back).
    let current = a.doc.read().await.unwrap().unwrap();
    a.doc
        .update(
            json!({"offer": {"sdp": current["offer"]["sdp"], "revision": answered}, "state": "offered"}),
            &["offer", "state"],
        )
        .await
        .unwrap();
    let refused = common::eventually("stale-revision", T, async || {
        let d = a.doc.read().await.ok()??;
        (d["error"]["code"] == "stale-revision").then_some(d)
    })
    .await
    .unwrap();
    // The session goes on with its previous negotiation.
    assert_eq!(refused["state"], "connected", "{refused:#}");
    assert_eq!(refused["error"]["revision"], answered);
    let later = b
        .wait_until("media goes on", T, |r| {
            r.video_from("alice") > before.video_from("alice") + 20
        })
        .await
        .unwrap();
    assert_eq!(later.corrupt, 0);
    a.leave(Leave::Close).await.unwrap();
    b.leave(Leave::Close).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_receive_field_is_reported_and_pausing_a_slot_stops_its_video() {
    let project = Project::new().await;
    let room = project.room("receive").await;
    let _sfu = Broadcast::start(&project).await;
    let a = project.join(&room, "alice").await;
    let b = project.join(&room, "bob").await;
    b.wait_until("media", T, |r| r.video_from("alice") > 5)
        .await
        .unwrap();

    b.doc
        .update(json!({"receive": {"1": {"maxHeight": -1}}}), &["receive"])
        .await
        .unwrap();
    let refused = common::eventually("receive refused", T, async || {
        let d = b.doc.read().await.ok()??;
        (d["error"]["code"] == "invalid-document").then_some(d)
    })
    .await
    .unwrap();
    assert_eq!(refused["state"], "connected", "{refused:#}");
    assert_eq!(refused["error"]["revision"], Value::Null);
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("maxHeight")
    );

    // Bob pauses every video slot (whatever their mids): Alice's video stops, her audio not.
    let slots = b.doc.read().await.unwrap().unwrap()["slots"].clone();
    let video_mids: serde_json::Map<String, Value> = slots
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, s)| s["kind"] == "video")
        .map(|(mid, _)| (mid.clone(), json!({"maxHeight": 0})))
        .collect();
    assert!(!video_mids.is_empty());
    b.doc
        .update(json!({"receive": video_mids}), &["receive"])
        .await
        .unwrap();
    common::eventually("the report is cleared", T, async || {
        let d = b.doc.read().await.ok()??;
        d["error"].is_null().then_some(())
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let paused = b.report();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = b.report();
    assert!(
        later.video_from("alice") <= paused.video_from("alice") + 1,
        "video went on: {} → {}",
        paused.video_from("alice"),
        later.video_from("alice")
    );
    assert!(later.audio_from("alice") > paused.audio_from("alice") + 20);

    // Resumed: video comes back.
    b.doc
        .update(json!({"receive": {}}), &["receive"])
        .await
        .unwrap();
    b.wait_until("video resumes", T, |r| {
        r.video_from("alice") > later.video_from("alice") + 10
    })
    .await
    .unwrap();
    a.leave(Leave::Close).await.unwrap();
    b.leave(Leave::Close).await.unwrap();
}
