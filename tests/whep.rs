//! WHEP playback through `firesfu sidecar`, against the Firestore emulator, a real PostgreSQL
//! and a real `firesfu broadcast` verifying the sidecar's join tokens. The viewers are str0m
//! (testpeer's endpoint, not the server's stack) offering recvonly audio and video without
//! candidates, as WHEP players do; the publishers join through the session documents.

mod common;

use std::time::{Duration, Instant};

use common::Project;
use common::bridge::{Client, Reply, broadcast, offer_to, send};
use common::sidecar::{Sidecar, SidecarOptions, database};
use serde_json::{Value, json};
use testpeer::endpoint::MediaSpec;
use testpeer::{Leave, Peer, PeerSpec, VideoSource};

const T: Duration = Duration::from_secs(20);

/// What a WHEP player offers: receiving only.
fn player(tag: &str) -> MediaSpec {
    MediaSpec {
        tag: tag.into(),
        publish_audio: false,
        publish_video: false,
        video: VideoSource::Tagged { frame_bytes: 2500 },
        video_delay: Duration::ZERO,
        remb: None,
        camera_codecs: false,
    }
}

async fn watch(s: &Sidecar, path: &str, token: Option<&str>) -> (Reply, Option<Client>) {
    let (reply, _, client) = offer_to(s, path, token, player("player"), (1, 1)).await;
    (reply, client)
}

/// A participant publishing tagged audio and video, admitted by the sidecar's join token.
async fn publisher(project: &Project, s: &Sidecar, access: &str, room: &str, who: &str) -> Peer {
    let (status, join) = s
        .call(
            "POST",
            &format!("/v1/rooms/{room}/join"),
            Some(access),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200, "{join}");
    let mut spec = PeerSpec::new(room, who);
    spec.token = join["token"].as_str().map(str::to_owned);
    spec.uid = join["firebase"]["uid"].as_str().map(str::to_owned);
    (spec.recv_audio, spec.recv_video) = (0, 0);
    spec.follow_wants = false;
    Peer::join(&project.db, spec).await.unwrap()
}

/// A sidecar, a broadcast, Ada's access token and her room, with Ada publishing in it.
async fn stage(project: &Project) -> (Sidecar, common::Broadcast, String, String, Peer) {
    let s = Sidecar::start(project, database(None).await, SidecarOptions::default()).await;
    let sfu = broadcast(project, &s, &[]).await;
    let (ada, _) = s.user("ada").await;
    let room = s.room(&ada, "Stage").await;
    let ada_peer = publisher(project, &s, &ada, &room, "ada").await;
    ada_peer
        .wait_until("connected", T, |r| r.connected)
        .await
        .unwrap();
    (s, sfu, ada, room, ada_peer)
}

async fn session_doc(project: &Project, room: &str, session: &str) -> Option<Value> {
    project
        .db
        .fluent()
        .select()
        .by_id_in("sessions")
        .parent(project.db.parent_path("rooms", room).unwrap())
        .obj()
        .one(session)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whep_player_watches_one_participant_or_the_presenter() {
    let project = Project::new().await;
    // Ada joins first (the presenter below is the first to join).
    let (s, _sfu, _, room, ada_peer) = stage(&project).await;
    let (bo, _) = s.user("bob").await;
    let (eve, _) = s.user("eve").await;
    let bo_peer = publisher(&project, &s, &bo, &room, "bo").await;
    bo_peer
        .wait_until("connected", T, |r| r.connected)
        .await
        .unwrap();

    // A player watching Bo gets Bo's video and voice, nobody else's.
    let started = Instant::now();
    let (reply, bo_view) = watch(
        &s,
        &format!("/whep/v1/rooms/{room}/participants/bo"),
        Some(&eve),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.header("content-type"), "application/sdp");
    let location = reply.header("location").to_owned();
    let prefix = format!("/whep/v1/rooms/{room}/sessions/");
    let viewer = location
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{location}"))
        .to_owned();
    assert!(viewer.starts_with("whep-"), "{viewer}");
    assert!(!reply.header("etag").is_empty());
    let bo_view = bo_view.unwrap();
    let r = bo_view
        .wait("Bo's audio and video", |r| {
            r.video_from("bo") > 25 && r.audio_from("bo") > 25 && r.corrupt == 0
        })
        .await;
    assert_eq!((r.video_from("ada"), r.audio_from("ada")), (0, 0), "{r:#?}");
    let doc = session_doc(&project, &room, &viewer).await.unwrap();
    assert_eq!(doc["watch"], "bo");
    assert_eq!(doc["media"], json!({"audio": false, "video": false}));
    assert_eq!(doc["state"], "connected", "{doc:#}");

    // The presenter: nobody shares a screen and str0m sends no audio levels (nobody speaks),
    // so it is the first to join who publishes video: Ada.
    let (reply, stage) = watch(&s, &format!("/whep/v1/rooms/{room}/presenter"), Some(&eve)).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let stage = stage.unwrap();
    let r = stage
        .wait("Ada on the presenter endpoint", |r| {
            r.video_from("ada") > 25 && r.audio_from("ada") > 25
        })
        .await;
    assert_eq!(r.video_from("bo"), 0, "{r:#?}");
    // Ada leaves: the presenter's player switches to Bo without a new offer.
    ada_peer.leave(Leave::Close).await.unwrap();
    stage
        .wait("Bo on the presenter endpoint", |r| {
            r.video_from("bo") > 25 && r.audio_from("bo") > 25
        })
        .await;

    // Bo leaves: the session watching him ends with `watched-gone`.
    bo_peer.leave(Leave::Close).await.unwrap();
    let ended = common::eventually("the viewer of Bo ends", T, async || {
        let d = session_doc(&project, &room, &viewer).await?;
        (d["state"] == "closed").then_some(d)
    })
    .await
    .unwrap();
    assert_eq!(ended["error"]["code"], "watched-gone", "{ended:#}");

    // DELETE ends the presenter's player; the resource is gone after.
    let stage_location = reply.header("location").to_owned();
    let stage_session = stage_location.rsplit('/').next().unwrap().to_owned();
    let gone = send(&s, "DELETE", &stage_location, Some(&eve), None, &[], "").await;
    assert_eq!(gone.status, 200, "{}", gone.body);
    let d = session_doc(&project, &room, &stage_session).await.unwrap();
    assert_eq!(d["state"], "closed");
    send(&s, "DELETE", &stage_location, Some(&eve), None, &[], "")
        .await
        .problem(404, "not-found");
    bo_view.stop().await;
    stage.stop().await;
    println!("WHEP POST → 201 in {} ms", took.as_millis());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whep_errors_have_their_statuses() {
    let project = Project::new().await;
    let (s, _sfu, ada, room, ada_peer) = stage(&project).await;
    let endpoint = format!("/whep/v1/rooms/{room}/participants/ada");

    // Preflight: CORS and Accept-Post.
    let pre = send(
        &s,
        "OPTIONS",
        &endpoint,
        None,
        None,
        &[("origin", "https://player.example")],
        "",
    )
    .await;
    assert_eq!(pre.status, 204);
    assert_eq!(pre.header("accept-post"), "application/sdp");
    assert_eq!(pre.header("access-control-allow-origin"), "*");

    // Nobody by that id, no such room: 404; no bearer: 401 with the challenge.
    let (r, _) = watch(
        &s,
        &format!("/whep/v1/rooms/{room}/participants/nobody"),
        Some(&ada),
    )
    .await;
    r.problem(404, "not-found");
    let other = uuid::Uuid::new_v4();
    let (r, _) = watch(&s, &format!("/whep/v1/rooms/{other}/presenter"), Some(&ada)).await;
    r.problem(404, "not-found");
    let (r, _) = watch(&s, &endpoint, None).await;
    r.problem(401, "unauthorized");
    assert!(r.header("www-authenticate").starts_with("Bearer"));
    let (r, _) = watch(&s, &endpoint, Some("not-a-token")).await;
    r.problem(401, "unauthorized");
    // Not SDP, or an offer that publishes.
    let r = send(
        &s,
        "POST",
        &endpoint,
        Some(&ada),
        Some("text/plain"),
        &[],
        "v=0",
    )
    .await;
    r.problem(415, "unsupported-media-type");
    let mut publishing = player("p");
    (publishing.publish_audio, publishing.publish_video) = (true, true);
    let (r, _, _) = offer_to(&s, &endpoint, Some(&ada), publishing, (0, 0)).await;
    r.problem(422, "recvonly-required");
    // Nothing was left behind: the only session of the room is Ada's.
    let docs = project
        .db
        .fluent()
        .select()
        .from("sessions")
        .parent(project.db.parent_path("rooms", &room).unwrap())
        .query()
        .await
        .unwrap();
    assert_eq!(docs.len(), 1, "{docs:#?}");
    ada_peer.leave(Leave::Close).await.unwrap();
}
