//! The sidecar's camera API (docs/sidecar.md, "Cameras") against a real PostgreSQL and the
//! Firestore emulator: owner only, credentials sealed everywhere they rest and shown nowhere,
//! both Firestore documents mirrored (without touching what the broadcast writes), the limit,
//! no key, reconciliation.

mod common;

use std::time::{Duration, Instant};

use common::sidecar::{Sidecar, SidecarOptions, assert_problem, database};
use common::{Project, eventually};
use firesfu::ingest::documents::{CameraSecret, CameraSourceDoc, RtspTransport};
use firesfu::sealed::SealKey;
use serde_json::{Value, json};

/// A key for these tests only.
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const T: Duration = Duration::from_secs(10);
/// What must never appear in a response or a log line.
const SECRETS: [&str; 6] = [
    "door@admin",
    "door%40admin",
    "Sup3r",
    "yardcam",
    "hunter2",
    "n3w-pass",
];

async fn sidecar(project: &Project, env: &[(&str, &str)]) -> Sidecar {
    let options = SidecarOptions {
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..Default::default()
    };
    Sidecar::start(project, database(None).await, options).await
}

async fn with_key(project: &Project) -> Sidecar {
    sidecar(project, &[("FIRESFU_CAMERA_KEY", KEY)]).await
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what} contains {secret:?}: {text}");
    }
}

/// A document's own fields (without the `_firestore_…` ones the client adds).
fn fields(doc: Option<Value>) -> Option<Value> {
    let mut doc = doc?;
    doc.as_object_mut()?
        .retain(|k, _| !k.starts_with("_firestore_"));
    Some(doc)
}

async fn source_doc(project: &Project, camera: &str) -> Option<Value> {
    fields(
        project
            .db
            .fluent()
            .select()
            .by_id_in("cameraSources")
            .obj()
            .one(camera)
            .await
            .unwrap(),
    )
}

async fn public_doc(project: &Project, room: &str, camera: &str) -> Option<Value> {
    fields(project.camera_doc(room, camera).await)
}

/// Writes fields of the public document as the broadcast instance pulling the camera would.
async fn broadcast_writes(project: &Project, room: &str, camera: &str, fields: Value) {
    let mask: Vec<String> = fields.as_object().unwrap().keys().cloned().collect();
    project
        .db
        .fluent()
        .update()
        .fields(mask)
        .in_col("cameras")
        .document_id(camera)
        .parent(project.db.parent_path("rooms", room).unwrap())
        .object(&fields)
        .execute::<()>()
        .await
        .unwrap();
}

fn opened(sealed: &str, camera: &str) -> CameraSecret {
    let key = SealKey::from_base64(KEY).unwrap();
    serde_json::from_slice(&key.open(camera, sealed).unwrap()).unwrap()
}

async fn sealed_row(s: &Sidecar, camera: &str) -> String {
    let pg = sqlx::PgPool::connect(&s.db).await.unwrap();
    let (sealed,): (String,) = sqlx::query_as("SELECT sealed FROM cameras WHERE id = $1::uuid")
        .bind(camera)
        .fetch_one(&pg)
        .await
        .unwrap();
    pg.close().await;
    sealed
}

/// The sealed text is the same in PostgreSQL and in the source document, and opens to `want`.
async fn assert_sealed(s: &Sidecar, project: &Project, camera: &str, want: &CameraSecret) {
    let sealed = sealed_row(s, camera).await;
    assert!(sealed.starts_with("v1."));
    assert_no_secret("the sealed column", &sealed);
    assert!(!sealed.contains("cam.local") && !sealed.contains("yard"));
    assert_eq!(&opened(&sealed, camera), want, "PostgreSQL");
    let source: CameraSourceDoc =
        serde_json::from_value(source_doc(project, camera).await.unwrap()).unwrap();
    assert_eq!(
        source.sealed, sealed,
        "Firestore holds the same sealed text"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_manages_cameras_whose_credentials_are_sealed_and_never_shown() {
    let started = Instant::now();
    let project = Project::new().await;
    let s = with_key(&project).await;
    let (ada, _) = s.user("ada").await;
    let (bob, _) = s.user("bob").await;
    let room = s.room(&ada, "Lobby").await;
    let cameras = format!("/v1/rooms/{room}/cameras");
    let mut responses = Vec::new();

    // Credentials in the URL are moved out of it (percent-decoded).
    let door = json!({"name": "  Front door ", "url": "rtsp://door%40admin:Sup3r%3Asecret@cam.local:554/live?ch=1"});
    let (status, door) = s.call("POST", &cameras, Some(&ada), Some(door)).await;
    assert_eq!(status, 201, "{door}");
    responses.push(door.to_string());
    let door_id = door["id"].as_str().unwrap().to_owned();
    assert_eq!(door["room"], room.as_str());
    assert_eq!(door["name"], "Front door");
    assert_eq!(door["url"], "rtsp://cam.local:554/live?ch=1");
    assert_eq!(door["transport"], "tcp");
    assert_eq!(door["enabled"], true);
    assert_eq!(door["hasCredentials"], true);
    assert!(door["createdAt"].is_string() && door["updatedAt"].is_string());
    let door_secret = CameraSecret {
        url: "rtsp://cam.local:554/live?ch=1".into(),
        username: Some("door@admin".into()),
        password: Some("Sup3r:secret".into()),
    };
    assert_sealed(&s, &project, &door_id, &door_secret).await;

    // …or given as fields.
    let yard = json!({"name": "Yard", "url": "rtsps://10.0.0.9/stream1", "username": "yardcam",
                      "password": "hunter2-yard", "transport": "udp", "enabled": false});
    let (status, yard) = s.call("POST", &cameras, Some(&ada), Some(yard)).await;
    assert_eq!(status, 201, "{yard}");
    responses.push(yard.to_string());
    let yard_id = yard["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (&yard["transport"], &yard["enabled"], &yard["url"]),
        (
            &json!("udp"),
            &json!(false),
            &json!("rtsps://10.0.0.9/stream1")
        )
    );
    let yard_secret = CameraSecret {
        url: "rtsps://10.0.0.9/stream1".into(),
        username: Some("yardcam".into()),
        password: Some("hunter2-yard".into()),
    };
    assert_sealed(&s, &project, &yard_id, &yard_secret).await;

    // The documents: the source for broadcast instances, the public one for the room.
    let source: CameraSourceDoc =
        serde_json::from_value(source_doc(&project, &door_id).await.unwrap()).unwrap();
    assert_eq!((source.v, source.room.as_str()), (1, room.as_str()));
    assert_eq!((source.name.as_str(), source.enabled), ("Front door", true));
    assert_eq!(source.transport, RtspTransport::Tcp);
    let public = public_doc(&project, &room, &door_id).await.unwrap();
    assert_eq!(public["name"], "Front door");
    assert_eq!(public["state"], "idle");
    assert_eq!(public["enabled"], true);
    assert!(public.get("createdAt").is_some());
    let keys: Vec<&String> = public.as_object().unwrap().keys().collect();
    assert!(
        keys.iter()
            .all(|k| ["name", "enabled", "createdAt", "state"].contains(&k.as_str())),
        "{public}"
    );
    assert_no_secret("the public document", &public.to_string());
    assert!(!public.to_string().contains("cam.local"));
    assert_eq!(
        public_doc(&project, &room, &yard_id).await.unwrap()["state"],
        "disabled"
    );

    // Reading.
    let (status, list) = s.call("GET", &cameras, Some(&ada), None).await;
    assert_eq!(status, 200);
    responses.push(list.to_string());
    let listed: Vec<&str> = list["cameras"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [door_id.as_str(), yard_id.as_str()]);
    let one = format!("{cameras}/{door_id}");
    let (status, got) = s.call("GET", &one, Some(&ada), None).await;
    assert_eq!((status, &got), (200, &door));
    responses.push(got.to_string());

    // Someone else: the owner-only refusal, whatever they try.
    assert_problem(
        &s.call("GET", &cameras, Some(&bob), None).await,
        403,
        "forbidden",
    );
    assert_problem(
        &s.call("GET", &one, Some(&bob), None).await,
        403,
        "forbidden",
    );
    let sneaky = json!({"name": "Mine", "url": "rtsp://evil/x"});
    assert_problem(
        &s.call("POST", &cameras, Some(&bob), Some(sneaky)).await,
        403,
        "forbidden",
    );
    let rename = json!({"name": "Pwned"});
    assert_problem(
        &s.call("PATCH", &one, Some(&bob), Some(rename)).await,
        403,
        "forbidden",
    );
    assert_problem(
        &s.call("DELETE", &one, Some(&bob), None).await,
        403,
        "forbidden",
    );
    assert_problem(
        &s.call("GET", &cameras, None, None).await,
        401,
        "unauthorized",
    );
    let nobody = "/v1/rooms/00000000-0000-0000-0000-000000000000/cameras";
    assert_problem(
        &s.call("GET", nobody, Some(&ada), None).await,
        404,
        "not-found",
    );
    let missing = format!("{cameras}/00000000-0000-0000-0000-000000000000");
    assert_problem(
        &s.call("GET", &missing, Some(&ada), None).await,
        404,
        "not-found",
    );

    // The broadcast has been pulling the door camera: a rename leaves its fields alone.
    let pulled = json!({"state": "live", "codec": "h264", "width": 640, "height": 360});
    broadcast_writes(&project, &room, &door_id, pulled).await;
    let (status, renamed) = s
        .call("PATCH", &one, Some(&ada), Some(json!({"name": "Porch"})))
        .await;
    assert_eq!((status, &renamed["name"]), (200, &json!("Porch")));
    responses.push(renamed.to_string());
    let public = public_doc(&project, &room, &door_id).await.unwrap();
    assert_eq!(
        (&public["name"], &public["state"]),
        (&json!("Porch"), &json!("live"))
    );
    assert_eq!(
        (&public["codec"], &public["width"]),
        (&json!("h264"), &json!(640))
    );
    assert_eq!(
        source_doc(&project, &door_id).await.unwrap()["name"],
        "Porch"
    );

    // Disabling resets the state (and clears an error…); enabling starts again from idle.
    let failed = json!({"state": "failed", "error": {"code": "unauthorized", "message": "401"}});
    broadcast_writes(&project, &room, &door_id, failed).await;
    let (status, off) = s
        .call("PATCH", &one, Some(&ada), Some(json!({"enabled": false})))
        .await;
    assert_eq!((status, &off["enabled"]), (200, &json!(false)));
    responses.push(off.to_string());
    let public = public_doc(&project, &room, &door_id).await.unwrap();
    assert_eq!(
        (&public["state"], &public["enabled"]),
        (&json!("disabled"), &json!(false))
    );
    // …and what the last pull found: a camera switched off shows no stale codec or size.
    for field in ["error", "codec", "width", "height"] {
        assert!(public.get(field).is_none(), "{field} kept: {public}");
    }
    assert_eq!(
        source_doc(&project, &door_id).await.unwrap()["enabled"],
        false
    );
    let (status, on) = s
        .call("PATCH", &one, Some(&ada), Some(json!({"enabled": true})))
        .await;
    assert_eq!(status, 200);
    responses.push(on.to_string());
    assert_eq!(
        public_doc(&project, &room, &door_id).await.unwrap()["state"],
        "idle"
    );
    assert_eq!(
        source_doc(&project, &door_id).await.unwrap()["enabled"],
        true
    );

    // Credentials: a new URL keeps them; null removes one; a URL with userinfo replaces both.
    let moved = json!({"url": "rtsp://cam2.local/live", "transport": "udp"});
    let (status, patched) = s.call("PATCH", &one, Some(&ada), Some(moved)).await;
    assert_eq!((status, &patched["hasCredentials"]), (200, &json!(true)));
    responses.push(patched.to_string());
    let mut want = CameraSecret {
        url: "rtsp://cam2.local/live".into(),
        ..door_secret.clone()
    };
    assert_sealed(&s, &project, &door_id, &want).await;
    let udp = source_doc(&project, &door_id).await.unwrap();
    assert_eq!(udp["transport"], "udp");
    let (status, patched) = s
        .call("PATCH", &one, Some(&ada), Some(json!({"password": null})))
        .await;
    assert_eq!((status, &patched["hasCredentials"]), (200, &json!(true)));
    want.password = None;
    assert_sealed(&s, &project, &door_id, &want).await;
    let (status, patched) = s
        .call("PATCH", &one, Some(&ada), Some(json!({"username": null})))
        .await;
    assert_eq!((status, &patched["hasCredentials"]), (200, &json!(false)));
    want.username = None;
    assert_sealed(&s, &project, &door_id, &want).await;
    let fresh = json!({"url": "rtsp://op:n3w-pass@cam2.local/live"});
    let (status, patched) = s.call("PATCH", &one, Some(&ada), Some(fresh)).await;
    assert_eq!(
        (status, &patched["url"]),
        (200, &json!("rtsp://cam2.local/live"))
    );
    responses.push(patched.to_string());
    want.username = Some("op".into());
    want.password = Some("n3w-pass".into());
    assert_sealed(&s, &project, &door_id, &want).await;

    // Validation: 400 problems naming the field, repeating no secret.
    let bad_urls = [
        "http://x".to_owned(),
        "rtsp://".to_owned(),
        "garbage".to_owned(),
        "rtsp://cam.local/live#frag".to_owned(),
        format!("rtsp://cam.local/{}", "a".repeat(2100)),
    ];
    for url in &bad_urls {
        let body = json!({"name": "Bad", "url": url});
        let got = s.call("POST", &cameras, Some(&ada), Some(body)).await;
        assert_problem(&got, 400, "validation-failed");
        assert!(
            got.1["detail"].as_str().unwrap().contains("`url`"),
            "{}",
            got.1
        );
        let got = s
            .call("PATCH", &one, Some(&ada), Some(json!({"url": url})))
            .await;
        assert_problem(&got, 400, "validation-failed");
        assert!(
            got.1["detail"].as_str().unwrap().contains("`url`"),
            "{}",
            got.1
        );
    }
    for (body, field) in [
        (json!({"name": " ", "url": "rtsp://c/x"}), "`name`"),
        (
            json!({"name": "n".repeat(81), "url": "rtsp://c/x"}),
            "`name`",
        ),
        (
            json!({"name": "N", "url": "rtsp://c/x", "username": "u".repeat(257)}),
            "`username`",
        ),
        (
            json!({"name": "N", "url": "rtsp://c/x", "password": "hunter2\r\n"}),
            "`password`",
        ),
        (
            json!({"name": "N", "url": "rtsp://hunter2:x@c/x", "username": "u"}),
            "`url`",
        ),
        (
            json!({"name": "N", "url": "rtsp://c/x", "transport": "sctp"}),
            "`tcp` or `udp`",
        ),
    ] {
        let got = s.call("POST", &cameras, Some(&ada), Some(body)).await;
        assert_eq!(got.0, 400, "{}", got.1);
        let detail = got.1["detail"].as_str().unwrap();
        assert!(detail.contains(field), "{detail}");
        assert_no_secret("an error", detail);
    }
    for body in [
        json!({}),
        json!({"name": null}),
        json!({"url": null}),
        json!({"transport": null}),
        json!({"enabled": null}),
    ] {
        let got = s.call("PATCH", &one, Some(&ada), Some(body)).await;
        assert_problem(&got, 400, "validation-failed");
    }
    let bad_user = json!({"username": "a:b"});
    let got = s.call("PATCH", &one, Some(&ada), Some(bad_user)).await;
    assert_problem(&got, 400, "validation-failed");

    for (i, response) in responses.iter().enumerate() {
        assert_no_secret(&format!("response {i}"), response);
    }

    // Removing: both documents go, then 404.
    assert_eq!(s.call("DELETE", &one, Some(&ada), None).await.0, 204);
    assert!(source_doc(&project, &door_id).await.is_none());
    assert!(public_doc(&project, &room, &door_id).await.is_none());
    assert_problem(
        &s.call("GET", &one, Some(&ada), None).await,
        404,
        "not-found",
    );
    assert_problem(
        &s.call("DELETE", &one, Some(&ada), None).await,
        404,
        "not-found",
    );
    let (_, list) = s.call("GET", &cameras, Some(&ada), None).await;
    assert_eq!(list["cameras"].as_array().unwrap().len(), 1);

    let log = std::fs::read_to_string(&s.log).unwrap();
    assert!(log.contains("camera added"), "the log is the sidecar's");
    assert_no_secret("the sidecar's log", &log);
    eprintln!("owner flow: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_cameras_are_not_configured_and_a_bad_key_stops_the_sidecar() {
    let started = Instant::now();
    let project = Project::new().await;
    let s = sidecar(&project, &[]).await;
    let (ada, _) = s.user("ada").await;
    let room = s.room(&ada, "Plain").await;
    let cameras = format!("/v1/rooms/{room}/cameras");
    let body = json!({"name": "Door", "url": "rtsp://cam/x"});
    for got in [
        s.call("POST", &cameras, Some(&ada), Some(body)).await,
        s.call("GET", &cameras, Some(&ada), None).await,
        s.call("GET", &format!("{cameras}/{room}"), Some(&ada), None)
            .await,
    ] {
        assert_problem(&got, 503, "not-configured");
        assert_eq!(
            got.1["detail"],
            "cameras are not configured: set FIRESFU_CAMERA_KEY (32 bytes, base64)"
        );
    }
    let raw = s
        .http
        .get(s.url(&cameras))
        .bearer_auth(&ada)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.headers()["content-type"], "application/problem+json");
    // Everything else works.
    assert_eq!(
        s.call("GET", &format!("/v1/rooms/{room}"), Some(&ada), None)
            .await
            .0,
        200
    );

    // A malformed key: the sidecar refuses to start and says why.
    for (var, value) in [
        ("FIRESFU_CAMERA_KEY", "c2hvcnQ="),
        ("FIRESFU_CAMERA_KEY", "not base64!"),
    ] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_firesfu"))
            .arg("sidecar")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GOOGLE_CLOUD_PROJECT", &project.id)
            .env("FIRESTORE_EMULATOR_HOST", &project.host)
            .env("DATABASE_URL", &s.db)
            .env("APP_PORT", "0")
            .env("FIRESFU_SIDECAR_BIND_IP", "127.0.0.1")
            .env(var, value)
            .output();
        let out = tokio::time::timeout(T, out).await.unwrap().unwrap();
        let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}");
        assert!(text.contains("FIRESFU_CAMERA_KEY"), "{text}");
        assert!(text.contains("32 bytes in base64"), "{text}");
        assert!(!text.contains(value), "the key is not repeated: {text}");
    }
    eprintln!("no key, bad key: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_holds_16_cameras_and_deleting_it_removes_their_documents() {
    let started = Instant::now();
    let project = Project::new().await;
    let s = with_key(&project).await;
    let (ada, _) = s.user("ada").await;
    let room = s.room(&ada, "Many").await;
    let cameras = format!("/v1/rooms/{room}/cameras");
    // 20 at once: the limit holds under concurrency.
    let creations = (0..20).map(|i| {
        let body = json!({"name": format!("Cam {i}"), "url": format!("rtsp://u:hunter2@cam{i}/x")});
        let (s, ada, cameras) = (&s, &ada, &cameras);
        async move { s.call("POST", cameras, Some(ada), Some(body)).await }
    });
    let results = futures::future::join_all(creations).await;
    let created: Vec<&str> = results
        .iter()
        .filter(|(status, _)| *status == 201)
        .map(|(_, c)| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(created.len(), 16, "{results:?}");
    for got in results.iter().filter(|(status, _)| *status != 201) {
        assert_problem(got, 409, "too-many-cameras");
    }
    let seventeenth = json!({"name": "One more", "url": "rtsp://cam/x"});
    let got = s
        .call("POST", &cameras, Some(&ada), Some(seventeenth))
        .await;
    assert_problem(&got, 409, "too-many-cameras");
    let (_, list) = s.call("GET", &cameras, Some(&ada), None).await;
    assert_eq!(list["cameras"].as_array().unwrap().len(), 16);
    assert_no_secret("the list", &list.to_string());
    // Another room is not affected by this one's limit.
    let other = room_with_camera(&s, &ada).await;

    assert_eq!(
        s.call("DELETE", &format!("/v1/rooms/{room}"), Some(&ada), None)
            .await
            .0,
        204
    );
    for camera in &created {
        assert!(source_doc(&project, camera).await.is_none());
        assert!(public_doc(&project, &room, camera).await.is_none());
    }
    assert!(source_doc(&project, &other.1).await.is_some());
    let pg = sqlx::PgPool::connect(&s.db).await.unwrap();
    let (left,): (i64,) = sqlx::query_as("SELECT count(*) FROM cameras")
        .fetch_one(&pg)
        .await
        .unwrap();
    assert_eq!(left, 1, "the rows went with the room");
    eprintln!("limit and room deletion: {:?}", started.elapsed());
}

async fn room_with_camera(s: &Sidecar, token: &str) -> (String, String) {
    let room = s.room(token, "Other").await;
    let body = json!({"name": "Gate", "url": "rtsp://gate/x"});
    let (status, camera) = s
        .call(
            "POST",
            &format!("/v1/rooms/{room}/cameras"),
            Some(token),
            Some(body),
        )
        .await;
    assert_eq!(status, 201, "{camera}");
    (room, camera["id"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_rewrites_missing_or_wrong_camera_documents_and_deletes_orphans() {
    let started = Instant::now();
    let project = Project::new().await;
    let s = sidecar(
        &project,
        &[
            ("FIRESFU_CAMERA_KEY", KEY),
            ("FIRESFU_ROOM_RECONCILE_SECS", "1"),
        ],
    )
    .await;
    let (ada, _) = s.user("ada").await;
    let (room, lost) = room_with_camera(&s, &ada).await;
    let (live_room, live) = room_with_camera(&s, &ada).await;
    let good_source = source_doc(&project, &lost).await.unwrap();

    // Lost: its source document deleted, its public one renamed and switched off by hand.
    project
        .db
        .fluent()
        .delete()
        .from("cameraSources")
        .document_id(&lost)
        .execute()
        .await
        .unwrap();
    let wrong = json!({"name": "Hacked", "enabled": false, "state": "disabled"});
    broadcast_writes(&project, &room, &lost, wrong).await;
    // Orphans: documents of a camera PostgreSQL does not know.
    let orphan = "7d444840-9dc0-11d1-b245-5ffdce74fad2";
    let fake = json!({"v": 1, "room": room, "name": "Ghost", "enabled": true, "transport": "tcp", "sealed": "v1.AAAA"});
    project
        .db
        .fluent()
        .update()
        .in_col("cameraSources")
        .document_id(orphan)
        .object(&fake)
        .execute::<()>()
        .await
        .unwrap();
    broadcast_writes(
        &project,
        &room,
        orphan,
        json!({"name": "Ghost", "state": "live"}),
    )
    .await;
    // A camera the broadcast is pulling (state live) is consistent: left as it is.
    broadcast_writes(&project, &live_room, &live, json!({"state": "live"})).await;

    eventually("the lost camera's documents", T, async || {
        let source = source_doc(&project, &lost).await?;
        let public = public_doc(&project, &room, &lost).await?;
        (source == good_source && public["name"] == "Gate" && public["state"] == "idle")
            .then_some(())
    })
    .await
    .unwrap();
    eventually("the orphans' deletion", T, async || {
        (source_doc(&project, orphan).await.is_none()
            && public_doc(&project, &room, orphan).await.is_none())
        .then_some(())
    })
    .await
    .unwrap();
    assert_eq!(
        public_doc(&project, &live_room, &live).await.unwrap()["state"],
        "live"
    );
    eprintln!("reconciliation: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_key_change_a_camera_shows_no_url_until_it_is_sent_again() {
    let started = Instant::now();
    let project = Project::new().await;
    let mut first = with_key(&project).await;
    let (ada, _) = first.user("ada").await;
    let room = first.room(&ada, "Rekeyed").await;
    let cameras = format!("/v1/rooms/{room}/cameras");
    let body = json!({"name": "Door", "url": "rtsp://yardcam:hunter2@cam/x"});
    let (status, camera) = first.call("POST", &cameras, Some(&ada), Some(body)).await;
    assert_eq!(status, 201, "{camera}");
    let one = format!("{cameras}/{}", camera["id"].as_str().unwrap());
    let db = first.db.clone();
    first.terminate();

    let other = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
    let options = SidecarOptions {
        env: vec![("FIRESFU_CAMERA_KEY".into(), other.into())],
        ..Default::default()
    };
    let s = Sidecar::start(&project, db, options).await;
    let (status, got) = s.call("GET", &one, Some(&ada), None).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        (&got["url"], &got["hasCredentials"]),
        (&Value::Null, &json!(false))
    );
    assert_eq!(got["name"], "Door");
    // What needs no secret still changes; the credentials alone cannot.
    let renamed = s
        .call("PATCH", &one, Some(&ada), Some(json!({"name": "Gate"})))
        .await;
    assert_eq!((renamed.0, &renamed.1["name"]), (200, &json!("Gate")));
    let got = s
        .call(
            "PATCH",
            &one,
            Some(&ada),
            Some(json!({"password": "n3w-pass"})),
        )
        .await;
    assert_problem(&got, 400, "validation-failed");
    assert!(got.1["detail"].as_str().unwrap().contains("`url`"));
    // Sending the URL again seals it under the new key.
    let again = json!({"url": "rtsp://yardcam:n3w-pass@cam/x"});
    let (status, got) = s.call("PATCH", &one, Some(&ada), Some(again)).await;
    assert_eq!((status, &got["url"]), (200, &json!("rtsp://cam/x")));
    assert_eq!(got["hasCredentials"], true);
    let sealed = sealed_row(&s, camera["id"].as_str().unwrap()).await;
    let key = SealKey::from_base64(other).unwrap();
    let opened: CameraSecret =
        serde_json::from_slice(&key.open(camera["id"].as_str().unwrap(), &sealed).unwrap())
            .unwrap();
    assert_eq!(opened.password.as_deref(), Some("n3w-pass"));
    assert_no_secret("the log", &std::fs::read_to_string(&s.log).unwrap());
    eprintln!("key change: {:?}", started.elapsed());
}
