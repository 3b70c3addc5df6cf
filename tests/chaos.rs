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
