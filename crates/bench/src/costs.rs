//! What a meeting costs in Firestore operations (Firestore bills every document read and
//! written): rooms of n str0m participants join a `firesfu broadcast`, stay for a while, leave.
//!
//! Writes are counted from outside, by a listener on every session, roster and member document
//! of the room (distinct document versions; the emulator's replays do not count twice), so the
//! same measurement applies to any server version. Reads that the clients' listeners pay follow
//! from the writes: each session write is read by its owner, each roster (participant) write
//! by every member of the room, each member write by that member. The server's own reads come
//! from its `/stats` meter when it has one.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use firestore::{
    FirestoreDb, FirestoreListenEvent, FirestoreListenerTarget, FirestoreMemListenStateStorage,
};
use serde_json::{Value, json};
use testpeer::{Leave, Peer, PeerSpec};

const COLLECTIONS: [&str; 3] = ["sessions", "participants", "members"];

#[derive(Default)]
struct Tally {
    versions: HashSet<(String, i64)>,
    writes: BTreeMap<String, u64>,
}

/// `…/rooms/{room}/{collection}/{id}` → (room, collection).
fn place(name: &str) -> Option<(String, String)> {
    let path = name.split_once("/documents/")?.1;
    match path.split('/').collect::<Vec<_>>().as_slice() {
        ["rooms", room, collection, _] => Some((room.to_string(), collection.to_string())),
        _ => None,
    }
}

async fn watch(
    db: &FirestoreDb,
    tally: Arc<Mutex<Tally>>,
) -> anyhow::Result<firestore::FirestoreListener<FirestoreDb, FirestoreMemListenStateStorage>> {
    let mut listener = db
        .create_listener(FirestoreMemListenStateStorage::new())
        .await?;
    for (i, c) in COLLECTIONS.iter().enumerate() {
        db.fluent()
            .select()
            .from(*c)
            .all_descendants()
            .listen()
            .add_target(FirestoreListenerTarget::new(100 + i as u32), &mut listener)?;
    }
    listener
        .start(move |event| {
            let tally = tally.clone();
            async move {
                if let FirestoreListenEvent::DocumentChange(change) = event
                    && let Some(doc) = change.document
                    && let Some((room, collection)) = place(&doc.name)
                {
                    let updated = doc
                        .update_time
                        .map(|t| t.seconds * 1_000_000_000 + i64::from(t.nanos))
                        .unwrap_or_default();
                    if let Ok(mut t) = tally.lock()
                        && t.versions.insert((doc.name.clone(), updated))
                    {
                        *t.writes.entry(format!("{room}/{collection}")).or_default() += 1;
                    }
                }
                Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
            }
        })
        .await?;
    Ok(listener)
}

fn writes(tally: &Arc<Mutex<Tally>>, room: &str) -> BTreeMap<&'static str, u64> {
    let t = tally.lock().unwrap();
    COLLECTIONS
        .iter()
        .map(|c| {
            (
                *c,
                t.writes.get(&format!("{room}/{c}")).copied().unwrap_or(0),
            )
        })
        .collect()
}

fn minus(
    a: &BTreeMap<&'static str, u64>,
    b: &BTreeMap<&'static str, u64>,
) -> BTreeMap<&'static str, u64> {
    a.iter()
        .map(|(k, v)| (*k, v - b.get(k).copied().unwrap_or(0)))
        .collect()
}

/// Reads the clients' listeners pay for these writes in a room of `n`.
fn listener_reads(w: &BTreeMap<&'static str, u64>, n: usize) -> u64 {
    w["sessions"] + w["participants"] * n as u64 + w["members"]
}

async fn server_meter(stats_url: &str) -> Option<Value> {
    let stats: Value = reqwest::get(stats_url).await.ok()?.json().await.ok()?;
    stats.get("firestore").cloned()
}

fn delta(after: &Option<Value>, before: &Option<Value>, field: &str) -> Option<u64> {
    Some(after.as_ref()?.get(field)?.as_u64()? - before.as_ref()?.get(field)?.as_u64()?)
}

pub async fn run(
    emulator: &str,
    project: &str,
    stats_url: &str,
    sizes: &[usize],
    seconds: u64,
    bind_ip: IpAddr,
) -> anyhow::Result<Value> {
    let db = testpeer::firestore::connect_emulator(emulator, project).await?;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut listener = watch(&db, tally.clone()).await?;
    let mut results = Vec::new();
    for &n in sizes {
        let room = format!("costs-{n}-{:06x}", rand::random::<u32>() & 0xffffff);
        testpeer::firestore::create_room(&db, &room).await?;
        let meter0 = server_meter(stats_url).await;
        let started = Instant::now();
        let mut peers = Vec::new();
        for i in 0..n {
            let mut spec = PeerSpec::new(&room, &format!("p{i}"));
            spec.bind_ip = bind_ip;
            // Small video frames: this measures documents, not media.
            spec.video = testpeer::VideoSource::Tagged { frame_bytes: 300 };
            peers.push(Peer::join(&db, spec).await?);
        }
        for p in &peers {
            let others: Vec<String> = (0..n)
                .map(|i| format!("p{i}"))
                .filter(|o| *o != p.spec.session)
                .collect();
            p.wait_until("everyone", Duration::from_secs(120), |r| {
                others
                    .iter()
                    .all(|o| r.video_from(o) > 0 && r.audio_from(o) > 0)
            })
            .await
            .with_context(|| format!("room of {n}"))?;
        }
        let joined_in = started.elapsed();
        // Let the last views and roster writes of the join land.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let w_join = writes(&tally, &room);
        let meter1 = server_meter(stats_url).await;
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let w_steady = minus(&writes(&tally, &room), &w_join);
        let meter2 = server_meter(stats_url).await;
        for p in peers {
            p.leave(Leave::Close).await?;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let w_leave = minus(&minus(&writes(&tally, &room), &w_join), &w_steady);

        let minutes = n as f64 * seconds as f64 / 60.0;
        let per_minute = |v: u64| (v as f64 / minutes * 10.0).round() / 10.0;
        let steady_writes: u64 = w_steady.values().sum();
        results.push(json!({
            "participants": n,
            "joinedInSeconds": joined_in.as_secs_f64(),
            "join": {
                "writesPerParticipant": w_join.values().sum::<u64>() as f64 / n as f64,
                "clientReadsPerParticipant": listener_reads(&w_join, n) as f64 / n as f64,
                "serverReads": delta(&meter1, &meter0, "reads"),
                "serverListened": delta(&meter1, &meter0, "listened"),
                "writesByCollection": w_join,
            },
            "steady": {
                "seconds": seconds,
                "writesPerParticipantMinute": per_minute(steady_writes),
                "clientReadsPerParticipantMinute": per_minute(listener_reads(&w_steady, n)),
                "serverReadsPerParticipantMinute": delta(&meter2, &meter1, "reads").map(per_minute),
                "serverListenedPerParticipantMinute": delta(&meter2, &meter1, "listened").map(per_minute),
                "writesByCollection": w_steady,
            },
            "leave": {
                "writesPerParticipant": w_leave.values().sum::<u64>() as f64 / n as f64,
                "writesByCollection": w_leave,
            },
        }));
    }
    let _ = listener.shutdown().await;
    Ok(json!({ "rooms": results }))
}
