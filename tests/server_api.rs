//! The server API for applications (`/v1/server/…`) against a live sidecar, a broadcast
//! instance verifying join tokens, and str0m participants: a token minted for the
//! application's own user admits a session; the rooms list shows the call; removing a
//! participant ends their session with `removed`, which their client sees; every route refuses
//! a missing, revoked or unscoped key.

mod common;

use std::time::Duration;

use common::bridge::broadcast;
use common::sidecar::{Sidecar, SidecarOptions, assert_problem, database};
use common::webhooks::{apikey, revoke_newest};
use common::{Project, eventually};
use serde_json::{Value, json};
use testpeer::{Peer, PeerSpec};

const T: Duration = Duration::from_secs(30);

fn key(db: &str, scopes: &[&str]) -> String {
    let mut args = vec!["create", "--name", "backend"];
    for s in scopes {
        args.extend(["--scope", s]);
    }
    let (ok, key, err) = apikey(db, &args);
    assert!(ok, "{err}");
    key
}

/// A str0m participant admitted by a join token from the server API.
async fn join_with(project: &Project, join: &Value, session: &str) -> Peer {
    let room = join["roomId"].as_str().unwrap();
    let mut spec = PeerSpec::new(room, session);
    spec.token = Some(join["token"].as_str().unwrap().to_owned());
    spec.uid = join["firebase"]["uid"].as_str().map(str::to_owned);
    spec.display_name = join["displayName"].as_str().unwrap().to_owned();
    Peer::join(&project.db, spec).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_mints_tokens_sees_the_call_and_removes_a_participant() {
    let project = Project::new().await;
    let db = database(None).await;
    let s = Sidecar::start(&project, db.clone(), SidecarOptions::default()).await;
    let _bc = broadcast(&project, &s, &[]).await;
    let backend = key(&db, &["rooms:read", "participants:write", "tokens:write"]);
    let (owner, _) = s.user("owner").await;
    let room = s.room(&owner, "Support").await;

    // Tokens for the application's own users, whoever signed them in.
    let tokens = format!("/v1/server/rooms/{room}/tokens");
    let mint = |user: &str, name: &str| {
        s.call(
            "POST",
            &tokens,
            Some(&backend),
            Some(json!({"user": user, "displayName": name})),
        )
    };
    let (status, ada) = mint("user-17", "Ada").await;
    assert_eq!(status, 201, "{ada}");
    assert_eq!(ada["firebase"]["uid"], "app:user-17");
    assert_eq!(ada["grants"], json!({"publish": true, "subscribe": true}));
    let (_, bo) = mint("user-18@example.com", "Bo").await;
    let ada_peer = join_with(&project, &ada, "ada").await;
    let bo_peer = join_with(&project, &bo, "bo").await;
    for (p, other) in [(&ada_peer, "bo"), (&bo_peer, "ada")] {
        p.wait_until("media from the other", T, |r| r.video_from(other) > 5)
            .await
            .unwrap();
    }
    for (body, fragment) in [
        (json!({"user": "a b", "displayName": "X"}), "`user`"),
        (json!({"user": "", "displayName": "X"}), "`user`"),
        (json!({"user": "u", "displayName": ""}), "displayName"),
        (json!({"user": "u"}), "missing field"),
    ] {
        let got = s
            .call(
                "POST",
                &format!("/v1/server/rooms/{room}/tokens"),
                Some(&backend),
                Some(body.clone()),
            )
            .await;
        assert_eq!(got.0, 400, "{body}: {}", got.1);
        assert!(
            got.1["detail"].as_str().unwrap().contains(fragment),
            "{}",
            got.1
        );
    }

    // The call and who is in it.
    let (status, list) = s
        .call("GET", "/v1/server/rooms", Some(&backend), None)
        .await;
    assert_eq!(status, 200, "{list}");
    let listed = list["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == room.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (
            listed["activeCall"].as_bool(),
            listed["participants"].as_u64()
        ),
        (Some(true), Some(2)),
        "{listed}"
    );
    let (status, people) = s
        .call(
            "GET",
            &format!("/v1/server/rooms/{room}/participants"),
            Some(&backend),
            None,
        )
        .await;
    assert_eq!(status, 200, "{people}");
    let mut names: Vec<(String, String)> = people["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["sessionId"].as_str().unwrap().to_owned(),
                p["uid"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ("ada".to_owned(), "app:user-17".to_owned()),
            ("bo".to_owned(), "app:user-18@example.com".to_owned())
        ]
    );
    let tracks = &people["participants"][0]["tracks"];
    let people_path = format!("/v1/server/rooms/{room}/participants");
    let participants = async || s.call("GET", &people_path, Some(&backend), None).await.1;
    assert_eq!(tracks.as_array().map(Vec::len), Some(2), "{tracks}");

    // The application mutes Ada's camera: Bo stops receiving it while her voice goes on, the
    // roster shows it; unmuting lets it through again.
    let ada_video = people["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["sessionId"] == "ada")
        .and_then(|p| {
            p["tracks"]
                .as_array()?
                .iter()
                .find(|t| t["kind"] == "video")
        })
        .and_then(|t| t["mid"].as_str())
        .unwrap()
        .to_owned();
    let ada_track = format!("/v1/server/rooms/{room}/participants/ada/tracks/{ada_video}");
    let mute = |muted: Value| {
        s.call(
            "PATCH",
            &ada_track,
            Some(&backend),
            Some(json!({ "muted": muted })),
        )
    };
    let (status, track) = mute(json!(true)).await;
    assert_eq!(status, 200, "{track}");
    assert_eq!(
        track,
        json!({"mid": ada_video, "kind": "video", "source": "camera", "muted": true})
    );
    let ada_entry = async |muted: bool| {
        eventually("Ada's roster entry", T, async || {
            let people = participants().await;
            let ada = people["participants"]
                .as_array()?
                .iter()
                .find(|p| p["sessionId"] == "ada")?
                .clone();
            let video = ada["tracks"]
                .as_array()?
                .iter()
                .find(|t| t["kind"] == "video")?;
            (video["muted"] == muted && ada["media"]["video"] == !muted).then_some(ada)
        })
        .await
        .unwrap_or_else(|e| panic!("muted {muted}: {e}"))
    };
    let entry = ada_entry(true).await;
    assert_eq!(entry["media"]["audio"], true, "{entry}");
    let still = eventually("Bo's video from Ada stops", T, async || {
        let before = bo_peer.report().video_from("ada");
        tokio::time::sleep(Duration::from_millis(1000)).await;
        (bo_peer.report().video_from("ada") == before).then_some(before)
    })
    .await
    .unwrap();
    let audio = bo_peer.report().audio_from("ada");
    bo_peer
        .wait_until("Ada's voice while her camera is muted", T, |r| {
            r.audio_from("ada") > audio + 20 && r.video_from("ada") == still
        })
        .await
        .unwrap();
    let (status, track) = mute(json!(false)).await;
    assert_eq!((status, &track["muted"]), (200, &json!(false)), "{track}");
    bo_peer
        .wait_until("Ada's video again", T, |r| r.video_from("ada") > still + 20)
        .await
        .unwrap();
    ada_entry(false).await;
    // A track or session the room does not have is a 404; a body that is not `{muted: bool}`
    // a 400.
    for path in [
        format!("/v1/server/rooms/{room}/participants/ada/tracks/99"),
        format!("/v1/server/rooms/{room}/participants/nobody/tracks/{ada_video}"),
    ] {
        let got = s
            .call("PATCH", &path, Some(&backend), Some(json!({"muted": true})))
            .await;
        assert_problem(&got, 404, "not-found");
    }
    assert_eq!(mute(json!("yes")).await.0, 400);

    // Bo is removed: his session ends with `removed`, he sees it, Ada stays.
    let gone = s
        .call(
            "DELETE",
            &format!("/v1/server/rooms/{room}/participants/bo"),
            Some(&backend),
            None,
        )
        .await;
    assert_eq!(gone.0, 204, "{}", gone.1);
    // The client sees it in its document. (The broadcast may close Bo's peer connection before
    // the document's update reaches his listener, which then stops: read the document too.)
    let seen = bo_peer
        .wait_until("the removal", T, |r| {
            r.error.is_some() || r.finished.is_some()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let doc = bo_peer.doc.read().await.unwrap().unwrap_or_default();
    let code = seen.error.as_ref().map(|(c, _)| c.clone()).or_else(|| {
        doc.pointer("/error/code")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    assert_eq!(code.as_deref(), Some("removed"), "{seen:?} {doc}");
    assert_eq!(doc["state"], "closed", "{doc}");
    // Bo leaves the roster; Ada is the one left, her session still connected.
    let left = eventually("Bo off the roster", T, async || {
        let people = participants().await;
        let list = people["participants"].as_array()?.clone();
        (list.len() == 1).then_some(list)
    })
    .await
    .unwrap();
    assert_eq!(left[0]["sessionId"], "ada", "{left:?}");
    assert_eq!(ada_peer.report().state.as_deref(), Some("connected"));
    // Removing again answers the same (a retried request); someone who is not there: 404.
    let again = s
        .call(
            "DELETE",
            &format!("/v1/server/rooms/{room}/participants/bo"),
            Some(&backend),
            None,
        )
        .await;
    assert_eq!(again.0, 204, "{}", again.1);
    for who in ["ada-not", "nobody", "camera-x"] {
        assert_problem(
            &s.call(
                "DELETE",
                &format!("/v1/server/rooms/{room}/participants/{who}"),
                Some(&backend),
                None,
            )
            .await,
            404,
            "not-found",
        );
    }
    let other = "00000000-0000-0000-0000-000000000000";
    assert_problem(
        &s.call(
            "POST",
            &format!("/v1/server/rooms/{other}/tokens"),
            Some(&backend),
            Some(json!({"user": "u", "displayName": "X"})),
        )
        .await,
        404,
        "not-found",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_route_wants_its_scope() {
    let project = Project::new().await;
    let db = database(None).await;
    let s = Sidecar::start(&project, db.clone(), SidecarOptions::default()).await;
    let (owner, _) = s.user("owner").await;
    let room = s.room(&owner, "Scopes").await;
    let all = key(
        &db,
        &[
            "rooms:read",
            "participants:write",
            "tokens:write",
            "webhooks",
        ],
    );
    let revoked = key(&db, &["rooms:read", "participants:write", "tokens:write"]);
    let (_, listed, _) = apikey(&db, &["list"]);
    revoke_newest(&db, &listed);
    let webhooks_only = key(&db, &["webhooks"]);
    let routes: [(&str, String, Option<Value>, &str); 5] = [
        ("GET", "/v1/server/rooms".into(), None, "rooms:read"),
        (
            "GET",
            format!("/v1/server/rooms/{room}/participants"),
            None,
            "rooms:read",
        ),
        (
            "POST",
            format!("/v1/server/rooms/{room}/tokens"),
            Some(json!({"user": "u1", "displayName": "U"})),
            "tokens:write",
        ),
        (
            "DELETE",
            format!("/v1/server/rooms/{room}/participants/nobody"),
            None,
            "participants:write",
        ),
        (
            "PATCH",
            format!("/v1/server/rooms/{room}/participants/nobody/tracks/1"),
            Some(json!({"muted": true})),
            "participants:write",
        ),
    ];
    for (method, path, body, scope) in &routes {
        assert_problem(
            &s.call(method, path, None, body.clone()).await,
            401,
            "unauthorized",
        );
        assert_problem(
            &s.call(method, path, Some(&owner), body.clone()).await,
            401,
            "unauthorized",
        );
        assert_problem(
            &s.call(method, path, Some(&revoked), body.clone()).await,
            401,
            "unauthorized",
        );
        let refused = s
            .call(method, path, Some(&webhooks_only), body.clone())
            .await;
        assert_problem(&refused, 403, "missing-scope");
        assert!(
            refused.1["detail"].as_str().unwrap().contains(scope),
            "{}",
            refused.1
        );
        let (status, answer) = s.call(method, path, Some(&all), body.clone()).await;
        // Removing or muting nobody is a 404; the others succeed.
        let want = match *method {
            "GET" => 200,
            "POST" => 201,
            _ => 404,
        };
        assert_eq!(status, want, "{method} {path}: {answer}");
    }
}
