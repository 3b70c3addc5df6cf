//! Which cameras this instance pulls: those of the rooms where one of its participants
//! receives. A room's cameras are followed (a listener, and a sweep that catches what it
//! misses) while it has viewers here, and let go a few seconds after the last one leaves —
//! which is also how a camera follows its room to another instance (drain, failover): the
//! participants move, the demand with them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use firestore::{FirestoreDb, FirestoreListener, FirestoreMemListenStateStorage};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::documents::CameraSourceDoc;
use super::pull::{self, Camera, Context, Stop};
use super::store::SourceEvent;

/// How often the engine's rooms are looked at.
const TICK: Duration = Duration::from_secs(1);
/// A room without viewers keeps its cameras this long (someone re-joining).
pub const GRACE: Duration = Duration::from_secs(3);
/// How often a followed room's cameras are re-read (a listener can miss a delete).
const SWEEP: Duration = Duration::from_secs(30);

struct Running {
    doc: CameraSourceDoc,
    stop: watch::Sender<Option<Stop>>,
    task: JoinHandle<()>,
}

struct Followed {
    listener: Option<FirestoreListener<FirestoreDb, FirestoreMemListenStateStorage>>,
    cameras: HashMap<String, Running>,
    /// Since when it has had no viewer here.
    empty_since: Option<Instant>,
    next_sweep: Instant,
}

/// Runs until `shutdown` turns true; then stops every camera and returns.
pub async fn run(ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
    let (tx, mut events) = mpsc::unbounded_channel::<(String, SourceEvent)>();
    let mut rooms: HashMap<String, Followed> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
            Some((room, event)) = events.recv() => {
                if let Some(followed) = rooms.get_mut(&room) {
                    apply(&ctx, &room, followed, event);
                }
            }
            _ = tick.tick() => {
                follow_demand(&ctx, &mut rooms, &tx, Instant::now()).await;
            }
        }
    }
    let tasks: Vec<JoinHandle<()>> = rooms
        .into_values()
        .flat_map(|f| f.cameras.into_values())
        .map(|r| {
            let _ = r.stop.send(Some(Stop::Quietly));
            r.task
        })
        .collect();
    let _ = tokio::time::timeout(Duration::from_secs(5), futures::future::join_all(tasks)).await;
}

async fn follow_demand(
    ctx: &Arc<Context>,
    rooms: &mut HashMap<String, Followed>,
    tx: &mpsc::UnboundedSender<(String, SourceEvent)>,
    now: Instant,
) {
    let demanded: HashSet<String> = ctx
        .engine
        .stats()
        .room_loads
        .into_iter()
        .filter(|r| r.viewers > 0)
        .map(|r| r.room)
        .collect();
    for room in &demanded {
        if !rooms.contains_key(room) {
            let listener = match ctx.cameras.watch(room, tx.clone()).await {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::warn!(%room, "cannot follow the room's cameras (the sweep will): {e}");
                    None
                }
            };
            rooms.insert(
                room.clone(),
                Followed {
                    listener,
                    cameras: HashMap::new(),
                    empty_since: None,
                    next_sweep: now,
                },
            );
        }
    }
    let mut leaving = Vec::new();
    for (room, followed) in rooms.iter_mut() {
        if demanded.contains(room) {
            followed.empty_since = None;
        } else {
            let since = *followed.empty_since.get_or_insert(now);
            if now.duration_since(since) >= GRACE {
                leaving.push(room.clone());
                continue;
            }
        }
        if now >= followed.next_sweep {
            followed.next_sweep = now + SWEEP;
            match ctx.cameras.sweep(room).await {
                Ok(event) => apply(ctx, room, followed, event),
                Err(e) => tracing::warn!(%room, "cannot read the room's cameras: {e}"),
            }
        }
    }
    for room in leaving {
        if let Some(mut followed) = rooms.remove(&room) {
            for (_, running) in followed.cameras.drain() {
                let _ = running.stop.send(Some(Stop::NoViewers));
            }
            if let Some(mut listener) = followed.listener.take() {
                tokio::spawn(async move {
                    let _ = listener.shutdown().await;
                });
            }
        }
    }
}

/// Starts, restarts (new settings) or stops the room's cameras as their documents say.
fn apply(ctx: &Arc<Context>, room: &str, followed: &mut Followed, event: SourceEvent) {
    let wanted: Vec<(String, Option<CameraSourceDoc>)> = match event {
        SourceEvent::Seen { camera, doc } => vec![(camera, Some(doc))],
        SourceEvent::Gone { camera } => vec![(camera, None)],
        SourceEvent::Swept { cameras, .. } => {
            let listed: HashSet<&String> = cameras.iter().map(|(c, _)| c).collect();
            let gone: Vec<(String, Option<CameraSourceDoc>)> = followed
                .cameras
                .keys()
                .filter(|c| !listed.contains(c))
                .map(|c| (c.clone(), None))
                .collect();
            cameras
                .into_iter()
                .map(|(c, d)| (c, Some(d)))
                .chain(gone)
                .collect()
        }
    };
    for (camera, doc) in wanted {
        let doc = doc.filter(|d| d.enabled && d.room == room);
        let same = match (&doc, followed.cameras.get(&camera)) {
            (Some(doc), Some(running)) => running.doc == *doc && !running.task.is_finished(),
            (None, None) => true,
            _ => false,
        };
        if same {
            continue;
        }
        if let Some(old) = followed.cameras.remove(&camera) {
            let _ = old.stop.send(Some(Stop::Quietly));
        }
        if let Some(doc) = doc {
            let (stop, stopped) = watch::channel(None);
            let task = tokio::spawn(pull::run(
                ctx.clone(),
                Camera {
                    id: camera.clone(),
                    doc: doc.clone(),
                },
                stopped,
            ));
            followed.cameras.insert(camera, Running { doc, stop, task });
        }
    }
}
