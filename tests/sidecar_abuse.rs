//! The sidecar against a hostile but legal client: memory exhaustion by password hashing,
//! limits raced in parallel or turned against the victim, id spellings that made hidden rooms,
//! half-applied changes, characters PostgreSQL chokes on, images that are not images, storage
//! without quota, and room documents lost from Firestore.

mod common;

use std::time::{Duration, Instant};

use common::Project;
use common::sidecar::{Sidecar, SidecarOptions, assert_problem, database};
use serde_json::{Value, json};

const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, 0x49, 0x48, 0x44, 0x52, 0, 0, 0,
    1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1f, 0x15, 0xc4, 0x89, 0, 0, 0, 0x0a, 0x49, 0x44, 0x41, 0x54,
    0x78, 0x9c, 0x63, 0, 1, 0, 0, 5, 0, 1, 0x0d, 0x0a, 0x2d, 0xb4, 0, 0, 0, 0, 0x49, 0x45, 0x4e,
    0x44, 0xae, 0x42, 0x60, 0x82,
];

async fn sidecar(project: &Project, env: &[(&str, &str)]) -> Sidecar {
    let options = SidecarOptions {
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    Sidecar::start(project, database(None).await, options).await
}

/// A request as if from `from` (the sidecar trusts X-Forwarded-For in these tests).
async fn call_from(s: &Sidecar, from: &str, method: &str, path: &str, body: Value) -> (u16, Value) {
    let resp = s
        .http
        .request(method.parse().unwrap(), s.url(path))
        .header("x-forwarded-for", from)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry = resp.headers().get("retry-after").is_some();
    let mut body: Value = resp.json().await.unwrap_or(Value::Null);
    if retry {
        body["_retryAfter"] = json!(true);
    }
    (status, body)
}

fn creds(user: &str, password: &str) -> Value {
    json!({"username": user, "password": password})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_password_hashing_is_bounded_in_memory_and_answers_503_beyond() {
    let project = Project::new().await;
    let s = sidecar(
        &project,
        &[
            ("FIRESFU_PASSWORD_HASH_MEMORY_MIB", "40"),
            ("FIRESFU_PASSWORD_HASH_QUEUE_MS", "1500"),
            ("FIRESFU_FORWARDED_FOR_HOPS", "1"),
        ],
    )
    .await;
    let idle = s.rss_kib();
    let s = std::sync::Arc::new(s);
    // 100 logins at once, each for another name from another address: no limit applies, every
    // one costs a password hash (a dummy one for unknown users).
    let started = Instant::now();
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                call_from(
                    &s,
                    &format!("10.9.{}.{}", i / 250, i % 250 + 1),
                    "POST",
                    "/v1/sessions",
                    creds(&format!("nobody{i}"), "wrong password here"),
                )
                .await
            })
        })
        .collect();
    let mut peak = 0;
    while tasks.iter().any(|t| !t.is_finished()) {
        peak = peak.max(s.rss_kib());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        *statuses.entry(status).or_default() += 1;
        assert!(
            status == 401 || (status == 503 && body["_retryAfter"] == true),
            "{status} {body}"
        );
    }
    // Two hashing slots of 19 MiB, whatever the load (it was 2.5 GiB for 100 registrations).
    let grew_mib = (peak.saturating_sub(idle)) / 1024;
    assert!(grew_mib < 120, "RSS grew by {grew_mib} MiB: {statuses:?}");
    assert!(
        statuses.get(&401).copied().unwrap_or(0) >= 10,
        "{statuses:?}"
    );
    eprintln!(
        "100 concurrent logins: {statuses:?} in {:?}, RSS {} → peak {} MiB",
        started.elapsed(),
        idle / 1024,
        peak / 1024
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_wrong_passwords_cannot_pass_the_limit_and_an_attacker_cannot_lock_out_the_user() {
    let project = Project::new().await;
    let s = std::sync::Arc::new(sidecar(&project, &[("FIRESFU_FORWARDED_FOR_HOPS", "1")]).await);
    let home = "192.0.2.10";
    let (status, _) = call_from(
        &s,
        home,
        "POST",
        "/v1/accounts",
        creds("ada", "correct horse battery"),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = call_from(
        &s,
        home,
        "POST",
        "/v1/sessions",
        creds("ada", "correct horse battery"),
    )
    .await;
    assert_eq!(status, 200);

    // 40 parallel wrong passwords from one address: 5 are checked, the rest refused.
    let attacker = "203.0.113.66";
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                call_from(
                    &s,
                    attacker,
                    "POST",
                    "/v1/sessions",
                    creds("ada", "not her password!"),
                )
                .await
                .0
            })
        })
        .collect();
    let mut checked = 0;
    for t in tasks {
        match t.await.unwrap() {
            401 => checked += 1,
            429 => {}
            other => panic!("{other}"),
        }
    }
    assert_eq!(checked, 5, "wrong passwords checked");
    // The attacker is locked out; Ada, from home, is not.
    let (status, _) = call_from(
        &s,
        attacker,
        "POST",
        "/v1/sessions",
        creds("ada", "correct horse battery"),
    )
    .await;
    assert_eq!(status, 429);
    let (status, body) = call_from(
        &s,
        home,
        "POST",
        "/v1/sessions",
        creds("ada", "correct horse battery"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_are_limited_per_address() {
    let project = Project::new().await;
    let s = sidecar(
        &project,
        &[
            ("FIRESFU_FORWARDED_FOR_HOPS", "1"),
            ("FIRESFU_REGISTRATIONS_PER_HOUR", "3"),
        ],
    )
    .await;
    for i in 0..3 {
        let (status, _) = call_from(
            &s,
            "198.51.100.7",
            "POST",
            "/v1/accounts",
            creds(&format!("u{i}x"), "correct horse battery"),
        )
        .await;
        assert_eq!(status, 201);
    }
    let got = call_from(
        &s,
        "198.51.100.7",
        "POST",
        "/v1/accounts",
        creds("u9x", "correct horse battery"),
    )
    .await;
    assert_problem(&got, 429, "rate-limited");
    let (status, _) = call_from(
        &s,
        "198.51.100.8",
        "POST",
        "/v1/accounts",
        creds("u9x", "correct horse battery"),
    )
    .await;
    assert_eq!(status, 201, "another address may");
}

/// Room document ids in Firestore.
async fn room_documents(project: &Project) -> Vec<String> {
    project
        .db
        .fluent()
        .select()
        .from("rooms")
        .query()
        .await
        .unwrap()
        .iter()
        .map(|d| d.name.rsplit('/').next().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spelling_of_a_room_id_names_the_one_room() {
    let project = Project::new().await;
    let s = sidecar(&project, &[]).await;
    let (token, _) = s.user("owner").await;
    let room = s
        .call(
            "POST",
            "/v1/rooms",
            Some(&token),
            Some(json!({"name": "Canon"})),
        )
        .await
        .1["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let upper = room.to_uppercase();
    let simple = room.replace('-', "");
    let urn = format!("urn:uuid:{room}");
    for (i, spelling) in [&upper, &simple, &urn].into_iter().enumerate() {
        let (status, body) = s
            .call(
                "PATCH",
                &format!("/v1/rooms/{spelling}"),
                Some(&token),
                Some(json!({"name": format!("Canon {i}")})),
            )
            .await;
        assert_eq!(status, 200, "{spelling}: {body}");
        assert_eq!(body["id"], room.as_str());
        let (status, join) = s
            .call(
                "POST",
                &format!("/v1/rooms/{spelling}/join"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, 200, "{join}");
        assert_eq!(join["roomId"], room.as_str());
    }
    assert_eq!(
        room_documents(&project).await,
        vec![room.clone()],
        "no hidden room"
    );
    // Deleting through another spelling deletes the real room document too.
    let (status, _) = s
        .call("DELETE", &format!("/v1/rooms/{upper}"), Some(&token), None)
        .await;
    assert_eq!(status, 204);
    assert!(room_documents(&project).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_change_changes_nothing_and_control_characters_are_400() {
    let project = Project::new().await;
    let s = sidecar(&project, &[]).await;
    let (ada, _) = s.user("ada").await;
    let (bob, _) = s.user("bob").await;
    let bobs_image = s
        .http
        .post(s.url("/v1/images?name=mine"))
        .bearer_auth(&bob)
        .header("content-type", "image/png")
        .body(PNG.to_vec())
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let room = s
        .call(
            "POST",
            "/v1/rooms",
            Some(&ada),
            Some(json!({"name": "Before"})),
        )
        .await
        .1["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let got = s
        .call(
            "PATCH",
            &format!("/v1/rooms/{room}"),
            Some(&ada),
            Some(json!({"name": "After", "imageId": bobs_image})),
        )
        .await;
    assert_problem(&got, 400, "validation-failed");
    let (_, now) = s
        .call("GET", &format!("/v1/rooms/{room}"), Some(&ada), None)
        .await;
    assert_eq!(
        now["name"], "Before",
        "nothing of the refused change was saved"
    );

    // NUL and other control characters: 400, never a 500 from PostgreSQL.
    let got = s
        .call(
            "POST",
            "/v1/sessions",
            None,
            Some(creds("ad\u{0}a", "correct horse battery")),
        )
        .await;
    assert_problem(&got, 400, "validation-failed");
    let got = s
        .call(
            "POST",
            "/v1/rooms",
            Some(&ada),
            Some(json!({"name": "nul\u{0}room"})),
        )
        .await;
    assert_problem(&got, 400, "validation-failed");
    let got = s
        .call(
            "PATCH",
            &format!("/v1/rooms/{room}"),
            Some(&ada),
            Some(json!({"name": "rtl\u{202E}moor"})),
        )
        .await;
    assert_problem(&got, 400, "validation-failed");
    let got = s
        .call(
            "POST",
            &format!("/v1/rooms/{room}/join"),
            Some(&ada),
            Some(json!({"displayName": "bell\u{7}"})),
        )
        .await;
    assert_problem(&got, 400, "validation-failed");
    let resp = s
        .http
        .post(s.url("/v1/images?name=nul%00name"))
        .bearer_auth(&ada)
        .header("content-type", "image/png")
        .body(PNG.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
}

async fn upload(s: &Sidecar, token: &str, bytes: Vec<u8>) -> (u16, Value) {
    let resp = s
        .http
        .post(s.url("/v1/images?name=pic"))
        .bearer_auth(token)
        .header("content-type", "image/png")
        .body(bytes)
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_must_be_whole_images_within_the_quota() {
    let project = Project::new().await;
    let s = std::sync::Arc::new(
        sidecar(
            &project,
            &[
                ("FIRESFU_IMAGE_QUOTA_COUNT", "6"),
                ("FIRESFU_IMAGE_QUOTA_BYTES", "100000"),
            ],
        )
        .await,
    );
    let (token, _) = s.user("uploader").await;
    // A PNG signature followed by HTML is not an image; nor is a PNG with a page after it.
    let mut fake = PNG[..8].to_vec();
    fake.extend_from_slice(b"<html><script>alert(1)</script></html>");
    assert_problem(
        &upload(&s, &token, fake).await,
        415,
        "unsupported-media-type",
    );
    let mut trailing = PNG.to_vec();
    trailing.extend_from_slice(b"<html></html>");
    assert_problem(
        &upload(&s, &token, trailing).await,
        415,
        "unsupported-media-type",
    );
    // Ten parallel uploads with room for six: exactly six are stored.
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (s, token) = (s.clone(), token.clone());
            tokio::spawn(async move { upload(&s, &token, PNG.to_vec()).await })
        })
        .collect();
    let mut stored = 0;
    for t in tasks {
        let got = t.await.unwrap();
        match got.0 {
            201 => stored += 1,
            _ => assert_problem(&got, 403, "quota-exceeded"),
        }
    }
    assert_eq!(stored, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_room_documents_come_back_from_the_database() {
    let project = Project::new().await;
    let s = sidecar(&project, &[("FIRESFU_ROOM_RECONCILE_SECS", "1")]).await;
    let (token, _) = s.user("keeper").await;
    let mut rooms = Vec::new();
    for name in ["One", "Two"] {
        rooms.push(
            s.call(
                "POST",
                "/v1/rooms",
                Some(&token),
                Some(json!({"name": name})),
            )
            .await
            .1["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // Firestore loses its documents (a restore, a mistaken deletion, an emulator restart).
    for room in &rooms {
        project
            .db
            .fluent()
            .delete()
            .from("rooms")
            .document_id(room)
            .execute()
            .await
            .unwrap();
    }
    // The periodic reconcile writes them back.
    common::eventually(
        "room documents restored",
        Duration::from_secs(15),
        async || {
            let mut docs = room_documents(&project).await;
            docs.sort();
            let mut want = rooms.clone();
            want.sort();
            (docs == want).then_some(())
        },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_a_room_whose_document_was_lost_restores_it_first() {
    let project = Project::new().await;
    let s = sidecar(&project, &[("FIRESFU_ROOM_RECONCILE_SECS", "3600")]).await;
    let (token, _) = s.user("joiner").await;
    let room = s
        .call(
            "POST",
            "/v1/rooms",
            Some(&token),
            Some(json!({"name": "Lost"})),
        )
        .await
        .1["id"]
        .as_str()
        .unwrap()
        .to_owned();
    project
        .db
        .fluent()
        .delete()
        .from("rooms")
        .document_id(&room)
        .execute()
        .await
        .unwrap();
    assert!(room_documents(&project).await.is_empty());
    let (status, _) = s
        .call(
            "POST",
            &format!("/v1/rooms/{room}/join"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(room_documents(&project).await, vec![room]);
}
