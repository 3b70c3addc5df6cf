//! `firesfu sidecar` against a real PostgreSQL and the Firestore emulator; join tokens checked
//! by a real `firesfu broadcast` with str0m peers.

mod common;

use std::time::Duration;

use common::sidecar::{OwnCluster, Sidecar, SidecarOptions, assert_problem, database};
use common::{Broadcast, BroadcastOptions, Project};
use firesfu::jointoken::{AUDIENCE, Grants, ISSUER, JoinClaims, SigningKey};
use serde_json::{Value, json};
use testpeer::{Leave, Peer, PeerSpec};

const T: Duration = Duration::from_secs(20);
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, 0x49, 0x48, 0x44, 0x52, 0, 0, 0,
    1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1f, 0x15, 0xc4, 0x89, 0, 0, 0, 0x0a, 0x49, 0x44, 0x41, 0x54,
    0x78, 0x9c, 0x63, 0, 1, 0, 0, 5, 0, 1, 0x0d, 0x0a, 0x2d, 0xb4, 0, 0, 0, 0, 0x49, 0x45, 0x4e,
    0x44, 0xae, 0x42, 0x60, 0x82,
];
// An Ed25519 key for tests that sign their own join tokens.
const KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----\n";

fn no_options() -> SidecarOptions {
    SidecarOptions::default()
}

async fn sidecar(project: &Project, options: SidecarOptions) -> Sidecar {
    Sidecar::start(project, database(None).await, options).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_rooms_and_images_behave_and_fail_precisely() {
    let project = Project::new().await;
    let s = sidecar(&project, no_options()).await;
    let creds = json!({"username": "ada", "password": "correct horse battery"});
    assert_eq!(
        s.call("POST", "/v1/accounts", None, Some(creds.clone()))
            .await
            .0,
        201
    );
    assert_problem(
        &s.call("POST", "/v1/accounts", None, Some(creds.clone()))
            .await,
        409,
        "username-taken",
    );
    assert_problem(
        &s.call(
            "POST",
            "/v1/accounts",
            None,
            Some(json!({"username": "x", "password": "correct horse battery"})),
        )
        .await,
        400,
        "validation-failed",
    );
    assert_problem(
        &s.call(
            "POST",
            "/v1/accounts",
            None,
            Some(json!({"username": "bob", "password": "short"})),
        )
        .await,
        400,
        "validation-failed",
    );
    assert_problem(
        &s.call(
            "POST",
            "/v1/sessions",
            None,
            Some(json!({"username": "ada", "password": "wrong password!"})),
        )
        .await,
        401,
        "invalid-credentials",
    );
    assert_problem(
        &s.call(
            "POST",
            "/v1/sessions",
            None,
            Some(json!({"username": "nobody", "password": "wrong password!"})),
        )
        .await,
        401,
        "invalid-credentials",
    );

    // Malformed, unsupported and oversized bodies.
    let raw = s
        .http
        .post(s.url("/v1/accounts"))
        .header("content-type", "application/json")
        .body("{\"username\":")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    assert_eq!(raw.headers()["content-type"], "application/problem+json");
    let text = s
        .http
        .post(s.url("/v1/accounts"))
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), 415);
    let huge = json!({"username": "ada", "password": "x".repeat(20_000)});
    assert_problem(
        &s.call("POST", "/v1/sessions", None, Some(huge)).await,
        413,
        "body-too-large",
    );
    assert_problem(
        &s.call(
            "POST",
            "/v1/accounts",
            None,
            Some(json!({"username": "ada", "password": "correct horse battery", "admin": true})),
        )
        .await,
        400,
        "malformed-body",
    );

    let (token, user) = s.user("grace").await;
    assert_eq!(
        s.call("GET", "/v1/me", Some(&token), None).await.1["username"],
        "grace"
    );
    assert_problem(
        &s.call("GET", "/v1/me", None, None).await,
        401,
        "unauthorized",
    );
    assert_problem(
        &s.call("GET", "/v1/me", Some("forged"), None).await,
        401,
        "unauthorized",
    );

    // Images: the seeded set, an upload, refused uploads.
    let (_, images) = s.call("GET", "/v1/images", Some(&token), None).await;
    let seeded: Vec<&Value> = images["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["seeded"] == true)
        .collect();
    assert!(seeded.len() >= 6);
    let svg = s
        .http
        .get(s.url(seeded[0]["url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    assert!(svg.text().await.unwrap().starts_with("<svg"));
    let upload = |body: Vec<u8>, ty: &'static str| {
        s.http
            .post(s.url("/v1/images?name=Dot"))
            .bearer_auth(&token)
            .header("content-type", ty)
            .body(body)
            .send()
    };
    let up = upload(PNG.to_vec(), "image/png").await.unwrap();
    assert_eq!(up.status(), 201);
    let uploaded: Value = up.json().await.unwrap();
    let fetched = s
        .http
        .get(s.url(uploaded["url"].as_str().unwrap()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&fetched[..], PNG, "the bytes come back from PostgreSQL");
    assert_eq!(
        upload(b"<svg onload=alert(1)/>".to_vec(), "image/png")
            .await
            .unwrap()
            .status(),
        415
    );
    assert_eq!(
        upload(vec![0x89; 600 * 1024], "image/png")
            .await
            .unwrap()
            .status(),
        413
    );

    // Rooms.
    let room = s
        .call(
            "POST",
            "/v1/rooms",
            Some(&token),
            Some(json!({"name": "Standup", "imageId": seeded[1]["id"]})),
        )
        .await;
    assert_eq!(room.0, 201, "{}", room.1);
    let id = room.1["id"].as_str().unwrap().to_owned();
    assert_eq!(room.1["imageUrl"], seeded[1]["url"]);
    assert_eq!(room.1["owner"]["id"], user["id"]);
    let doc = project
        .db
        .fluent()
        .select()
        .by_id_in("rooms")
        .one(&id)
        .await
        .unwrap();
    assert!(
        doc.is_some(),
        "the room exists in Firestore for broadcast instances"
    );
    // The presenter limit: 1 by default, changed by the owner, in the room document too.
    assert_eq!(room_fields(&project, &id).await["maxPresenters"], 1);
    let limit = s
        .call(
            "PATCH",
            &format!("/v1/rooms/{id}"),
            Some(&token),
            Some(json!({"maxPresenters": 0})),
        )
        .await;
    assert_eq!((limit.0, limit.1["maxPresenters"].clone()), (200, json!(0)));
    assert_eq!(room_fields(&project, &id).await["maxPresenters"], 0);
    assert_problem(
        &s.call(
            "PATCH",
            &format!("/v1/rooms/{id}"),
            Some(&token),
            Some(json!({"maxPresenters": 17})),
        )
        .await,
        400,
        "validation-failed",
    );
    let (_, list) = s.call("GET", "/v1/rooms", Some(&token), None).await;
    assert_eq!(list["rooms"][0]["participants"], 0);
    let renamed = s
        .call(
            "PATCH",
            &format!("/v1/rooms/{id}"),
            Some(&token),
            Some(json!({"name": "Daily", "imageId": uploaded["id"]})),
        )
        .await;
    assert_eq!(
        (renamed.0, renamed.1["name"].clone()),
        (200, json!("Daily"))
    );
    assert_problem(
        &s.call(
            "PATCH",
            &format!("/v1/rooms/{id}"),
            Some(&token),
            Some(json!({"imageId": "00000000-0000-0000-0000-000000000000"})),
        )
        .await,
        400,
        "validation-failed",
    );
    assert_problem(
        &s.call(
            "GET",
            "/v1/rooms/00000000-0000-0000-0000-000000000000",
            Some(&token),
            None,
        )
        .await,
        404,
        "not-found",
    );
    assert_problem(
        &s.call("GET", "/v1/rooms/not-a-uuid", Some(&token), None)
            .await,
        404,
        "not-found",
    );

    // Another user cannot change or delete it.
    let (other, _) = s.user("mallory").await;
    assert_problem(
        &s.call(
            "PATCH",
            &format!("/v1/rooms/{id}"),
            Some(&other),
            Some(json!({"name": "Mine"})),
        )
        .await,
        403,
        "forbidden",
    );
    assert_problem(
        &s.call("DELETE", &format!("/v1/rooms/{id}"), Some(&other), None)
            .await,
        403,
        "forbidden",
    );
    assert_eq!(
        s.call("DELETE", &format!("/v1/rooms/{id}"), Some(&token), None)
            .await
            .0,
        204
    );
    assert!(
        project
            .db
            .fluent()
            .select()
            .by_id_in("rooms")
            .one(&id)
            .await
            .unwrap()
            .is_none()
    );

    // Logging out revokes the token.
    assert_eq!(
        s.call("DELETE", "/v1/sessions/current", Some(&token), None)
            .await
            .0,
        204
    );
    assert_problem(
        &s.call("GET", "/v1/me", Some(&token), None).await,
        401,
        "unauthorized",
    );

    // Guessing a password is rate-limited per username.
    let mut last = (0, Value::Null);
    for _ in 0..6 {
        last = s
            .call(
                "POST",
                "/v1/sessions",
                None,
                Some(json!({"username": "grace", "password": "not the password"})),
            )
            .await;
    }
    assert_problem(&last, 429, "rate-limited");
}

fn claims(room: &str, uid: &str, exp_in: i64) -> JoinClaims {
    let now = firesfu::sidecar::unix_now();
    JoinClaims {
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        sub: uid.into(),
        room: room.into(),
        name: "Forger".into(),
        grants: Grants {
            publish: true,
            subscribe: true,
        },
        iat: now - 700,
        exp: now + exp_in,
        jti: uuid::Uuid::new_v4().to_string(),
    }
}

/// A room document as the broadcast instances read it.
async fn room_fields(project: &Project, id: &str) -> Value {
    let doc: Option<Value> = project
        .db
        .fluent()
        .select()
        .by_id_in("rooms")
        .obj()
        .one(id)
        .await
        .unwrap();
    doc.expect("the room document exists")
}

async fn joined(s: &Sidecar, token: &str, room: &str) -> Value {
    let (status, join) = s
        .call("POST", &format!("/v1/rooms/{room}/join"), Some(token), None)
        .await;
    assert_eq!(status, 200, "{join}");
    join
}

/// A peer that uses a join token; returns its document's final `error.code` or "connected".
async fn outcome(
    project: &Project,
    room: &str,
    session: &str,
    uid: &str,
    token: Option<String>,
    publish: bool,
) -> String {
    let mut spec = PeerSpec::new(room, session);
    (
        spec.token,
        spec.uid,
        spec.follow_wants,
        spec.publish_audio,
        spec.publish_video,
    ) = (token, Some(uid.into()), false, publish, publish);
    spec.recv_audio = 1;
    let peer = Peer::join(&project.db, spec).await.unwrap();
    let r = peer
        .wait_until("decided", T, |r| {
            r.connected || matches!(r.state.as_deref(), Some("failed"))
        })
        .await
        .unwrap();
    let result = if r.connected {
        "connected".to_owned()
    } else {
        r.error.clone().unwrap().0
    };
    peer.leave(Leave::Close).await.unwrap();
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_admits_valid_join_tokens_and_refuses_bad_ones_with_their_codes() {
    let project = Project::new().await;
    let s = sidecar(
        &project,
        SidecarOptions {
            join_key_pem: Some(KEY_PEM.into()),
            ..Default::default()
        },
    )
    .await;
    let jwks = s.url("/.well-known/jwks.json");
    let _sfu = Broadcast::start_with(
        &project,
        BroadcastOptions {
            extra: vec![
                ("FIRESFU_JWKS_URL".into(), jwks),
                ("FIRESFU_DEV_NO_AUTH".into(), "false".into()),
            ],
            ..Default::default()
        },
    )
    .await;
    let (token, user) = s.user("ada").await;
    let uid = user["firebaseUid"].as_str().unwrap().to_owned();
    let room = s
        .call(
            "POST",
            "/v1/rooms",
            Some(&token),
            Some(json!({"name": "Ops"})),
        )
        .await
        .1["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = s
        .call(
            "POST",
            "/v1/rooms",
            Some(&token),
            Some(json!({"name": "Other"})),
        )
        .await
        .1["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // A real token is admitted and the room's live count shows the participant.
    let good = joined(&s, &token, &room).await;
    assert_eq!(good["firebase"], json!({"uid": uid, "emulator": true}));
    let join_token = good["token"].as_str().unwrap().to_owned();
    let mut spec = PeerSpec::new(&room, "ok");
    (spec.token, spec.uid) = (Some(join_token.clone()), Some(uid.clone()));
    let peer = Peer::join(&project.db, spec).await.unwrap();
    let r = peer
        .wait_until("connected", T, |r| {
            r.connected && r.state.as_deref() == Some("connected")
        })
        .await
        .unwrap();
    assert!(r.error.is_none());
    let count = common::eventually("live count", T, async || {
        let (_, list) = s.call("GET", "/v1/rooms", Some(&token), None).await;
        let n = list["rooms"]
            .as_array()?
            .iter()
            .find(|r| r["id"] == room.as_str())?["participants"]
            .as_u64()?;
        (n == 1).then_some(n)
    })
    .await;
    assert!(
        count.is_ok(),
        "the rooms list counts the connected participant"
    );
    peer.leave(Leave::Close).await.unwrap();

    // The same token for a second session.
    assert_eq!(
        outcome(&project, &room, "again", &uid, Some(join_token), true).await,
        "token-reused"
    );
    // No token at all.
    assert_eq!(
        outcome(&project, &room, "bare", &uid, None, true).await,
        "token-required"
    );
    // Tampered: another room written into a valid token's payload.
    let fresh = joined(&s, &token, &room).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut parts: Vec<String> = fresh.split('.').map(str::to_owned).collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut payload: Value = serde_json::from_slice(&b64.decode(&parts[1]).unwrap()).unwrap();
    payload["grants"]["publish"] = json!(true);
    payload["name"] = json!("Someone else");
    parts[1] = b64.encode(serde_json::to_vec(&payload).unwrap());
    assert_eq!(
        outcome(
            &project,
            &room,
            "tampered",
            &uid,
            Some(parts.join(".")),
            true
        )
        .await,
        "token-invalid"
    );
    // Expired (signed with the sidecar's key by the test).
    let key = SigningKey::from_pem(KEY_PEM).unwrap();
    let expired = key.issue(&claims(&room, &uid, -5)).unwrap();
    assert_eq!(
        outcome(&project, &room, "late", &uid, Some(expired), true).await,
        "token-expired"
    );
    // A token for another room.
    let elsewhere = joined(&s, &token, &other).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        outcome(&project, &room, "lost", &uid, Some(elsewhere), true).await,
        "token-wrong-room"
    );
    // A listen-only token used to publish.
    let (_, listen) = s
        .call(
            "POST",
            &format!("/v1/rooms/{room}/join"),
            Some(&token),
            Some(json!({"publish": false})),
        )
        .await;
    let listen = listen["token"].as_str().unwrap().to_owned();
    assert_eq!(
        outcome(&project, &room, "loud", &uid, Some(listen.clone()), true).await,
        "token-forbidden"
    );
    // Issued to another user.
    assert_eq!(
        outcome(
            &project,
            &room,
            "thief",
            "someone-else",
            Some(
                joined(&s, &token, &room).await["token"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            ),
            true
        )
        .await,
        "token-invalid"
    );
    // The listen-only token does admit a session that only receives.
    assert_eq!(
        outcome(&project, &room, "quiet", &uid, Some(listen), false).await,
        "connected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reoffer_is_held_to_the_token_grants() {
    let project = Project::new().await;
    let s = sidecar(&project, no_options()).await;
    let _sfu = Broadcast::start_with(
        &project,
        BroadcastOptions {
            extra: vec![
                ("FIRESFU_JWKS_URL".into(), s.url("/.well-known/jwks.json")),
                ("FIRESFU_DEV_NO_AUTH".into(), "false".into()),
            ],
            ..Default::default()
        },
    )
    .await;
    let (token, user) = s.user("ada").await;
    let uid = user["firebaseUid"].as_str().unwrap().to_owned();
    let room = s
        .call(
            "POST",
            "/v1/rooms",
            Some(&token),
            Some(json!({"name": "Grants"})),
        )
        .await
        .1["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let grant = async |publish: bool, subscribe: bool| {
        let (status, join) = s
            .call(
                "POST",
                &format!("/v1/rooms/{room}/join"),
                Some(&token),
                Some(json!({"publish": publish, "subscribe": subscribe})),
            )
            .await;
        assert_eq!(status, 200, "{join}");
        join["token"].as_str().unwrap().to_owned()
    };

    // A speaker the others hear.
    let mut spec = PeerSpec::new(&room, "speaker");
    (spec.token, spec.uid) = (Some(grant(true, true).await), Some(uid.clone()));
    let speaker = Peer::join(&project.db, spec).await.unwrap();

    // A listener (publish: false) connects receiving only, then re-offers to publish.
    let mut spec = PeerSpec::new(&room, "listener");
    (spec.token, spec.uid) = (Some(grant(false, true).await), Some(uid.clone()));
    (spec.publish_audio, spec.publish_video) = (false, false);
    (spec.recv_audio, spec.recv_video) = (1, 1);
    let listener = Peer::join(&project.db, spec).await.unwrap();
    listener
        .wait_until("listener hears the speaker", T, |r| {
            r.audio_from("speaker") > 5
        })
        .await
        .unwrap();
    let before = listener.report().revision;
    listener.publish();
    let r = listener
        .wait_until("publishing re-offer refused", T, |r| {
            r.revision > before && r.error.as_ref().is_some_and(|e| e.0 == "token-forbidden")
        })
        .await
        .unwrap();
    assert_eq!(
        r.state.as_deref(),
        Some("connected"),
        "the session goes on: {r:#?}"
    );
    let doc = listener.doc.read().await.unwrap().unwrap();
    assert_eq!(doc["error"]["revision"], r.revision, "{doc:#}");
    // The roster lists no track of the listener; the speaker receives nothing from it.
    let roster = project.roster(&room).await;
    let entry = roster
        .iter()
        .find(|d| d.name.ends_with("/listener"))
        .expect("listener in the roster");
    let entry: Value = firestore::FirestoreDb::deserialize_doc_to(entry).unwrap();
    assert_eq!(entry["tracks"], json!([]), "{entry:#}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(speaker.report().video_from("listener"), 0);

    // A publisher without `subscribe` is never asked for receive slots, and slots it offers
    // anyway in a re-offer are refused.
    let mut spec = PeerSpec::new(&room, "mute-ears");
    (spec.token, spec.uid) = (Some(grant(true, false).await), Some(uid.clone()));
    let deaf = Peer::join(&project.db, spec).await.unwrap();
    speaker
        .wait_until("speaker hears mute-ears", T, |r| {
            r.audio_from("mute-ears") > 5
        })
        .await
        .unwrap();
    let d = deaf.report();
    assert_eq!(d.wants, (0, 0), "{d:#?}");
    assert_eq!(d.recv_slots, (0, 0));
    assert!(d.received.is_empty());
    // A re-offer with receive slots (the speaker's offer has some), written behind the
    // client's back.
    let with_slots = speaker.doc.read().await.unwrap().unwrap()["offer"]["sdp"].clone();
    let revision = deaf.report().answered_revision + 1;
    deaf.doc
        .update(
            json!({"offer": {"sdp": with_slots, "revision": revision}, "state": "offered"}),
            &["offer", "state"],
        )
        .await
        .unwrap();
    let refused = common::eventually("slots refused", T, async || {
        let d = deaf.doc.read().await.ok()??;
        (d["error"]["code"] == "token-forbidden").then_some(d)
    })
    .await
    .unwrap();
    assert_eq!(refused["error"]["revision"], revision);
    assert_eq!(refused["state"], "connected", "{refused:#}");
    for p in [speaker, listener, deaf] {
        p.leave(Leave::Close).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_an_account_leaves_no_row_and_no_document() {
    let project = Project::new().await;
    let s = sidecar(&project, no_options()).await;
    let _sfu = Broadcast::start(&project).await;
    let (token, user) = s.user("leaver").await;
    let uid = user["firebaseUid"].as_str().unwrap().to_owned();
    let (other_token, _) = s.user("stayer").await;
    let own = s
        .call(
            "POST",
            "/v1/rooms",
            Some(&token),
            Some(json!({"name": "Mine"})),
        )
        .await
        .1["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let theirs = s
        .call(
            "POST",
            "/v1/rooms",
            Some(&other_token),
            Some(json!({"name": "Theirs"})),
        )
        .await
        .1["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let up = s
        .http
        .post(s.url("/v1/images?name=Me"))
        .bearer_auth(&token)
        .header("content-type", "image/png")
        .body(PNG.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 201);
    // The user is in the other user's room (a session document with their uid) and in their own.
    for (room, session) in [(&theirs, "visit"), (&own, "home")] {
        let mut spec = PeerSpec::new(room, session);
        spec.uid = Some(uid.clone());
        let p = Peer::join(&project.db, spec).await.unwrap();
        p.wait_until("connected", T, |r| r.connected).await.unwrap();
        p.leave(Leave::Vanish).await.unwrap();
    }

    assert_eq!(s.call("DELETE", "/v1/me", Some(&token), None).await.0, 204);

    let db = sqlx::PgPool::connect(&s.db).await.unwrap();
    for (table, column) in [
        ("users", "id"),
        ("auth_sessions", "user_id"),
        ("images", "owner_id"),
        ("rooms", "owner_id"),
    ] {
        let (n,): (i64,) = sqlx::query_as(&format!(
            "SELECT count(*) FROM {table} WHERE {column} = $1::uuid"
        ))
        .bind(user["id"].as_str().unwrap())
        .fetch_one(&db)
        .await
        .unwrap();
        assert_eq!(n, 0, "{table} still has rows of the erased user");
    }
    let left = project
        .db
        .fluent()
        .select()
        .from("sessions")
        .all_descendants()
        .filter(|q| q.for_all([q.field("uid").eq(uid.as_str())]))
        .query()
        .await
        .unwrap();
    assert!(left.is_empty(), "session documents left: {left:?}");
    assert!(
        project
            .db
            .fluent()
            .select()
            .by_id_in("rooms")
            .one(&own)
            .await
            .unwrap()
            .is_none(),
        "their room is deleted"
    );
    assert!(
        project
            .db
            .fluent()
            .select()
            .by_id_in("rooms")
            .one(&theirs)
            .await
            .unwrap()
            .is_some(),
        "others' rooms stay"
    );
    assert_problem(
        &s.call("GET", "/v1/me", Some(&token), None).await,
        401,
        "unauthorized",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_gives_503_and_the_sidecar_recovers() {
    let project = Project::new().await;
    let cluster = OwnCluster::start();
    let s = Sidecar::start(&project, database(Some(&cluster)).await, no_options()).await;
    let (token, _) = s.user("ada").await;
    assert_eq!(s.call("GET", "/readyz", None, None).await.0, 200);
    cluster.stop();
    assert_problem(
        &s.call("GET", "/v1/rooms", Some(&token), None).await,
        503,
        "unavailable",
    );
    assert_problem(
        &s.call("GET", "/readyz", None, None).await,
        503,
        "unavailable",
    );
    let unavailable = s.http.get(s.url("/readyz")).send().await.unwrap();
    assert!(unavailable.headers().contains_key("retry-after"));
    cluster.resume();
    let back = common::eventually("recovery", T, async || {
        (s.call("GET", "/v1/rooms", Some(&token), None).await.0 == 200).then_some(())
    })
    .await;
    assert!(
        back.is_ok(),
        "the sidecar answers again once the database is back"
    );
    assert_eq!(s.call("GET", "/readyz", None, None).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_exactly_the_live_routes() {
    let project = Project::new().await;
    let s = sidecar(&project, no_options()).await;
    let (_, doc) = s.call("GET", "/openapi.json", None, None).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented += 1;
            let concrete = path.replace("{id}", "00000000-0000-0000-0000-000000000000");
            let (status, body) = s.call(&method.to_uppercase(), &concrete, None, None).await;
            assert_ne!(status, 405, "{method} {path} is documented but not routed");
            assert!(
                !(status == 404 && body["detail"] == "no such route"),
                "{method} {path} is documented but not routed"
            );
        }
    }
    // The router and the document are built from one list (src/sidecar/mod.rs `api`).
    let (_, generated) = firesfu::sidecar::api_router_for_docs();
    let generated: usize = generated
        .paths
        .paths
        .values()
        .map(|item| {
            [
                &item.get,
                &item.post,
                &item.put,
                &item.patch,
                &item.delete,
                &item.options,
            ]
            .iter()
            .filter(|op| op.is_some())
            .count()
        })
        .sum();
    assert_eq!(documented, generated);
    assert_eq!(
        documented, 52,
        "every route of the sidecar (7 of them WHIP's, 7 WHEP's, 8 the webhooks', 5 the server API's)"
    );
    assert_problem(
        &s.call("GET", "/v1/nothing-here", None, None).await,
        404,
        "not-found",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_turns_an_external_identity_into_a_join_token_and_a_room() {
    let project = Project::new().await;
    let public = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=\n-----END PUBLIC KEY-----\n";
    let s = sidecar(
        &project,
        SidecarOptions {
            bridge: Some(("https://chat.example".into(), public.into())),
            ..Default::default()
        },
    )
    .await;
    let encoding = jsonwebtoken::EncodingKey::from_ed_pem(KEY_PEM.as_bytes()).unwrap();
    let external = |room: &str, iss: &str, exp_in: i64| {
        let now = firesfu::sidecar::unix_now();
        let claims = json!({"iss": iss, "sub": "user-42", "name": "Ada L.", "room": room, "roomName": "Chat 7", "exp": now + exp_in});
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
            &claims,
            &encoding,
        )
        .unwrap()
    };
    let first = s
        .call(
            "POST",
            "/v1/bridge/join",
            None,
            Some(json!({"token": external("chat-7", "https://chat.example", 60)})),
        )
        .await;
    assert_eq!(first.0, 200, "{}", first.1);
    let again = s
        .call(
            "POST",
            "/v1/bridge/join",
            None,
            Some(json!({"token": external("chat-7", "https://chat.example", 60)})),
        )
        .await;
    assert_eq!(
        first.1["roomId"], again.1["roomId"],
        "the room is created once"
    );
    assert_eq!(first.1["displayName"], "Ada L.");
    let room = first.1["roomId"].as_str().unwrap();
    assert!(
        project
            .db
            .fluent()
            .select()
            .by_id_in("rooms")
            .one(room)
            .await
            .unwrap()
            .is_some()
    );
    assert_problem(
        &s.call(
            "POST",
            "/v1/bridge/join",
            None,
            Some(json!({"token": external("chat-7", "https://evil.example", 60)})),
        )
        .await,
        401,
        "external-token-invalid",
    );
    assert_problem(
        &s.call(
            "POST",
            "/v1/bridge/join",
            None,
            Some(json!({"token": external("chat-7", "https://chat.example", -60)})),
        )
        .await,
        401,
        "external-token-invalid",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_carry_ice_servers_with_turn_credentials_that_expire() {
    let project = Project::new().await;
    let turn = "turn:turn.example.com:3478?transport=udp,turn:turn.example.com:3478?transport=tcp";
    let s = sidecar(
        &project,
        SidecarOptions {
            env: vec![
                (
                    "FIRESFU_STUN_URLS".into(),
                    "stun:turn.example.com:3478".into(),
                ),
                ("FIRESFU_TURN_URLS".into(), turn.into()),
                ("FIRESFU_TURN_SECRET".into(), "shared-with-coturn".into()),
                ("FIRESFU_TURN_TTL_SECS".into(), "600".into()),
            ],
            ..Default::default()
        },
    )
    .await;
    // Anyone may read the STUN servers; TURN credentials only come with a join.
    let (status, config) = s.call("GET", "/v1/config", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        config["iceServers"],
        json!([{"urls": ["stun:turn.example.com:3478"]}])
    );

    let (token, user) = s.user("ada").await;
    let room = s
        .call(
            "POST",
            "/v1/rooms",
            Some(&token),
            Some(json!({"name": "Turn"})),
        )
        .await
        .1["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let join = joined(&s, &token, &room).await;
    let servers = join["iceServers"].as_array().unwrap();
    assert_eq!(servers.len(), 2, "{join}");
    let relay = &servers[1];
    assert_eq!(relay["urls"], json!(turn.split(',').collect::<Vec<_>>()));
    let username = relay["username"].as_str().unwrap();
    let (expiry, uid) = username.split_once(':').unwrap();
    assert_eq!(uid, user["firebaseUid"].as_str().unwrap());
    let expiry: i64 = expiry.parse().unwrap();
    let now = firesfu::sidecar::unix_now();
    assert!(
        (now + 590..=now + 610).contains(&expiry),
        "{expiry} vs {now}"
    );
    assert_eq!(
        relay["credential"],
        firesfu::sidecar::turn::credential("shared-with-coturn", username)
    );
    // The secret itself appears nowhere.
    assert!(!join.to_string().contains("shared-with-coturn"));
}
