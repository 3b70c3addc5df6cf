//! The fleet against the Firestore and Pub/Sub emulators: broadcast instances report load,
//! monitors place rooms, rooms move off dead and draining instances, a standby monitor takes
//! over, a full fleet says so. Participants are str0m peers that join again on `room-moved`.

mod common;

use std::time::{Duration, Instant};

use common::fleet::{
    Member, Monitor, assigned, assignment, fleet_broadcast, until_everyone_receives_everyone,
};
use common::{Broadcast, Project, eventually};
use testpeer::{Peer, PeerSpec};

const T: Duration = Duration::from_secs(30);

fn on<'a>(instances: &'a mut [Broadcast], id: &str) -> &'a mut Broadcast {
    instances
        .iter_mut()
        .find(|b| b.instance == id)
        .expect("a known instance")
}

/// Waits until every member's session was moved at least once, then until everyone receives
/// everyone again. Returns the time since `since`.
async fn recovered(project: &Project, members: &mut [Member], since: Instant) -> Duration {
    let deadline = Instant::now() + T;
    while members.iter().any(|m| m.moves == 0) {
        for m in members.iter_mut() {
            m.follow(project).await;
        }
        if Instant::now() > deadline {
            let reports: Vec<String> = members
                .iter()
                .map(|m| format!("{}: {:?}", m.session(), m.peer.report()))
                .collect();
            panic!("sessions were not moved:\n{}", reports.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    until_everyone_receives_everyone(project, members, 20, T)
        .await
        .unwrap();
    since.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_spread_over_instances_and_each_room_meets_on_one() {
    let project = Project::new().await;
    let a = fleet_broadcast(&project, "bc-a", &[]).await;
    let b = fleet_broadcast(&project, "bc-b", &[]).await;
    let m1 = Monitor::start(&project, "mon-1", 2000).await;
    let m2 = Monitor::start(&project, "mon-2", 2000).await;
    // The fleet is up (both monitors hear both instances) before rooms are made.
    for m in [&m1, &m2] {
        eventually("both instances known", T, async || {
            m.status()
                .await
                .filter(|s| s["instancesAlive"] == 2)
                .map(|_| ())
        })
        .await
        .unwrap();
    }

    let mut rooms = Vec::new();
    for i in 0..4 {
        rooms.push(project.room(&format!("room-{i}")).await);
    }
    let mut per_instance = std::collections::BTreeMap::<String, usize>::new();
    for room in &rooms {
        let (instance, epoch) = assigned(&project, room).await;
        assert_eq!(epoch, 1);
        *per_instance.entry(instance).or_default() += 1;
    }
    assert_eq!(
        per_instance.values().copied().collect::<Vec<_>>(),
        [2, 2],
        "{per_instance:?}"
    );
    let leaders = [m1.leads().await, m2.leads().await];
    assert_eq!(
        leaders.iter().filter(|l| **l).count(),
        1,
        "exactly one monitor leads"
    );

    // Everyone in a room is answered by the room's instance.
    let (instance, _) = assigned(&project, &rooms[0]).await;
    let other = if instance == a.instance { &b } else { &a };
    let transactions = async |b: &Broadcast| {
        b.stats().await.unwrap()["firestore"]["transactions"]
            .as_u64()
            .unwrap()
    };
    let other_before = transactions(other).await;
    let mut members = vec![
        Member::join(&project, &rooms[0], "alice").await,
        Member::join(&project, &rooms[0], "bob").await,
        Member::join(&project, &rooms[0], "carol").await,
    ];
    until_everyone_receives_everyone(&project, &mut members, 20, T)
        .await
        .unwrap();
    for m in &members {
        let doc = m.peer.doc.read().await.unwrap().unwrap();
        assert_eq!(
            doc["instance"],
            instance.as_str(),
            "{} served by the room's instance",
            m.name
        );
    }
    // The other instance saw every offer, and claimed none: it knew the room was not its own.
    assert_eq!(
        transactions(other).await,
        other_before,
        "claims on {}",
        other.instance
    );
}

/// Two fleet instances, a monitor, and a room where alice and bob exchange media.
struct Call {
    instances: Vec<Broadcast>,
    _monitor: Monitor,
    room: String,
    /// The instance the room was placed on.
    first: String,
    members: Vec<Member>,
}

/// The room's roster has the two members' second sessions (`-1`) and nothing else.
async fn roster_lists_only_the_moved_sessions(project: &Project, room: &str) {
    let names: Vec<String> = project
        .roster(room)
        .await
        .iter()
        .map(|d| d.name.rsplit('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().all(|n| n.ends_with("-1")), "{names:?}");
}

async fn call_on_two_instances(project: &Project, room: &str) -> Call {
    let instances = vec![
        fleet_broadcast(project, "bc-a", &[]).await,
        fleet_broadcast(project, "bc-b", &[]).await,
    ];
    let monitor = Monitor::start(project, "mon-1", 2000).await;
    let room = project.room(room).await;
    let (first, _) = assigned(project, &room).await;
    let mut members = vec![
        Member::join(project, &room, "alice").await,
        Member::join(project, &room, "bob").await,
    ];
    until_everyone_receives_everyone(project, &mut members, 20, T)
        .await
        .unwrap();
    Call {
        instances,
        _monitor: monitor,
        room,
        first,
        members,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_moves_the_rooms_and_media_flows_again() {
    let project = Project::new().await;
    let Call {
        mut instances,
        _monitor,
        room,
        first,
        mut members,
    } = call_on_two_instances(&project, "call").await;

    let killed_at = Instant::now();
    on(&mut instances, &first).kill();
    let took = recovered(&project, &mut members, killed_at).await;
    let (now_on, epoch) = assigned(&project, &room).await;
    assert_ne!(now_on, first);
    assert_eq!(epoch, 2);
    // The dead instance's roster entries are gone; the new sessions are listed.
    roster_lists_only_the_moved_sessions(&project, &room).await;
    // ... and so are the member documents of the sessions it served (rules: roster and chat).
    let members: Vec<String> = project
        .db
        .fluent()
        .select()
        .from("members")
        .parent(project.db.parent_path("rooms", &room).unwrap())
        .query()
        .await
        .unwrap()
        .iter()
        .map(|d| d.name.rsplit('/').next().unwrap().to_owned())
        .collect();
    assert!(members.iter().all(|m| !m.ends_with("-0")), "{members:?}");
    eprintln!("failover: kill -9 → media flowing again for everyone in {took:?}");
}

/// Chaos: an instance frozen (SIGSTOP) for longer than the staleness is declared dead and its
/// room moves; when it thaws (SIGCONT) it must not split the room: the fenced assignment stays
/// on the new instance, the thawed one ends the sessions it held, nobody moves twice, and
/// everyone keeps receiving everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_instance_thaws_into_a_moved_room_and_splits_nothing() {
    let project = Project::new().await;
    let Call {
        instances,
        _monitor,
        room,
        first,
        mut members,
    } = call_on_two_instances(&project, "frozen").await;
    let stale = instances
        .iter()
        .find(|b| b.instance == first)
        .expect("the room's instance");
    let signal = |sig: &str| {
        let _ = std::process::Command::new("kill")
            .args([sig, &stale.pid().to_string()])
            .status();
    };
    signal("-STOP");
    let frozen_at = Instant::now();
    let took = recovered(&project, &mut members, frozen_at).await;
    let (now_on, epoch) = assigned(&project, &room).await;
    assert_ne!(now_on, first);
    assert_eq!(epoch, 2);
    signal("-CONT");
    let thawed_at = Instant::now();
    let frozen_for = thawed_at - frozen_at;
    let released = eventually("the thawed instance holds no peer", T, async || {
        (stale.stats().await.ok()?.get("peers")?.as_u64()? == 0).then(|| thawed_at.elapsed())
    })
    .await
    .unwrap();
    // A while with both instances alive: the room stays where the fence put it, nobody is
    // moved again, media flows.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(assigned(&project, &room).await, (now_on.clone(), 2));
    for m in members.iter_mut() {
        m.follow(&project).await;
    }
    until_everyone_receives_everyone(&project, &mut members, 20, T)
        .await
        .unwrap();
    for m in &members {
        assert_eq!(m.moves, 1, "{} moved once", m.name);
    }
    roster_lists_only_the_moved_sessions(&project, &room).await;
    eprintln!(
        "frozen instance: media flowing on {now_on} {took:?} after SIGSTOP; thawed after \
         {frozen_for:?}, it held no peer {released:?} later"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_instance_and_nobody_is_lost() {
    let project = Project::new().await;
    let Call {
        mut instances,
        _monitor,
        room,
        first,
        mut members,
    } = call_on_two_instances(&project, "drained").await;

    let started = Instant::now();
    on(&mut instances, &first).signal_term();
    let took = recovered(&project, &mut members, started).await;
    let status = on(&mut instances, &first).wait_exit(T).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "the drained instance exits by itself: {status:?}"
    );
    let log = on(&mut instances, &first).log_text();
    assert!(log.contains("drained: no room and no peer left"), "{log}");
    let (now_on, epoch) = assigned(&project, &room).await;
    assert_ne!(now_on, first);
    assert_eq!(epoch, 2);
    for m in &members {
        assert_eq!(m.moves, 1, "{} moved once", m.name);
    }
    eprintln!("drain: SIGTERM → everyone receiving on the new instance in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_monitor_takes_over_when_the_leader_dies() {
    let project = Project::new().await;
    let _a = fleet_broadcast(&project, "bc-a", &[]).await;
    let mut monitors = [
        Monitor::start(&project, "mon-1", 2000).await,
        Monitor::start(&project, "mon-2", 2000).await,
    ];
    let before = project.room("before").await;
    assigned(&project, &before).await;
    let mut leader = None;
    for (i, m) in monitors.iter().enumerate() {
        if m.leads().await {
            leader = Some(i);
        }
    }
    let leader = leader.expect("one monitor leads");
    monitors[leader].kill();
    let killed = Instant::now();
    let standby = &monitors[1 - leader];
    eventually("the standby leads", T, async || {
        standby.leads().await.then_some(())
    })
    .await
    .unwrap();
    let took_over = killed.elapsed();
    let after = project.room("after").await;
    let (instance, epoch) = assigned(&project, &after).await;
    assert_eq!((instance.as_str(), epoch), ("bc-a", 1));
    eprintln!("monitor takeover in {took_over:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_fleet_tells_joiners_so() {
    let project = Project::new().await;
    let _a = fleet_broadcast(&project, "bc-a", &[("FIRESFU_MAX_ROOMS", "1")]).await;
    let _monitor = Monitor::start(&project, "mon-1", 2000).await;
    let first = project.room("first").await;
    assigned(&project, &first).await;
    let second = project.room("second").await;
    let error = eventually("a placement error", T, async || {
        assignment(&project, &second).await.1
    })
    .await
    .unwrap();
    assert_eq!(error, "fleet-full");

    let joiner = Peer::join(&project.db, PeerSpec::new(&second, "late"))
        .await
        .unwrap();
    let r = joiner
        .wait_until("fleet-full", T, |r| {
            r.error.as_ref().is_some_and(|(c, _)| c == "fleet-full")
        })
        .await
        .unwrap();
    assert_eq!(r.state.as_deref(), Some("failed"));
    // The first room still works.
    let mut members = vec![
        Member::join(&project, &first, "alice").await,
        Member::join(&project, &first, "bob").await,
    ];
    until_everyone_receives_everyone(&project, &mut members, 10, T)
        .await
        .unwrap();
}

/// `make bench`: failover (kill -9 → media flowing again for everyone) over 10 runs per
/// staleness, with 2 s reports, and room placement latency (room created → assignment
/// written, in Firestore's clock). Prints one JSON line per configuration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run by scripts/bench.sh"]
async fn fleet_benchmark() {
    let runs: usize = std::env::var("BENCH_FAILOVERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    for stale_ms in [5000u64, 3000] {
        let project = Project::new().await;
        let _monitor = Monitor::start(&project, "mon-1", stale_ms).await;
        let options = |n: usize| common::fleet::fleet_options(&format!("bc-{n}"), 2000, &[]);
        let mut instances = vec![
            Broadcast::start_with(&project, options(0)).await,
            Broadcast::start_with(&project, options(1)).await,
        ];
        let (mut failover, mut placement) = (Vec::new(), Vec::new());
        for run in 0..runs {
            eventually("two instances alive", T, async || {
                _monitor
                    .status()
                    .await
                    .filter(|s| s["instancesAlive"] == 2)
                    .map(|_| ())
            })
            .await
            .unwrap();
            let room = project.room(&format!("bench-{run}")).await;
            let (instance, _) = assigned(&project, &room).await;
            placement.push(placement_ms(&project, &room).await);
            let mut members = vec![
                Member::join(&project, &room, &format!("a{run}")).await,
                Member::join(&project, &room, &format!("b{run}")).await,
            ];
            until_everyone_receives_everyone(&project, &mut members, 20, T)
                .await
                .unwrap();
            let killed = Instant::now();
            on(&mut instances, &instance).kill();
            failover.push(recovered(&project, &mut members, killed).await.as_millis() as u64);
            for m in members {
                let _ = m.peer.leave(testpeer::Leave::Close).await;
            }
            instances.retain(|b| b.instance != instance);
            // A fresh instance replaces the killed one (ids never repeat).
            instances.push(Broadcast::start_with(&project, options(run + 2)).await);
        }
        let pct = |v: &mut Vec<u64>, p: f64| {
            v.sort_unstable();
            v[((v.len() as f64 - 1.0) * p).round() as usize]
        };
        let line = serde_json::json!({
            "report_ms": 2000, "stale_ms": stale_ms, "runs": runs,
            "failover_ms": failover.clone(),
            "failover_p50_ms": pct(&mut failover, 0.5), "failover_p95_ms": pct(&mut failover, 0.95),
            "placement_ms": placement.clone(),
            "placement_p50_ms": pct(&mut placement, 0.5), "placement_p95_ms": pct(&mut placement, 0.95),
        });
        println!("FLEET-BENCH {line}");
    }
}

/// Room document created → `assignment.assignedAt`, both in Firestore's clock.
async fn placement_ms(project: &Project, room: &str) -> u64 {
    let doc = project
        .db
        .fluent()
        .select()
        .by_id_in("rooms")
        .one(room)
        .await
        .unwrap()
        .unwrap();
    let created = doc
        .create_time
        .as_ref()
        .map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
        .unwrap();
    let json: serde_json::Value = firestore::FirestoreDb::deserialize_doc_to(&doc).unwrap();
    let assigned_at = json
        .pointer("/assignment/assignedAt")
        .and_then(serde_json::Value::as_str)
        .unwrap();
    let assigned = chrono::DateTime::parse_from_rfc3339(assigned_at)
        .unwrap()
        .timestamp_millis();
    (assigned - created).max(0) as u64
}
