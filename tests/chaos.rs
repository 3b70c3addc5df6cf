//! Chaos: the services firesfu depends on fail while users keep using it, and each test asserts
//! what those users observe (docs/reliability.md).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Project;
use common::sidecar::{OwnCluster, Sidecar, SidecarOptions, database};
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// What one request of the stream got.
#[derive(Debug, Clone)]
struct Outcome {
    at: Duration,
    what: &'static str,
    status: u16,
    retry_after: bool,
    problem: Option<String>,
    room: Option<String>,
}

/// One request of the mix a signed-in user makes: list rooms, read themself, create a room,
/// sign in again (password hashing plus a session row).
async fn one(s: &Sidecar, token: &str, i: usize, start: Instant) -> Outcome {
    let (what, req) = match i % 4 {
        0 => (
            "list rooms",
            s.http.get(s.url("/v1/rooms")).bearer_auth(token),
        ),
        1 => ("me", s.http.get(s.url("/v1/me")).bearer_auth(token)),
        2 => (
            "create room",
            s.http
                .post(s.url("/v1/rooms"))
                .bearer_auth(token)
                .json(&json!({"name": format!("Chaos {i}")})),
        ),
        _ => (
            "sign in",
            s.http
                .post(s.url("/v1/sessions"))
                .json(&json!({"username": "ada", "password": "correct horse battery"})),
        ),
    };
    let resp = req
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: no HTTP answer at all: {e}"));
    let status = resp.status().as_u16();
    let retry_after = resp.headers().contains_key("retry-after");
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    Outcome {
        at: start.elapsed(),
        what,
        status,
        retry_after,
        problem: body["type"].as_str().map(str::to_owned),
        room: (status == 201)
            .then(|| body["id"].as_str().map(str::to_owned))
            .flatten(),
    }
}

/// PostgreSQL stops (immediate shutdown, as a crash) for 4 s while four clients keep making
/// requests: every answer is a success, a 4xx for the request itself, or 503 with
/// `Retry-After` and the `unavailable` problem; never a 500, never a dropped connection. Once
/// the database is back every kind of request succeeds again within a stated time, and every
/// room whose creation was answered 201 exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_under_load_answers_503_never_500_and_recovers() {
    const OUTAGE: Duration = Duration::from_secs(4);
    const RECOVERY_BOUND: Duration = Duration::from_secs(10);
    let project = Project::new().await;
    let cluster = OwnCluster::start();
    let s = Arc::new(
        Sidecar::start(
            &project,
            database(Some(&cluster)).await,
            SidecarOptions::default(),
        )
        .await,
    );
    let (token, _) = s.user("ada").await;
    let start = Instant::now();
    let outcomes = Arc::new(Mutex::new(Vec::<Outcome>::new()));
    let stop_at = Arc::new(Mutex::new(None::<Instant>));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (s, token, outcomes, stop_at) =
            (s.clone(), token.clone(), outcomes.clone(), stop_at.clone());
        clients.push(tokio::spawn(async move {
            let mut i = c;
            loop {
                if stop_at.lock().await.is_some_and(|t| Instant::now() > t) {
                    break;
                }
                let o = one(&s, &token, i, start).await;
                outcomes.lock().await.push(o);
                i += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let down_at = start.elapsed();
    cluster.stop();
    tokio::time::sleep(OUTAGE).await;
    cluster.resume();
    let up_at = start.elapsed();
    // Recovered: every kind of request has succeeded since the database came back.
    let recovered = common::eventually("recovery", RECOVERY_BOUND, async || {
        let seen = outcomes.lock().await;
        let kinds = ["list rooms", "me", "create room", "sign in"];
        kinds
            .iter()
            .all(|k| {
                seen.iter()
                    .any(|o| o.what == *k && o.at > up_at && o.status < 300)
            })
            .then(|| seen.iter().filter(|o| o.at > up_at).map(|o| o.at).min())
            .flatten()
    })
    .await;
    *stop_at.lock().await = Some(Instant::now() + Duration::from_secs(1));
    for c in clients {
        c.await
            .expect("a client panicked: a request got no HTTP answer");
    }
    let seen = outcomes.lock().await.clone();
    let unavailable: Vec<&Outcome> = seen.iter().filter(|o| o.status == 503).collect();
    eprintln!(
        "{} requests: {} answered 503 (database down {:?}..{:?}); recovered: {:?}",
        seen.len(),
        unavailable.len(),
        down_at,
        up_at,
        recovered
    );
    for o in &seen {
        match o.status {
            200..=299 => {}
            // Unavailable (the database) or overloaded (hashing), and when to try again; a
            // sign-in limit is the only other refusal this mix can meet.
            503 | 429 => {
                assert!(o.retry_after, "{} without Retry-After: {o:?}", o.status);
                assert!(
                    o.problem.as_deref().is_some_and(|p| [
                        ":unavailable",
                        ":overloaded",
                        ":rate-limited"
                    ]
                    .iter()
                    .any(|slug| p.ends_with(slug))),
                    "{o:?}"
                );
            }
            _ => panic!("an answer a user should never get: {o:?}"),
        }
    }
    assert!(
        !unavailable.is_empty(),
        "no request met the outage: the test proved nothing"
    );
    let recovered = recovered.expect("every kind of request succeeds again within 10 s");
    eprintln!(
        "first success after the database came back: {:?} later",
        recovered.saturating_sub(up_at)
    );
    // Nothing answered 201 was lost.
    let (status, list) = s.call("GET", "/v1/rooms", Some(&token), None).await;
    assert_eq!(status, 200);
    let listed: Vec<&str> = list["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    for o in seen.iter().filter(|o| o.room.is_some()) {
        assert!(
            listed.contains(&o.room.as_deref().unwrap()),
            "room created at {:?} (201) is gone",
            o.at
        );
    }
}

/// Waits until `peer` has received `frames` more video frames from `from` than `since`.
async fn receives(peer: &testpeer::Peer, from: &str, since: u64, frames: u64) {
    peer.wait_until(
        &format!("video from {from}"),
        Duration::from_secs(20),
        |r| r.video_from(from) >= since + frames,
    )
    .await
    .unwrap();
}

/// Firestore fails under a running call, twice. First it is frozen (SIGSTOP) for 6 s, an outage
/// with its data intact: media between the people in the call keeps flowing, and once it
/// answers again the listeners recover: a new participant is answered within a stated time and
/// receives the others. Then it is killed (SIGKILL) and restarted empty, a loss of every
/// document: the room documents come back from PostgreSQL within a reconcile period, the
/// sessions whose documents are gone end (the documents are the truth), and people joining
/// again meet within a stated time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firestore_outage_and_loss_calls_go_on_rooms_come_back_joins_are_answered() {
    use common::emulators::{Kind, OwnedEmulator};
    const BOUND: Duration = Duration::from_secs(15);
    let mut firestore = OwnedEmulator::start(Kind::Firestore);
    let project = Project::at(&firestore.host).await;
    let s = Sidecar::start(
        &project,
        database(None).await,
        SidecarOptions {
            env: vec![("FIRESFU_ROOM_RECONCILE_SECS".into(), "3".into())],
            ..Default::default()
        },
    )
    .await;
    let (token, _) = s.user("ada").await;
    let (status, created) = s
        .call(
            "POST",
            "/v1/rooms",
            Some(&token),
            Some(json!({"name": "Weekly"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let room = created["id"].as_str().unwrap().to_owned();
    // Held sessions are checked against their documents every 3 s (default 30 s).
    let broadcast = common::Broadcast::start_with(
        &project,
        common::BroadcastOptions {
            extra: vec![("FIRESFU_RECONCILE_SECS".into(), "3".into())],
            ..Default::default()
        },
    )
    .await;
    let alice = project.join(&room, "alice").await;
    let bob = project.join(&room, "bob").await;
    receives(&bob, "alice", 0, 20).await;
    receives(&alice, "bob", 0, 20).await;

    // 1. Frozen: unreachable, data intact.
    let before = bob.report().video_from("alice");
    firestore.freeze();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let during = bob.report().video_from("alice") - before;
    firestore.thaw();
    let thawed = Instant::now();
    assert!(
        during > 60,
        "media stalled while Firestore was frozen: {during} frames in 6 s"
    );
    let carol = project.join(&room, "carol").await;
    carol
        .wait_until("answered and connected", BOUND, |r| r.connected)
        .await
        .unwrap();
    let carol_in = thawed.elapsed();
    receives(&carol, "alice", 0, 10).await;
    receives(&alice, "carol", 0, 10).await;

    // 2. Killed and restarted empty: every document is gone.
    firestore.kill();
    let restart_took = firestore.restart();
    let restarted = Instant::now();
    let room_back = common::eventually("the room document restored", BOUND, async || {
        let doc = project.room_doc(&room).await;
        doc.filter(|d| d["name"] == "Weekly")
            .map(|_| restarted.elapsed())
    })
    .await
    .unwrap();
    let ended = common::eventually("the sessions without documents ended", BOUND, async || {
        (broadcast.stats().await.ok()?["peers"].as_u64()? == 0).then(|| restarted.elapsed())
    })
    .await
    .unwrap();
    let dave = project.join(&room, "dave").await;
    let alice_again = project.join(&room, "alice-2").await;
    receives(&dave, "alice-2", 0, 10).await;
    receives(&alice_again, "dave", 0, 10).await;
    let met = restarted.elapsed();
    eprintln!(
        "firestore frozen 6 s: {during} frames alice → bob meanwhile; a join answered and \
         connected {carol_in:?} after it thawed. killed and restarted empty (start took \
         {restart_took:?}): room document restored {room_back:?}, orphaned sessions ended \
         {ended:?}, two people joining again receive each other {met:?} after the restart"
    );
    for p in [alice, bob, carol, dave, alice_again] {
        let _ = p.leave(testpeer::Leave::Vanish).await;
    }
}
