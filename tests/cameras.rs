//! IP cameras in rooms (`firesfu::ingest`): a real RTSP server (GStreamer's, `tests/rtsp/`)
//! pulled by a real broadcast instance, received by str0m participants. The camera documents
//! are written here as the sidecar writes them (`docs/signalling.md` "Cameras").

mod common;

use std::time::{Duration, Instant};

use common::fleet::{Member, Monitor, assigned, fleet_broadcast};
use common::rtsp::{CameraAuth, CameraOptions, RtspCamera, mount};
use common::{Broadcast, BroadcastOptions, Project, eventually, unique};
use firesfu::ingest::documents::{CameraSecret, CameraSourceDoc, RtspTransport};
use firesfu::sealed::SealKey;
use serde_json::{Value, json};
use testpeer::{Leave, Peer, PeerSpec};

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const T: Duration = Duration::from_secs(30);

async fn broadcast(project: &Project) -> Broadcast {
    Broadcast::start_with(
        project,
        BroadcastOptions {
            extra: vec![
                ("FIRESFU_CAMERA_KEY".into(), KEY.into()),
                ("FIRESFU_CAMERA_READ_TIMEOUT_SECS".into(), "3".into()),
                ("FIRESFU_CAMERA_CONNECT_TIMEOUT_SECS".into(), "5".into()),
            ],
            ..Default::default()
        },
    )
    .await
}

/// Adds a camera as the sidecar does: the sealed source and the public document.
async fn add_camera(project: &Project, room: &str, name: &str, secret: &CameraSecret) -> String {
    let id = unique("cam");
    let key = SealKey::from_base64(KEY).unwrap();
    let doc = CameraSourceDoc {
        v: 1,
        room: room.into(),
        name: name.into(),
        enabled: true,
        transport: RtspTransport::Tcp,
        sealed: key.seal(&id, &serde_json::to_vec(secret).unwrap()).unwrap(),
    };
    project
        .db
        .fluent()
        .update()
        .in_col("cameraSources")
        .document_id(&id)
        .object(&doc)
        .execute::<()>()
        .await
        .unwrap();
    project
        .db
        .fluent()
        .update()
        .in_col("cameras")
        .document_id(&id)
        .parent(project.db.parent_path("rooms", room).unwrap())
        .object(&json!({"name": name, "enabled": true, "state": "idle"}))
        .execute::<()>()
        .await
        .unwrap();
    id
}

fn open(url: String) -> CameraSecret {
    CameraSecret {
        url,
        username: None,
        password: None,
    }
}

async fn camera_doc(project: &Project, room: &str, id: &str) -> Value {
    project.camera_doc(room, id).await.unwrap_or(Value::Null)
}

/// Waits until the camera's public document satisfies `ok`; returns it.
async fn until_camera(
    project: &Project,
    room: &str,
    id: &str,
    what: &str,
    within: Duration,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let doc = camera_doc(project, room, id).await;
        if ok(&doc) {
            return doc;
        }
        if Instant::now() > deadline {
            panic!("camera {id}: not {what} within {within:?}; document: {doc}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn state(doc: &Value) -> &str {
    doc["state"].as_str().unwrap_or_default()
}

fn viewer(room: &str, session: &str) -> PeerSpec {
    let mut spec = PeerSpec::new(room, session);
    spec.camera_codecs = true;
    spec.publish_video = false;
    spec
}

/// (video frames, audio frames) `peer` received from the camera `id`.
fn from_camera(peer: &Peer, id: &str) -> (u64, u64) {
    peer.report()
        .received
        .get(&format!("camera-{id}"))
        .map_or((0, 0), |r| (r.video, r.audio))
}

async fn until_frames(peer: &Peer, id: &str, video: u64, audio: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (v, a) = from_camera(peer, id);
        if v >= video && a >= audio {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "from camera {id}: {v} video / {a} audio frames, wanted {video} / {audio}; {:?}",
                peer.report()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn roster_has(project: &Project, room: &str, session: &str) -> bool {
    project
        .roster(room)
        .await
        .iter()
        .any(|d| d.name.ends_with(&format!("/{session}")))
}

/// A camera comes into a room while someone watches, survives its server going away for a
/// while, and is let go when the room empties (and pulled again when someone comes back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_is_pulled_while_someone_watches_and_comes_back_after_an_outage() {
    let mut camera = RtspCamera::start(CameraOptions::default());
    let project = Project::new().await;
    let bc = broadcast(&project).await;
    let room = project.room(&unique("cams")).await;
    let id = add_camera(&project, &room, "Lobby", &open(camera.url(mount::H264))).await;

    // Nobody there: nobody pulls it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(state(&camera_doc(&project, &room, &id).await), "idle");

    let added = Instant::now();
    let alice = Peer::join(&project.db, viewer(&room, "alice"))
        .await
        .unwrap();
    until_frames(&alice, &id, 25, 25, T).await;
    let first = added.elapsed();
    let live = until_camera(&project, &room, &id, "live", T, |d| state(d) == "live").await;
    assert_eq!(
        (live["width"].as_u64(), live["height"].as_u64()),
        (Some(640), Some(360)),
        "{live}"
    );
    assert!(
        live["codec"]
            .as_str()
            .unwrap_or_default()
            .starts_with("avc1.42"),
        "{live}"
    );
    assert_eq!(live["audio"], "PCMU", "{live}");
    assert!(
        roster_has(&project, &room, &format!("camera-{id}")).await,
        "in the roster"
    );
    let slots = alice.report().slots;
    assert!(
        slots
            .values()
            .any(|s| s.as_deref() == Some(&format!("camera-{id}"))),
        "a slot names the camera: {slots:?}"
    );

    // The camera's server goes away for 10 s.
    camera.stop();
    let down = Instant::now();
    let retrying = until_camera(&project, &room, &id, "retrying", T, |d| {
        state(d) == "retrying"
    })
    .await;
    eprintln!(
        "camera down → retrying in {:?}: {}",
        down.elapsed(),
        retrying["error"]
    );
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(down.elapsed())).await;
    camera.start_again();
    let (before, _) = from_camera(&alice, &id);
    until_camera(&project, &room, &id, "live again", T, |d| {
        state(d) == "live"
    })
    .await;
    until_frames(&alice, &id, before + 25, 0, T).await;
    let back = down.elapsed();

    // The room empties: the camera is let go within a few seconds.
    alice.leave(Leave::Close).await.unwrap();
    let left = Instant::now();
    until_camera(&project, &room, &id, "idle", Duration::from_secs(15), |d| {
        state(d) == "idle"
    })
    .await;
    let idle_in = left.elapsed();
    assert!(!roster_has(&project, &room, &format!("camera-{id}")).await);
    // Someone comes back: pulled again.
    let bob = Peer::join(&project.db, viewer(&room, "bob")).await.unwrap();
    until_frames(&bob, &id, 25, 10, T).await;
    eprintln!(
        "added → first 25 frames at a viewer: {first:?}; server stopped 10 s → live and \
         decoding again {back:?} after it stopped; room empty → idle in {idle_in:?}"
    );
    drop(bc);
}

/// Camera state changes reach webhooks (`camera.changed`): each state once, with its error
/// code; during the call they are numbered with the call's events, after it with 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_state_changes_reach_webhooks() {
    use common::webhooks::{Receiver, accepted, endpoint, webhooks_key};
    let camera = RtspCamera::start(CameraOptions::default());
    let project = Project::new().await;
    let receiver = Receiver::start().await;
    let db = common::sidecar::database(None).await;
    let s = common::webhooks::sidecar(&project, db.clone(), 600).await;
    let key = webhooks_key(&db);
    endpoint(&s, &key, &receiver, ("ok", "cams"), &["camera.changed"]).await;
    let _bc = Broadcast::start_with(
        &project,
        BroadcastOptions {
            extra: vec![
                ("FIRESFU_CAMERA_KEY".into(), KEY.into()),
                ("FIRESFU_CAMERA_READ_TIMEOUT_SECS".into(), "3".into()),
                ("FIRESFU_CAMERA_CONNECT_TIMEOUT_SECS".into(), "5".into()),
                ("FIRESFU_EVENTS".into(), "true".into()),
                ("PUBSUB_EMULATOR_HOST".into(), common::fleet::pubsub()),
            ],
            ..Default::default()
        },
    )
    .await;
    let room = project.room(&unique("hooked")).await;
    let lobby = add_camera(&project, &room, "Lobby", &open(camera.url(mount::H264))).await;
    let nowhere = add_camera(
        &project,
        &room,
        "Nowhere",
        &open("rtsp://127.0.0.1:9/none".into()),
    )
    .await;
    let alice = Peer::join(&project.db, viewer(&room, "alice"))
        .await
        .unwrap();
    until_frames(&alice, &lobby, 25, 0, T).await;
    until_camera(&project, &room, &nowhere, "retrying", T, |d| {
        state(d) == "retrying"
    })
    .await;
    alice.leave(Leave::Close).await.unwrap();
    let states = |id: &str| -> Vec<Value> {
        accepted(&receiver, "cams")
            .into_iter()
            .map(|d| d["event"]["data"].clone())
            .filter(|d| d["camera"]["id"] == id)
            .collect()
    };
    let names = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .map(|d| d["state"].as_str().unwrap_or("?").to_owned())
            .collect()
    };
    let lobby_events = eventually("the Lobby idle", T, async || {
        let got = states(&lobby);
        (names(&got).last().map(String::as_str) == Some("idle")).then_some(got)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}", names(&states(&lobby))));
    assert_eq!(names(&lobby_events), ["connecting", "live", "idle"]);
    assert_eq!(lobby_events[1]["camera"]["name"], "Lobby");
    assert!(lobby_events[1]["error"].is_null());
    assert!(
        lobby_events[1]["sequence"].as_u64().unwrap() > 0,
        "in the call"
    );
    assert_eq!(lobby_events[2]["sequence"], 0, "after the call");
    let nowhere_events = eventually("Nowhere idle", T, async || {
        let got = states(&nowhere);
        (names(&got).last().map(String::as_str) == Some("idle")).then_some(got)
    })
    .await
    .unwrap();
    assert_eq!(names(&nowhere_events)[..2], ["connecting", "retrying"]);
    assert_eq!(
        nowhere_events[1]["error"]["code"], "unreachable",
        "{:?}",
        nowhere_events[1]
    );
    assert_eq!(nowhere_events[1]["camera"]["name"], "Nowhere");
}

/// What cannot work says so on the camera's document, each with its own code; the other
/// cameras of the room go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_camera_gets_its_own_code_and_the_room_keeps_working() {
    let camera = RtspCamera::start(CameraOptions::default());
    let locked = RtspCamera::start(CameraOptions::with_auth(CameraAuth::Digest));
    let project = Project::new().await;
    let _bc = broadcast(&project).await;
    let room = project.room(&unique("bad-cams")).await;
    let good = add_camera(&project, &room, "Good", &open(camera.url(mount::H264_MAIN))).await;
    let wrong = CameraSecret {
        url: locked.url(mount::H264),
        username: Some("camera".into()),
        password: Some("not-the-password".into()),
    };
    let right = CameraSecret {
        url: locked.url(mount::H264),
        username: Some("camera".into()),
        password: Some("secret".into()),
    };
    let cases = [
        (
            add_camera(&project, &room, "Wrong password", &wrong).await,
            "failed",
            "unauthorized",
        ),
        (
            add_camera(&project, &room, "H.265", &open(camera.url(mount::H265))).await,
            "failed",
            "unsupported-codec",
        ),
        (
            add_camera(
                &project,
                &room,
                "B-frames",
                &open(camera.url(mount::BFRAMES)),
            )
            .await,
            "failed",
            "b-frames",
        ),
        (
            add_camera(&project, &room, "No such path", &open(camera.url("/nope"))).await,
            "failed",
            "not-found",
        ),
        (
            add_camera(
                &project,
                &room,
                "Not RTSP",
                &open("http://example.invalid/x".into()),
            )
            .await,
            "failed",
            "invalid-url",
        ),
        (
            add_camera(
                &project,
                &room,
                "Nobody there",
                &open(format!("rtsp://127.0.0.1:{}/x", common::free_tcp_port())),
            )
            .await,
            "retrying",
            "unreachable",
        ),
    ];
    let authorized = add_camera(&project, &room, "Right password", &right).await;
    let aac = add_camera(&project, &room, "AAC", &open(camera.url(mount::AAC))).await;

    let alice = Peer::join(&project.db, viewer(&room, "alice"))
        .await
        .unwrap();
    for (id, want_state, want_code) in &cases {
        let doc = until_camera(&project, &room, id, want_state, T, |d| {
            state(d) == *want_state && d["error"]["code"] == *want_code
        })
        .await;
        let message = doc["error"]["message"].as_str().unwrap_or_default();
        assert!(
            !message.is_empty() && !message.contains("not-the-password"),
            "{doc}"
        );
        eprintln!("{want_code}: {message}");
    }
    until_frames(&alice, &good, 50, 25, T).await;
    until_frames(&alice, &authorized, 25, 0, T).await;
    let aac_doc = until_camera(&project, &room, &aac, "live", T, |d| state(d) == "live").await;
    assert_eq!(
        aac_doc["audioError"]["code"], "unsupported-codec",
        "{aac_doc}"
    );
    assert!(aac_doc["audio"].is_null(), "{aac_doc}");
    until_frames(&alice, &aac, 25, 0, T).await;
    assert_eq!(
        from_camera(&alice, &aac).1,
        0,
        "no audio from the AAC camera"
    );
    let report = alice.report();
    assert_eq!(report.corrupt, 0);
    for (id, _, _) in &cases {
        assert_eq!(from_camera(&alice, id), (0, 0));
    }
}

/// The instance serving the room drains (SIGTERM): the participants move to the other one, and
/// the camera with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_instance_hands_its_cameras_over_with_its_rooms() {
    let camera = RtspCamera::start(CameraOptions::default());
    let project = Project::new().await;
    let env = [
        ("FIRESFU_CAMERA_KEY", KEY),
        ("FIRESFU_CAMERA_READ_TIMEOUT_SECS", "3"),
    ];
    let mut instances = [
        fleet_broadcast(&project, "bc-a", &env).await,
        fleet_broadcast(&project, "bc-b", &env).await,
    ];
    let _monitor = Monitor::start(&project, "mon-1", 2000).await;
    let room = project.room(&unique("moving-cams")).await;
    let (first, _) = assigned(&project, &room).await;
    let id = add_camera(&project, &room, "Hall", &open(camera.url(mount::H264))).await;
    let mut alice = Member::join_camera_viewer(&project, &room, "alice").await;
    until_frames(&alice.peer, &id, 25, 10, T).await;
    let live = camera_doc(&project, &room, &id).await;
    assert_eq!(live["instance"], first.as_str(), "{live}");

    let drained = Instant::now();
    let old = instances.iter_mut().find(|b| b.instance == first).unwrap();
    old.signal_term();
    let deadline = Instant::now() + T;
    while alice.moves == 0 {
        alice.follow(&project).await;
        assert!(
            Instant::now() < deadline,
            "alice did not move: {:?}",
            alice.peer.report()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    until_frames(&alice.peer, &id, 25, 10, T).await;
    let took = drained.elapsed();
    let moved = until_camera(&project, &room, &id, "live on the other instance", T, |d| {
        state(d) == "live" && d["instance"] != first.as_str()
    })
    .await;
    let old = instances.iter_mut().find(|b| b.instance == first).unwrap();
    assert!(old.wait_exit(T).await.is_some_and(|s| s.success()));
    eprintln!(
        "drain: SIGTERM → the camera decoded again through the other instance in {took:?} \
         (state {}, on {})",
        moved["state"], moved["instance"]
    );
}

/// The broadcast's CPU over `secs`, in % of one core.
async fn cpu_pct(bc: &Broadcast, secs: u64) -> f64 {
    let ticks = |pid: u32| -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()
    };
    let (t0, c0) = (Instant::now(), ticks(bc.pid()));
    tokio::time::sleep(Duration::from_secs(secs)).await;
    (ticks(bc.pid()) - c0) / t0.elapsed().as_secs_f64()
}

/// A viewer that publishes nothing.
fn quiet_viewer(room: &str) -> PeerSpec {
    let mut spec = viewer(room, "viewer");
    spec.publish_audio = false;
    spec.recv_audio = 1;
    spec.recv_video = 1;
    spec
}

/// `make bench`: the broadcast's CPU per camera stream (pulled over RTSP, repacketized and
/// forwarded to one viewer) next to a person's stream of about the same rate forwarded to one
/// viewer, in the same run: `BENCH_ROOMS` rooms (8) of each, `BENCH_SECONDS` (20) each.
/// Prints one line `CAMERA-BENCH {json}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: make bench"]
async fn camera_benchmark() {
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (rooms, secs) = (env("BENCH_ROOMS", 8) as usize, env("BENCH_SECONDS", 20));
    // About a person's rate: the str0m publisher sends 30 × 2500-byte frames a second (600
    // kbit/s) and Opus every 20 ms; the camera 25 frames at 600 kbit/s and PCMU every 20 ms.
    let camera = RtspCamera::start(CameraOptions {
        bitrate_kbps: 600,
        ..CameraOptions::default()
    });
    let project = Project::new().await;
    let bc = broadcast(&project).await;
    let idle = cpu_pct(&bc, 5).await;

    let mut peers = Vec::new();
    for i in 0..rooms {
        let room = project.room(&unique(&format!("people{i}"))).await;
        let mut person = PeerSpec::new(&room, "person");
        person.recv_audio = 0;
        person.recv_video = 0;
        person.follow_wants = false;
        peers.push(Peer::join(&project.db, person).await.unwrap());
        peers.push(Peer::join(&project.db, quiet_viewer(&room)).await.unwrap());
    }
    for viewer in peers.iter().skip(1).step_by(2) {
        eventually("the viewer receives the person", T, async || {
            let r = viewer.report();
            r.received
                .get("person")
                .is_some_and(|m| m.video >= 30)
                .then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}: {:?}", viewer.report()));
    }
    let people = cpu_pct(&bc, secs).await;
    for p in peers.drain(..) {
        p.leave(Leave::Close).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut viewers = Vec::new();
    for i in 0..rooms {
        let room = project.room(&unique(&format!("cameras{i}"))).await;
        let id = add_camera(&project, &room, "Bench", &open(camera.url(mount::H264))).await;
        let peer = Peer::join(&project.db, quiet_viewer(&room)).await.unwrap();
        viewers.push((id, peer));
    }
    for (id, peer) in &viewers {
        until_frames(peer, id, 25, 25, T).await;
    }
    let cameras = cpu_pct(&bc, secs).await;
    let per_person = (people - idle) / rooms as f64;
    let per_camera = (cameras - idle) / rooms as f64;
    println!(
        "CAMERA-BENCH {}",
        json!({
            "rooms": rooms, "seconds": secs, "idleCpuPct": idle,
            "peopleCpuPct": people, "camerasCpuPct": cameras,
            "cpuPctPerPersonStream": per_person, "cpuPctPerCameraStream": per_camera,
            "cameraOverPerson": per_camera / per_person,
        })
    );
    for (_, peer) in viewers {
        peer.leave(Leave::Close).await.unwrap();
    }
    drop(bc);
}
