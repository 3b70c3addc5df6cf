//! Chaos in the fleet's own services: the Pub/Sub emulator restarted (topics, subscriptions
//! and messages lost), every monitor killed while a room is created. Each test asserts what
//! the people in the rooms observe (docs/reliability.md).

mod common;

use std::time::{Duration, Instant};

use common::emulators::{Kind, OwnedEmulator};
use common::fleet::{
    Member, Monitor, assigned, assignment, fleet_options_at, until_everyone_receives_everyone,
};
use common::{Broadcast, Project, eventually};
use testpeer::{Peer, PeerSpec};

const T: Duration = Duration::from_secs(30);

/// Video frames every member has received from the others so far.
fn video_received(members: &[Member]) -> Vec<u64> {
    members
        .iter()
        .map(|m| m.peer.report().received.values().map(|r| r.video).sum())
        .collect()
}

async fn alive(monitor: &Monitor, instances: u64) {
    eventually("the monitor hears every instance", T, async || {
        monitor
            .status()
            .await
            .filter(|s| s["instancesAlive"] == instances)
            .map(|_| ())
    })
    .await
    .unwrap();
}

/// The Pub/Sub emulator is killed (SIGKILL) for 4 s, twice the staleness, and comes back
/// empty: no topic, no subscription. Instances recreate the topic, the monitor its
/// subscription; reports resume; no instance is declared dead for the monitor's own deafness
/// (the room stays where it is, its epoch unchanged); a room created afterwards is placed and
/// its joiners meet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pubsub_restart_kills_no_instance_and_placement_resumes() {
    const OUTAGE: Duration = Duration::from_secs(4);
    const BOUND: Duration = Duration::from_secs(10);
    let mut pubsub = OwnedEmulator::start(Kind::Pubsub);
    let project = Project::new().await;
    let _a =
        Broadcast::start_with(&project, fleet_options_at(&pubsub.host, "bc-a", 500, &[])).await;
    let _b =
        Broadcast::start_with(&project, fleet_options_at(&pubsub.host, "bc-b", 500, &[])).await;
    let monitor = Monitor::start_at(&pubsub.host, &project, "mon-1", 2000).await;
    alive(&monitor, 2).await;
    let before = project.room("before").await;
    let placed = assigned(&project, &before).await;
    let mut members = vec![
        Member::join(&project, &before, "alice").await,
        Member::join(&project, &before, "bob").await,
    ];
    until_everyone_receives_everyone(&project, &mut members, 20, T)
        .await
        .unwrap();

    let frames = video_received(&members);
    pubsub.kill();
    let killed_at = Instant::now();
    tokio::time::sleep(OUTAGE).await;
    let start_took = pubsub.restart();
    let restarted_at = Instant::now();
    let reports_back = eventually("reports heard again", BOUND, async || {
        monitor
            .status()
            .await
            .filter(|s| s["instancesAlive"] == 2)
            .map(|_| restarted_at.elapsed())
    })
    .await
    .unwrap();
    // Media never depended on Pub/Sub.
    let during = video_received(&members);
    assert!(
        during.iter().zip(&frames).all(|(d, f)| d > f),
        "media stalled during the outage: {frames:?} → {during:?}"
    );
    // A while with the feed back: nobody was declared dead, so nothing moved.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        assigned(&project, &before).await,
        placed,
        "the room moved: an instance was declared dead for the monitor's outage; log:\n{}",
        monitor.log_text()
    );
    assert!(
        members
            .iter()
            .all(|m| m.moves == 0 && m.peer.report().error.is_none()),
        "a session was ended"
    );
    // Placement works again.
    let asked = Instant::now();
    let after = project.room("after").await;
    assigned(&project, &after).await;
    let mut late = vec![
        Member::join(&project, &after, "carol").await,
        Member::join(&project, &after, "dave").await,
    ];
    until_everyone_receives_everyone(&project, &mut late, 20, T)
        .await
        .unwrap();
    let meeting = asked.elapsed();
    eprintln!(
        "pub/sub down {:?} (restart took {start_took:?}); reports heard again {reports_back:?} \
         after it answered; a new room placed and its pair receiving each other in {meeting:?}",
        restarted_at - killed_at,
    );
}

/// Both monitors are killed (SIGKILL). The running room is undisturbed; a room created
/// meanwhile waits with its joiner unanswered. A monitor started again places it and the
/// joiner is answered within a stated time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_monitor_dead_rooms_run_and_a_new_room_waits_for_the_next_monitor() {
    const BOUND: Duration = Duration::from_secs(10);
    let pubsub = common::fleet::pubsub();
    let project = Project::new().await;
    let _a = Broadcast::start_with(&project, fleet_options_at(&pubsub, "bc-a", 500, &[])).await;
    let _b = Broadcast::start_with(&project, fleet_options_at(&pubsub, "bc-b", 500, &[])).await;
    let mut m1 = Monitor::start_at(&pubsub, &project, "mon-1", 2000).await;
    let mut m2 = Monitor::start_at(&pubsub, &project, "mon-2", 2000).await;
    alive(&m1, 2).await;
    alive(&m2, 2).await;
    let running = project.room("running").await;
    let placed = assigned(&project, &running).await;
    let mut members = vec![
        Member::join(&project, &running, "alice").await,
        Member::join(&project, &running, "bob").await,
    ];
    until_everyone_receives_everyone(&project, &mut members, 20, T)
        .await
        .unwrap();

    m1.kill();
    m2.kill();
    let frames = video_received(&members);
    let waiting = project.room("created-meanwhile").await;
    let joiner = Peer::join(&project.db, PeerSpec::new(&waiting, "carol"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(assignment(&project, &waiting).await.0, None);
    assert_eq!(
        joiner.report().answered_revision,
        0,
        "answered without a monitor"
    );
    let during = video_received(&members);
    assert!(
        during.iter().zip(&frames).all(|(d, f)| d > f),
        "media stalled without monitors: {frames:?} → {during:?}"
    );

    let back = Instant::now();
    let m3 = Monitor::start_at(&pubsub, &project, "mon-3", 2000).await;
    let (_, _) = assigned(&project, &waiting).await;
    let placed_in = back.elapsed();
    joiner
        .wait_until("answered and connected", BOUND, |r| r.connected)
        .await
        .unwrap();
    let answered_in = back.elapsed();
    assert!(answered_in < BOUND, "{answered_in:?}");
    assert_eq!(
        assigned(&project, &running).await,
        placed,
        "the running room moved; log:\n{}",
        m3.log_text()
    );
    assert!(members.iter().all(|m| m.moves == 0), "a member was moved");
    eprintln!(
        "monitors down 5 s: running room undisturbed; after a monitor started, the waiting room \
         was placed in {placed_in:?} and its joiner connected in {answered_in:?}"
    );
}
