//! Webhooks end to end: str0m participants meet in a room on a broadcast instance publishing
//! events; a sidecar delivers them to a Python receiver that verifies every delivery with the
//! Standard Webhooks reference library (`standardwebhooks`, PyPI). Also: retries keep the
//! `webhook-id`, a hanging receiver delays nobody else, dead letters are listed and replayed, a
//! killed deliverer loses nothing, and the API's keys and scopes.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use common::fleet::{Member, Monitor, assigned, fleet_broadcast, until_everyone_receives_everyone};
use common::sidecar::{Sidecar, SidecarOptions, assert_problem, database};
use common::webhooks::{
    Receiver, accepted, apikey, broadcast, endpoint, revoke_newest, sidecar, sidecar_env,
    subscribed, types, webhooks_key,
};
use common::{Project, eventually};
use serde_json::{Value, json};
use testpeer::Leave;

const T: Duration = Duration::from_secs(30);

/// Two people meet and leave: the events every endpoint should get, by type.
fn call_of_two() -> BTreeMap<&'static str, usize> {
    BTreeMap::from([
        ("room.started", 1),
        ("participant.joined", 2),
        ("track.published", 4),
        ("participant.left", 2),
        ("room.finished", 1),
    ])
}

fn count(deliveries: &[Value]) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    for t in types(deliveries) {
        *n.entry(t).or_default() += 1;
    }
    n
}

fn same(got: &[Value], want: &BTreeMap<&str, usize>) -> bool {
    count(got) == want.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Sequences in arrival order are 1, 2, 3… (one source, one room: in order, none missing).
fn assert_in_order(name: &str, deliveries: &[Value]) {
    let seq: Vec<u64> = deliveries
        .iter()
        .map(|d| d["event"]["data"]["sequence"].as_u64().unwrap())
        .collect();
    let want: Vec<u64> = (1..=seq.len() as u64).collect();
    assert_eq!(seq, want, "{name}: {:?}", types(deliveries));
}

/// Alice and Bob meet in `room` (both receive each other), then both close their sessions.
/// (Not a deletion: the Firestore emulator's listener once missed Bob's deleted document under
/// make test's load, and only the peer timeout ended his session, 15 s later.)
async fn meet_and_leave(project: &Project, room: &str) {
    let alice = project.join(room, "alice").await;
    let bob = project.join(room, "bob").await;
    for (p, other) in [(&alice, "bob"), (&bob, "alice")] {
        p.wait_until("media from the other", T, |r| r.video_from(other) > 5)
            .await
            .unwrap();
    }
    alice.leave(Leave::Close).await.unwrap();
    bob.leave(Leave::Close).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_reaches_every_endpoint_signed_in_order_and_a_dead_one_gets_it_replayed() {
    let project = Project::new().await;
    let receiver = Receiver::start().await;
    let _broadcast = broadcast(&project).await;
    let db = database(None).await;
    // Given up 20 s after arrival: the retried endpoint's last event (behind 9 others, each
    // failing 3 times) is delivered well before; the dead one's are dead letters then.
    let s = sidecar(&project, db.clone(), 20).await;
    let key = webhooks_key(&db);
    endpoint(&s, &key, &receiver, ("ok", "all"), &[]).await;
    endpoint(&s, &key, &receiver, ("fail3", "retried"), &[]).await;
    let hanging = endpoint(&s, &key, &receiver, ("hang", "hanging"), &[]).await;
    let dead = endpoint(&s, &key, &receiver, ("flaky", "dead"), &[]).await;
    endpoint(
        &s,
        &key,
        &receiver,
        ("ok", "calls"),
        &["room.started", "room.finished"],
    )
    .await;
    receiver.flaky("dead", false);

    let room = project.room("standup").await;
    meet_and_leave(&project, &room).await;
    let want = call_of_two();

    // The plain endpoint: everything, verified, in order, soon — while another endpoint hangs.
    let all = eventually("every event at `all`", T, async || {
        let got = accepted(&receiver, "all");
        same(&got, &want).then_some(got)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}", types(&accepted(&receiver, "all"))));
    assert_in_order("all", &all);
    assert_eq!(types(&all).first().unwrap(), "room.started");
    assert_eq!(types(&all).last().unwrap(), "room.finished");
    for d in &all {
        assert_eq!(d["event"]["data"]["room"], room.as_str());
        assert!(d["id"].as_str().unwrap().starts_with("evt_"));
    }
    let lefts: Vec<&Value> = all
        .iter()
        .filter(|d| d["event"]["type"] == "participant.left")
        .collect();
    for l in &lefts {
        assert_eq!(l["event"]["data"]["reason"], "left", "{l}");
    }
    let joined_names: HashSet<&str> = all
        .iter()
        .filter(|d| d["event"]["type"] == "participant.joined")
        .map(|d| {
            d["event"]["data"]["participant"]["sessionId"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(joined_names, HashSet::from(["alice", "bob"]));
    let latencies: Vec<i64> = all
        .iter()
        .map(|d| {
            let at =
                chrono::DateTime::parse_from_rfc3339(d["event"]["timestamp"].as_str().unwrap())
                    .unwrap()
                    .timestamp_millis();
            d["arrived"].as_i64().unwrap() - at
        })
        .collect();
    println!("event -> delivered (ms), `all` (another endpoint hangs): {latencies:?}");
    assert!(
        latencies.iter().all(|ms| *ms < 5_000),
        "a hanging endpoint delayed another: {latencies:?}"
    );

    // Fails 3 times per event, then accepts: the same webhook-id each time.
    let retried = eventually("every event at `retried`", T, async || {
        let got = accepted(&receiver, "retried");
        same(&got, &want).then_some(got)
    })
    .await
    .unwrap();
    assert_in_order("retried", &retried);
    let ids_all: HashSet<String> = all.iter().map(|d| d["id"].to_string()).collect();
    let ids_retried: HashSet<String> = retried.iter().map(|d| d["id"].to_string()).collect();
    assert_eq!(
        ids_all, ids_retried,
        "an event has one id for every endpoint"
    );
    for d in &retried {
        assert_eq!(d["attempt"], 4, "accepted at the 4th attempt: {d}");
        let tries = receiver
            .requests_of("retried")
            .into_iter()
            .filter(|r| r["id"] == d["id"])
            .count();
        assert_eq!(tries, 4);
    }

    // The filtered endpoint gets only the call's start and end.
    let calls = eventually("the call at `calls`", T, async || {
        let got = accepted(&receiver, "calls");
        (got.len() == 2).then_some(got)
    })
    .await
    .unwrap();
    assert_eq!(types(&calls), ["room.started", "room.finished"]);

    // The dead endpoint's deliveries are given up after 20 s and listed, oldest first.
    let failed = eventually("dead letters", T, async || {
        let (status, body) = s
            .call(
                "GET",
                &format!("/v1/webhooks/{dead}/failed"),
                Some(&key),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let list = body["deliveries"].as_array().cloned().unwrap_or_default();
        (list.len() == 10).then_some(list)
    })
    .await
    .unwrap();
    assert_eq!(failed[0]["type"], "room.started");
    assert_eq!(failed[0]["lastStatus"], 503);
    assert_eq!(failed[0]["payload"]["data"]["room"], room.as_str());
    let (_, endpoint_doc) = s
        .call("GET", &format!("/v1/webhooks/{dead}"), Some(&key), None)
        .await;
    assert_eq!(
        (
            endpoint_doc["failed"].as_i64(),
            endpoint_doc["pending"].as_i64()
        ),
        (Some(10), Some(0))
    );
    assert!(endpoint_doc.get("secret").is_none(), "{endpoint_doc}");
    // It comes back; replaying delivers all of them, same ids, in order.
    receiver.flaky("dead", true);
    let (status, replayed) = s
        .call(
            "POST",
            &format!("/v1/webhooks/{dead}/failed/replay"),
            Some(&key),
            Some(json!({})),
        )
        .await;
    assert_eq!((status, replayed["replayed"].as_u64()), (200, Some(10)));
    let revived = eventually("the replayed events", T, async || {
        let got = accepted(&receiver, "dead");
        same(&got, &want).then_some(got)
    })
    .await
    .unwrap();
    assert_in_order("dead", &revived);
    let ids_dead: HashSet<String> = revived.iter().map(|d| d["id"].to_string()).collect();
    assert_eq!(ids_dead, ids_all);

    // Every request any endpoint got was verified by the library.
    let bad: Vec<Value> = receiver
        .requests()
        .into_iter()
        .filter(|r| r["verified"] != true)
        .collect();
    assert!(bad.is_empty(), "unverified deliveries: {bad:?}");
    // The hanging endpoint goes, with what it still owed.
    let (status, _) = s
        .call(
            "DELETE",
            &format!("/v1/webhooks/{hanging}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = s
        .call("GET", &format!("/v1/webhooks/{hanging}"), Some(&key), None)
        .await;
    assert_eq!(status, 404);
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_deliverer_loses_nothing_and_repeats_only_with_the_same_id() {
    let project = Project::new().await;
    let receiver = Receiver::start().await;
    let _broadcast = broadcast(&project).await;
    let db = database(None).await;
    let mut s = sidecar(&project, db.clone(), 600).await;
    let key = webhooks_key(&db);
    endpoint(&s, &key, &receiver, ("slow-700", "slow"), &[]).await;
    endpoint(&s, &key, &receiver, ("ok", "quick"), &[]).await;
    let room = project.room("kill").await;
    let alice = project.join(&room, "alice").await;
    let bob = project.join(&room, "bob").await;
    bob.wait_until("media from alice", T, |r| r.video_from("alice") > 5)
        .await
        .unwrap();
    // Killed while the slow endpoint is being delivered to (one delivery in flight, more due).
    eventually("a delivery under way", T, async || {
        (receiver.requests_of("slow").len() >= 2).then_some(())
    })
    .await
    .unwrap();
    s.kill();
    let killed = receiver.requests_of("slow").len();
    // What happens while no sidecar runs waits in Pub/Sub.
    let carol = project.join(&room, "carol").await;
    carol
        .wait_until("media from bob", T, |r| r.video_from("bob") > 5)
        .await
        .unwrap();
    carol.leave(Leave::Close).await.unwrap();
    bob.leave(Leave::Close).await.unwrap();
    alice.leave(Leave::Close).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s = Sidecar::start(
        &project,
        db.clone(),
        SidecarOptions {
            env: sidecar_env(600),
            ..Default::default()
        },
    )
    .await;
    subscribed(&s).await;
    let want = BTreeMap::from([
        ("room.started", 1),
        ("participant.joined", 3),
        ("track.published", 6),
        ("participant.left", 3),
        ("room.finished", 1),
    ]);
    for name in ["quick", "slow"] {
        let got = eventually(name, Duration::from_secs(60), async || {
            let got = accepted(&receiver, name);
            same(&got, &want).then_some(got)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}: {:?}", count(&accepted(&receiver, name))));
        assert_in_order(name, &got);
    }
    let requests = receiver.requests_of("slow");
    let ids: HashSet<&str> = requests.iter().map(|r| r["id"].as_str().unwrap()).collect();
    println!(
        "slow endpoint: {} requests for {} events ({} before the kill); repeats carry the same id",
        requests.len(),
        ids.len(),
        killed
    );
    assert_eq!(ids.len(), 14);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_wants_a_valid_key_with_the_scope() {
    let project = Project::new().await;
    let db = database(None).await;
    let s = Sidecar::start(&project, db.clone(), SidecarOptions::default()).await;
    let key = webhooks_key(&db);
    let revoked = webhooks_key(&db);
    let (ok, listed, _) = apikey(&db, &["list"]);
    assert!(ok);
    assert!(!listed.contains("fsk_"), "keys are never listed: {listed}");
    revoke_newest(&db, &listed);
    let (ok, _, err) = apikey(
        &db,
        &["create", "--name", "x", "--scope", "rooms:everything"],
    );
    assert!(!ok && err.contains("unknown scope"), "{err}");
    // A key without the scope (none of today's routes needs another one).
    let unscoped = "fsk_unscoped-test-key-000000000000000000000000";
    let pool = sqlx::PgPool::connect(&db).await.unwrap();
    sqlx::query(
        "INSERT INTO api_keys (id, name, key_hash, scopes) \
         VALUES ($1, 'none', sha256(convert_to($2, 'UTF8')), '{}')",
    )
    .bind(uuid::Uuid::new_v4())
    .bind(unscoped)
    .execute(&pool)
    .await
    .unwrap();
    let (status, created) = s
        .call(
            "POST",
            "/v1/webhooks",
            Some(&key),
            Some(json!({"url": "https://example.test/hooks"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    let id = created["id"].as_str().unwrap();
    let routes = [
        ("GET", "/v1/webhooks".to_string(), None),
        (
            "POST",
            "/v1/webhooks".into(),
            Some(json!({"url": "https://example.test/2"})),
        ),
        ("GET", format!("/v1/webhooks/{id}"), None),
        (
            "PATCH",
            format!("/v1/webhooks/{id}"),
            Some(json!({"description": "main"})),
        ),
        ("POST", format!("/v1/webhooks/{id}/secret"), None),
        ("GET", format!("/v1/webhooks/{id}/failed"), None),
        (
            "POST",
            format!("/v1/webhooks/{id}/failed/replay"),
            Some(json!({})),
        ),
        ("DELETE", format!("/v1/webhooks/{id}"), None),
    ];
    let (user_token, _) = s.user("alice").await;
    for (method, path, body) in &routes {
        for (who, token, want) in [
            ("no key", None, (401, "unauthorized")),
            (
                "an access token",
                Some(user_token.as_str()),
                (401, "unauthorized"),
            ),
            (
                "a revoked key",
                Some(revoked.as_str()),
                (401, "unauthorized"),
            ),
            (
                "a key without the scope",
                Some(unscoped),
                (403, "missing-scope"),
            ),
        ] {
            let got = s.call(method, path, token, body.clone()).await;
            assert_problem(&got, want.0, want.1);
            assert!(
                got.1["detail"].as_str().is_some(),
                "{method} {path} with {who}: {}",
                got.1
            );
        }
        let (status, body) = s.call(method, path, Some(&key), body.clone()).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {body}"
        );
        if *method == "POST" && path.ends_with("/secret") {
            assert_ne!(body["secret"], created["secret"], "a new secret");
        } else if *method != "DELETE" && !path.ends_with("/failed/replay") {
            assert!(
                body.to_string().contains("whsec_")
                    == (*method == "POST" && path == "/v1/webhooks"),
                "the secret only when created: {method} {path} {body}"
            );
        }
    }
    // Bad endpoints, each with its reason.
    for (body, fragment) in [
        (json!({"url": "ftp://example.test/x"}), "http"),
        (
            json!({"url": "https://user:pw@example.test/x"}),
            "credentials",
        ),
        (json!({"url": "https://example.test/x#frag"}), "fragment"),
        (json!({"url": "not a url"}), "not a URL"),
        (
            json!({"url": "https://example.test/x", "eventTypes": ["room.exploded"]}),
            "unknown variant",
        ),
        (
            json!({"url": "https://example.test/x", "colour": "red"}),
            "unknown field",
        ),
    ] {
        let got = s
            .call("POST", "/v1/webhooks", Some(&key), Some(body.clone()))
            .await;
        assert_eq!(got.0, 400, "{body}: {}", got.1);
        assert!(
            got.1["detail"].as_str().unwrap().contains(fragment),
            "{body}: {}",
            got.1
        );
    }
    assert_eq!(
        s.call("GET", "/v1/webhooks/not-a-uuid", Some(&key), None)
            .await
            .0,
        404
    );
}

/// A drain moves the room: `room.moved` from the monitor, the old instance's leaves say
/// `room-moved`, and the call neither finishes nor starts again until everyone really leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_room_keeps_its_call() {
    let project = Project::new().await;
    let receiver = Receiver::start().await;
    let db = database(None).await;
    let s = sidecar(&project, db.clone(), 600).await;
    let key = webhooks_key(&db);
    endpoint(&s, &key, &receiver, ("ok", "fleet"), &[]).await;
    let events = [("FIRESFU_EVENTS", "true")];
    let mut instances = [
        fleet_broadcast(&project, "bc-a", &events).await,
        fleet_broadcast(&project, "bc-b", &events).await,
    ];
    let _monitor = Monitor::start(&project, "mon-1", 2000).await;
    let room = project.room("moving").await;
    let (first, _) = assigned(&project, &room).await;
    let mut members = vec![
        Member::join(&project, &room, "alice").await,
        Member::join(&project, &room, "bob").await,
    ];
    until_everyone_receives_everyone(&project, &mut members, 20, T)
        .await
        .unwrap();
    instances
        .iter_mut()
        .find(|b| b.instance == first)
        .unwrap()
        .signal_term();
    let deadline = Instant::now() + T;
    while members.iter().any(|m| m.moves == 0) {
        for m in members.iter_mut() {
            m.follow(&project).await;
        }
        assert!(Instant::now() < deadline, "the sessions were not moved");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    until_everyone_receives_everyone(&project, &mut members, 20, T)
        .await
        .unwrap();
    for m in members {
        m.peer.leave(Leave::Close).await.unwrap();
    }
    let want = BTreeMap::from([
        ("room.started", 1),
        ("participant.joined", 4),
        ("track.published", 8),
        ("room.moved", 1),
        ("participant.left", 4),
        ("room.finished", 1),
    ]);
    let got = eventually("the moved call's events", T, async || {
        let got = accepted(&receiver, "fleet");
        same(&got, &want).then_some(got)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}", types(&accepted(&receiver, "fleet"))));
    assert_eq!(types(&got).first().unwrap(), "room.started");
    assert_eq!(types(&got).last().unwrap(), "room.finished");
    let moved = got
        .iter()
        .find(|d| d["event"]["type"] == "room.moved")
        .unwrap();
    let data = &moved["event"]["data"];
    assert_eq!(
        (
            data["from"].as_str(),
            data["reason"].as_str(),
            data["source"].as_str()
        ),
        (
            Some(first.as_str()),
            Some("instance-draining"),
            Some("monitor")
        ),
        "{moved}"
    );
    let mut reasons: Vec<&str> = got
        .iter()
        .filter(|d| d["event"]["type"] == "participant.left")
        .map(|d| d["event"]["data"]["reason"].as_str().unwrap())
        .collect();
    reasons.sort();
    assert_eq!(reasons, ["left", "left", "room-moved", "room-moved"]);
    let finished = got.last().unwrap();
    assert_ne!(finished["event"]["data"]["instance"], first.as_str());
}

/// `make bench`: `BENCH_EVENTS` (2000) synthetic events over 100 rooms published on the events
/// topic at once (as instances would), delivered by one sidecar (FIRESFU_TEST_BIN: the release
/// build) to a quick endpoint while a slow one (200 ms per request) is registered too. Prints
/// `WEBHOOK-BENCH {json}`: event → delivered p50/p95 and the quick endpoint's throughput.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: make bench"]
async fn webhook_benchmark() {
    use prost::Message as _;
    let n: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let project = Project::new().await;
    let receiver = Receiver::start().await;
    let db = database(None).await;
    let s = sidecar(&project, db.clone(), 600).await;
    let key = webhooks_key(&db);
    endpoint(&s, &key, &receiver, ("ok", "quick"), &[]).await;
    endpoint(&s, &key, &receiver, ("slow-200", "slow"), &[]).await;
    let pubsub = firesfu::gcp::PubsubArgs {
        pubsub_emulator_host: Some(common::fleet::pubsub()),
        load_topic: "firesfu-load".into(),
        events_topic: "firesfu-events".into(),
    };
    let publisher = firesfu::gcp::publisher_to(&project.id, &pubsub, "firesfu-events")
        .await
        .unwrap();
    let started = Instant::now();
    let mut sent = Vec::with_capacity(n);
    for i in 0..n {
        let room = format!("room-{}", i % 100);
        let event = firesfu::events::proto::Event {
            id: firesfu::events::new_id(),
            room_id: room.clone(),
            at_unix_ms: now_ms(),
            source: "bench".into(),
            sequence: (i / 100 + 1) as u64,
            kind: Some(firesfu::events::Kind::ParticipantJoined(
                firesfu::events::proto::ParticipantJoined {
                    participant: Some(firesfu::events::proto::Participant {
                        session_id: format!("s{i}"),
                        display_name: "Bench".into(),
                        ..Default::default()
                    }),
                },
            )),
        };
        let message = google_cloud_pubsub::model::Message::new()
            .set_data(event.encode_to_vec())
            .set_ordering_key(room);
        sent.push(publisher.publish(message));
    }
    for f in sent {
        f.await.unwrap();
    }
    let published = started.elapsed();
    let got = eventually(
        "every event at the quick endpoint",
        Duration::from_secs(300),
        async || {
            let got = accepted(&receiver, "quick");
            (got.len() >= n).then_some(got)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}: {} of {n}", accepted(&receiver, "quick").len()));
    let mut latency: Vec<f64> = got
        .iter()
        .map(|d| {
            let at =
                chrono::DateTime::parse_from_rfc3339(d["event"]["timestamp"].as_str().unwrap())
                    .unwrap()
                    .timestamp_millis();
            (d["arrived"].as_i64().unwrap() - at) as f64
        })
        .collect();
    let first = got
        .iter()
        .map(|d| d["arrived"].as_i64().unwrap())
        .min()
        .unwrap();
    let last = got
        .iter()
        .map(|d| d["arrived"].as_i64().unwrap())
        .max()
        .unwrap();
    let slow = accepted(&receiver, "slow").len();
    // How fast the intake stored the events (Pub/Sub → PostgreSQL), apart from delivery.
    let pool = sqlx::PgPool::connect(&db).await.unwrap();
    let (stored_ms,): (f64,) = sqlx::query_as(
        "SELECT (extract(epoch FROM max(created_at) - min(created_at)) * 1000)::float8 \
         FROM webhook_deliveries",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    latency.sort_by(f64::total_cmp);
    let pct = |p: f64| latency[((p / 100.0) * (latency.len() - 1) as f64).round() as usize];
    println!(
        "WEBHOOK-BENCH {}",
        json!({
            "events": n,
            "rooms": 100,
            "publishedInMs": published.as_millis() as u64,
            "storedInMs": stored_ms.round(),
            "eventToDeliveredP50Ms": pct(50.0),
            "eventToDeliveredP95Ms": pct(95.0),
            "eventToDeliveredMaxMs": pct(100.0),
            "quickPerSecond": (n as f64 * 1000.0 / ((last - first).max(1) as f64)).round(),
            "slowDeliveredMeanwhile": slow,
        })
    );
}
