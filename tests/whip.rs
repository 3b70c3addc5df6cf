//! WHIP ingest (RFC 9725) through `firesfu sidecar`, against the Firestore emulator, a real
//! PostgreSQL and a real `firesfu broadcast`. The WHIP client is str0m (testpeer's endpoint, not
//! the server's stack) offering as OBS does: sendonly audio and video, no candidates. Another
//! participant joins through the session documents and must receive it.

mod common;

use std::time::{Duration, Instant};

use common::Project;
use common::bridge::{Client, Reply, broadcast, offer_to, send};
use common::documents::sdp_with;
use common::sidecar::{Sidecar, SidecarOptions, database};
use firesfu::jointoken::{AUDIENCE, Grants, ISSUER, JoinClaims, SigningKey};
use serde_json::{Value, json};
use testpeer::endpoint::MediaSpec;
use testpeer::{Leave, Peer, PeerSpec, VideoSource};

const T: Duration = Duration::from_secs(20);
// The sidecar's join key in the error test, so that the test can sign an expired token.
const KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----\n";

async fn post(s: &Sidecar, room: &str, token: Option<&str>, sdp: &str) -> Reply {
    let path = format!("/whip/v1/rooms/{room}");
    send(
        s,
        "POST",
        &path,
        token,
        Some("application/sdp"),
        &[],
        sdp.to_owned(),
    )
    .await
}

/// Offers as OBS does (sendonly audio and video, no candidates: an ICE-lite server learns the
/// client's address from its checks), POSTs the offer, and on 201 applies the answer and sends.
async fn publish(
    s: &Sidecar,
    room: &str,
    token: &str,
    tag: &str,
) -> (Reply, String, Option<Client>) {
    let spec = MediaSpec {
        tag: tag.into(),
        publish_audio: true,
        publish_video: true,
        video: VideoSource::Tagged { frame_bytes: 2500 },
        video_delay: Duration::ZERO,
        remb: None,
        camera_codecs: false,
    };
    let path = format!("/whip/v1/rooms/{room}");
    offer_to(s, &path, Some(token), spec, (0, 0)).await
}

async fn sidecar(project: &Project, options: SidecarOptions) -> Sidecar {
    Sidecar::start(project, database(None).await, options).await
}

async fn join_token(s: &Sidecar, token: &str, room: &str, body: Value) -> String {
    let (status, join) = s
        .call(
            "POST",
            &format!("/v1/rooms/{room}/join"),
            Some(token),
            Some(body),
        )
        .await;
    assert_eq!(status, 200, "{join}");
    join["token"].as_str().unwrap().to_owned()
}

/// The room's WHIP session documents.
async fn whip_docs(project: &Project, room: &str) -> Vec<Value> {
    let docs = project
        .db
        .fluent()
        .select()
        .from("sessions")
        .parent(project.db.parent_path("rooms", room).unwrap())
        .query()
        .await
        .unwrap();
    docs.iter()
        .filter(|d| d.name.rsplit('/').next().unwrap().starts_with("whip-"))
        .map(|d| firestore::FirestoreDb::deserialize_doc_to::<Value>(d).unwrap())
        .collect()
}

/// No WHIP session of the room is left open, in Firestore or in PostgreSQL; returns how many
/// documents there are (ended ones).
async fn nothing_open(project: &Project, pg: &sqlx::PgPool, room: &str) -> usize {
    let docs = whip_docs(project, room).await;
    for d in &docs {
        assert!(
            matches!(d["state"].as_str(), Some("closed" | "failed")),
            "a WHIP session is left open: {d:#}"
        );
    }
    let (rows,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM whip_sessions WHERE room_id = $1::uuid")
            .bind(room)
            .fetch_one(pg)
            .await
            .unwrap();
    assert_eq!(rows, 0, "a WHIP session row is left");
    docs.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whip_publisher_is_seen_and_heard_in_the_room_until_it_deletes_its_session() {
    let project = Project::new().await;
    let s = sidecar(&project, SidecarOptions::default()).await;
    let _sfu = broadcast(&project, &s, &[]).await;
    let (ada, user) = s.user("ada").await;
    let (bob, bob_user) = s.user("bob").await;
    let room = s.room(&ada, "Stage").await;
    let endpoint = format!("/whip/v1/rooms/{room}");

    // CORS preflight, and GET (no representation).
    let preflight = [
        ("origin", "https://studio.example"),
        ("access-control-request-method", "POST"),
        (
            "access-control-request-headers",
            "authorization, content-type",
        ),
    ];
    let pre = send(&s, "OPTIONS", &endpoint, None, None, &preflight, "").await;
    assert_eq!(pre.status, 204);
    assert_eq!(pre.header("accept-post"), "application/sdp");
    assert_eq!(pre.header("access-control-allow-origin"), "*");
    assert!(pre.header("access-control-allow-methods").contains("POST"));
    assert!(
        pre.header("access-control-allow-headers")
            .contains("Authorization")
    );
    assert_eq!(
        send(&s, "GET", &endpoint, None, None, &[], "").await.status,
        204
    );

    // The publisher signs in with its access token: the sidecar mints its join token.
    let started = Instant::now();
    let (reply, offer, publisher) = publish(&s, &room, &ada, "whip-cam").await;
    let took = started.elapsed();
    assert_eq!(reply.status, 201, "{}", reply.body);
    let publisher = publisher.unwrap();
    assert_eq!(reply.header("content-type"), "application/sdp");
    assert!(reply.body.starts_with("v=0\r\n"));
    assert!(reply.body.contains("a=ice-lite") && reply.body.contains("a=candidate:"));
    let location = reply.header("location").to_owned();
    let session = location
        .strip_prefix(&format!("{endpoint}/sessions/"))
        .unwrap_or_else(|| panic!("Location {location:?} is not an absolute path under {endpoint}"))
        .to_owned();
    assert!(session.starts_with("whip-"), "{session}");
    let etag = reply.header("etag").to_owned();
    assert!(
        etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"'),
        "{etag}"
    );
    assert!(
        reply
            .header("access-control-expose-headers")
            .contains("Location")
    );
    publisher
        .wait("the WHIP client connects", |r| r.connected)
        .await;

    // Its session document is an ordinary one: the user's uid, name and publish-only token.
    let doc = common::eventually("the session connected", T, async || {
        let d = whip_docs(&project, &room).await.into_iter().next()?;
        (d["state"] == "connected").then_some(d)
    })
    .await
    .unwrap();
    assert_eq!(doc["uid"], user["firebaseUid"]);
    assert_eq!(doc["displayName"], "ada");
    assert_eq!(doc["offer"]["revision"], 1);
    assert_eq!(doc["offer"]["sdp"], offer.as_str());
    assert!(!offer.contains("a=candidate"), "offered without candidates");
    assert_eq!(doc["media"], json!({"audio": true, "video": true}));

    // Someone joining through the documents receives it, and sees it in the roster.
    let mut spec = PeerSpec::new(&room, "viewer");
    spec.token = Some(join_token(&s, &bob, &room, json!({"publish": false})).await);
    spec.uid = Some(bob_user["firebaseUid"].as_str().unwrap().to_owned());
    (spec.publish_audio, spec.publish_video) = (false, false);
    (spec.recv_audio, spec.recv_video) = (1, 1);
    let viewer = Peer::join(&project.db, spec).await.unwrap();
    let r = viewer
        .wait_until("the WHIP publisher's media", T, |r| {
            r.audio_from("whip-cam") > 25 && r.video_from("whip-cam") > 25 && r.corrupt == 0
        })
        .await
        .unwrap();
    assert!(
        r.slots
            .values()
            .any(|p| p.as_deref() == Some(session.as_str())),
        "{r:#?}"
    );
    let roster = project.roster(&room).await;
    let entry = roster
        .iter()
        .find(|d| d.name.ends_with(&format!("/{session}")))
        .expect("the WHIP publisher is in the roster");
    let entry: Value = firestore::FirestoreDb::deserialize_doc_to(entry).unwrap();
    assert_eq!(entry["displayName"], "ada");
    let kinds: Vec<&str> = entry["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["audio", "video"], "{entry:#}");

    // Trickled candidates are acknowledged (the ICE-lite server needs none); If-Match rules.
    let ufrag = offer
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .unwrap();
    let fragment = format!(
        "a=ice-ufrag:{ufrag}\r\na=ice-pwd:whatever\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\n\
         a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\na=end-of-candidates\r\n"
    );
    let frag = Some("application/trickle-ice-sdpfrag");
    let patch =
        async |token: Option<&str>, ty: Option<&str>, if_match: Option<&str>, body: &str| {
            let headers: Vec<(&str, &str)> =
                if_match.map(|v| ("if-match", v)).into_iter().collect();
            send(&s, "PATCH", &location, token, ty, &headers, body.to_owned()).await
        };
    let ok = patch(Some(&ada), frag, Some(&etag), &fragment).await;
    assert_eq!((ok.status, ok.body.as_str()), (204, ""));
    patch(Some(&ada), frag, None, &fragment)
        .await
        .problem(428, "precondition-required");
    patch(Some(&ada), frag, Some("\"another\""), &fragment)
        .await
        .problem(412, "precondition-failed");
    patch(Some(&ada), Some("text/plain"), Some(&etag), &fragment)
        .await
        .problem(415, "unsupported-media-type");
    // A restart must bring new credentials.
    patch(Some(&ada), frag, Some("*"), &fragment)
        .await
        .problem(422, "ice-credentials-required");
    // Only the token that created the session may change or end it.
    patch(Some(&bob), frag, Some(&etag), &fragment)
        .await
        .problem(403, "forbidden");
    let stranger = send(&s, "DELETE", &location, Some(&bob), None, &[], "").await;
    stranger.problem(403, "forbidden");
    let anonymous = send(&s, "DELETE", &location, None, None, &[], "").await;
    anonymous.problem(401, "unauthorized");
    assert!(anonymous.header("www-authenticate").starts_with("Bearer"));

    // An ICE restart (RFC 9725 §4.3.2): the client's new credentials re-offer the session, the
    // PATCH answers the server's new ones with a new ETag, the client applies them to its
    // remote description, and media goes on over the new ICE session.
    let (new_offer, answer_to) = publisher.restart_ice().await;
    let creds = |sdp: &str, what: &str| {
        sdp.lines()
            .find_map(|l| l.strip_prefix(what))
            .unwrap()
            .trim()
            .to_owned()
    };
    let (new_ufrag, new_pwd) = (
        creds(&new_offer, "a=ice-ufrag:"),
        creds(&new_offer, "a=ice-pwd:"),
    );
    assert_ne!(new_ufrag, ufrag);
    let asked = format!(
        "a=ice-ufrag:{new_ufrag}\r\na=ice-pwd:{new_pwd}\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n"
    );
    let restarted = patch(Some(&ada), frag, Some("*"), &asked).await;
    assert_eq!(restarted.status, 200, "{}", restarted.body);
    assert_eq!(
        restarted.header("content-type"),
        "application/trickle-ice-sdpfrag"
    );
    let new_etag = restarted.header("etag").to_owned();
    assert!(new_etag.len() > 2 && new_etag != etag, "{new_etag}");
    let (server_ufrag, server_pwd) = (
        creds(&restarted.body, "a=ice-ufrag:"),
        creds(&restarted.body, "a=ice-pwd:"),
    );
    let old_server_ufrag = creds(&reply.body, "a=ice-ufrag:");
    assert_ne!(server_ufrag, old_server_ufrag, "{}", restarted.body);
    assert!(
        restarted.body.contains("a=candidate:"),
        "{}",
        restarted.body
    );
    let old_server_pwd = creds(&reply.body, "a=ice-pwd:");
    let new_answer = reply
        .body
        .replace(&old_server_ufrag, &server_ufrag)
        .replace(&old_server_pwd, &server_pwd);
    answer_to.send(new_answer).unwrap();
    let doc = &whip_docs(&project, &room).await[0];
    assert_eq!(
        (
            doc["offer"]["revision"].as_i64(),
            doc["answer"]["revision"].as_i64()
        ),
        (Some(2), Some(2)),
        "{doc:#}"
    );
    assert!(doc["offer"]["sdp"].as_str().unwrap().contains(&new_ufrag));
    // The old ETag names the old ICE session now.
    patch(Some(&ada), frag, Some(&etag), &fragment)
        .await
        .problem(412, "precondition-failed");
    let before = viewer.report().video_from("whip-cam");
    viewer
        .wait_until("media after the ICE restart", T, |r| {
            r.video_from("whip-cam") > before + 50
        })
        .await
        .unwrap();

    // DELETE ends it: the document is closed and the publisher leaves the roster.
    let gone = send(&s, "DELETE", &location, Some(&ada), None, &[], "").await;
    assert_eq!(gone.status, 200, "{}", gone.body);
    assert_eq!(whip_docs(&project, &room).await[0]["state"], "closed");
    let left = common::eventually("the roster without the publisher", T, async || {
        let roster = project.roster(&room).await;
        (!roster
            .iter()
            .any(|d| d.name.ends_with(&format!("/{session}"))))
        .then_some(())
    })
    .await;
    assert!(left.is_ok(), "the WHIP publisher is still in the roster");
    viewer
        .wait_until("the viewer's slots go idle", T, |r| {
            !r.slots
                .values()
                .any(|p| p.as_deref() == Some(session.as_str()))
        })
        .await
        .unwrap();
    send(&s, "DELETE", &location, Some(&ada), None, &[], "")
        .await
        .problem(404, "not-found");
    let pg = sqlx::PgPool::connect(&s.db).await.unwrap();
    nothing_open(&project, &pg, &room).await;
    publisher.stop().await;
    viewer.leave(Leave::Close).await.unwrap();
    println!("WHIP POST → 201 in {} ms", took.as_millis());
}

fn claims(room: &str, uid: &str, exp_in: i64) -> JoinClaims {
    let now = firesfu::sidecar::unix_now();
    JoinClaims {
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        sub: uid.into(),
        room: room.into(),
        name: "Late".into(),
        grants: Grants {
            publish: true,
            subscribe: false,
        },
        iat: now - 300,
        exp: now + exp_in,
        jti: uuid::Uuid::new_v4().to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_errors_have_rfc_statuses_and_leave_no_session_open() {
    let project = Project::new().await;
    let s = sidecar(
        &project,
        SidecarOptions {
            join_key_pem: Some(KEY_PEM.into()),
            env: vec![("FIRESFU_WHIP_ANSWER_MS".into(), "2500".into())],
            ..Default::default()
        },
    )
    .await;
    let mut sfu = broadcast(&project, &s, &[("FIRESFU_MAX_ROOM_PARTICIPANTS", "1")]).await;
    let pg = sqlx::PgPool::connect(&s.db).await.unwrap();
    let (ada, user) = s.user("ada").await;
    let uid = user["firebaseUid"].as_str().unwrap().to_owned();
    let main = s.room(&ada, "Main").await;
    let full = s.room(&ada, "Full").await;
    let other = s.room(&ada, "Other").await;
    let good = sdp_with(&[("audio", "sendonly", "opus"), ("video", "sendonly", "VP8")]);

    // Refused before anything is written.
    let bare = post(&s, &main, None, &good).await;
    bare.problem(401, "unauthorized");
    assert!(bare.header("www-authenticate").starts_with("Bearer"));
    post(&s, &main, Some("not-a-token"), &good)
        .await
        .problem(401, "unauthorized");
    let path = format!("/whip/v1/rooms/{main}");
    send(
        &s,
        "POST",
        &path,
        Some(&ada),
        Some("application/json"),
        &[],
        good.clone(),
    )
    .await
    .problem(415, "unsupported-media-type");
    let huge = good.clone() + &"a=x-padding:0123456789abcdef\r\n".repeat(2500);
    post(&s, &main, Some(&ada), &huge)
        .await
        .problem(413, "body-too-large");
    post(&s, &main, Some(&ada), "hello, I am not SDP")
        .await
        .problem(422, "sdp-malformed");
    let unbundled = good.replace("a=group:BUNDLE 0 1\r\n", "");
    post(&s, &main, Some(&ada), &unbundled)
        .await
        .problem(422, "bundle-required");
    post(
        &s,
        "00000000-0000-0000-0000-000000000000",
        Some(&ada),
        &good,
    )
    .await
    .problem(404, "not-found");
    post(&s, "not-a-room", Some(&ada), &good)
        .await
        .problem(404, "not-found");
    let key = SigningKey::from_pem(KEY_PEM).unwrap();
    let expired = key.issue(&claims(&main, &uid, -5)).unwrap();
    post(&s, &main, Some(&expired), &good)
        .await
        .problem(401, "token-expired");
    let elsewhere = join_token(&s, &ada, &other, json!({"subscribe": false})).await;
    post(&s, &main, Some(&elsewhere), &good)
        .await
        .problem(403, "token-wrong-room");
    assert_eq!(
        nothing_open(&project, &pg, &main).await,
        0,
        "nothing written"
    );

    // Refused by the broadcast: mapped from its error code, the document ended.
    let h265 = sdp_with(&[("video", "sendonly", "H265")]);
    post(&s, &main, Some(&ada), &h265)
        .await
        .problem(422, "no-usable-media");
    let listen_only = join_token(&s, &ada, &main, json!({"publish": false})).await;
    post(&s, &main, Some(&listen_only), &good)
        .await
        .problem(403, "token-forbidden");
    assert_eq!(nothing_open(&project, &pg, &main).await, 2);

    // A publish-only join token as the bearer: one session, and DELETE with that token only.
    let once = join_token(&s, &ada, &main, json!({"subscribe": false})).await;
    let created = post(&s, &main, Some(&once), &good).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let location = created.header("location").to_owned();
    send(&s, "DELETE", &location, Some(&ada), None, &[], "")
        .await
        .problem(403, "forbidden");
    let ended = send(&s, "DELETE", &location, Some(&once), None, &[], "").await;
    assert_eq!(ended.status, 200, "{}", ended.body);
    post(&s, &main, Some(&once), &good)
        .await
        .problem(401, "token-reused");
    assert_eq!(nothing_open(&project, &pg, &main).await, 4);

    // One m-line without BUNDLE (GStreamer with a single track): the stack is given a BUNDLE
    // group, the client gets its answer without one.
    let single = sdp_with(&[("audio", "sendonly", "opus")]).replace("a=group:BUNDLE 0\r\n", "");
    assert!(!single.contains("BUNDLE"));
    let alone = post(&s, &other, Some(&ada), &single).await;
    assert_eq!(alone.status, 201, "{}", alone.body);
    assert!(!alone.body.contains("a=group:BUNDLE"), "{}", alone.body);
    assert!(alone.body.contains("m=audio 9 ") && alone.body.contains("a=candidate:"));
    let location = alone.header("location").to_owned();
    let ended = send(&s, "DELETE", &location, Some(&ada), None, &[], "").await;
    assert_eq!(ended.status, 200, "{}", ended.body);

    // A full room (one participant at most here).
    let mut spec = PeerSpec::new(&full, "occupant");
    spec.token = Some(join_token(&s, &ada, &full, json!({})).await);
    spec.uid = Some(uid.clone());
    let occupant = Peer::join(&project.db, spec).await.unwrap();
    occupant
        .wait_until("the occupant connects", T, |r| r.connected)
        .await
        .unwrap();
    post(&s, &full, Some(&ada), &good)
        .await
        .problem(409, "room-full");
    assert_eq!(nothing_open(&project, &pg, &full).await, 1);
    occupant.leave(Leave::Close).await.unwrap();

    // Nobody answers: 503 with Retry-After after the deadline, and the document is closed.
    sfu.kill();
    let started = Instant::now();
    let late = post(&s, &other, Some(&ada), &good).await;
    let waited = started.elapsed();
    late.problem(503, "no-answer");
    assert_eq!(late.header("retry-after"), "2");
    assert!(
        waited >= Duration::from_millis(2500) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
    assert_eq!(nothing_open(&project, &pg, &other).await, 2);
    for doc in whip_docs(&project, &other).await {
        assert_eq!(doc["state"], "closed", "{doc:#}");
    }
}

/// `make bench`: POST → 201 and POST → connected over `BENCH_PUBLISHES` (40) WHIP publishes one
/// after another into a room, each ended with DELETE, against the
/// build in FIRESFU_TEST_BIN (make bench: the release build). Prints one line `WHIP-BENCH {json}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: make bench"]
async fn whip_benchmark() {
    let n: usize = std::env::var("BENCH_PUBLISHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let project = Project::new().await;
    let s = sidecar(&project, SidecarOptions::default()).await;
    let _sfu = broadcast(&project, &s, &[]).await;
    let (ada, _) = s.user("ada").await;
    let room = s.room(&ada, "Bench").await;
    let (mut created, mut connected) = (Vec::new(), Vec::new());
    for i in 0..n {
        let started = Instant::now();
        let (reply, _, publisher) = publish(&s, &room, &ada, &format!("bench-{i}")).await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        created.push(started.elapsed().as_secs_f64() * 1000.0);
        let publisher = publisher.unwrap();
        publisher
            .wait("the publisher connects", |r| r.connected)
            .await;
        connected.push(started.elapsed().as_secs_f64() * 1000.0);
        let location = reply.header("location").to_owned();
        publisher.stop().await;
        let gone = send(&s, "DELETE", &location, Some(&ada), None, &[], "").await;
        assert_eq!(gone.status, 200, "{}", gone.body);
    }
    let pct = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v[((p / 100.0) * (v.len() - 1) as f64).round() as usize]
    };
    println!(
        "WHIP-BENCH {}",
        serde_json::json!({
            "n": n,
            "postTo201P50": pct(&mut created, 50.0),
            "postTo201P95": pct(&mut created, 95.0),
            "postTo201Max": pct(&mut created, 100.0),
            "postToConnectedP50": pct(&mut connected, 50.0),
            "postToConnectedP95": pct(&mut connected, 95.0),
        })
    );
}
