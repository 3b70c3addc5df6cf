//! `firesfu monitor`: consumes load reports, keeps the fleet table and, while it holds the
//! lease, places rooms and moves them off dead or draining instances.
//!
//! Every monitor consumes every report (each has its own subscription), so a standby has a
//! warm fleet table when it takes the lease over.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use prost::Message as _;
use tokio::sync::mpsc;

use super::lease::Lease;
use super::plan::{Action, PlanInput, Reason, RoomState, plan};
use super::proto::LoadReport;
use super::store::{FleetStore, On, RoomChange, Written};
use super::table::FleetTable;
use super::unix_ms;
use crate::gcp::{GcpArgs, PubsubArgs};
use crate::signalling::protocol::ErrorCode;
use crate::telemetry::metrics::MonitorInstruments;

#[derive(Debug, Clone, clap::Args)]
pub struct MonitorArgs {
    #[command(flatten)]
    pub gcp: GcpArgs,
    #[command(flatten)]
    pub pubsub: PubsubArgs,
    /// This monitor's id: the lease holder name and its subscription's suffix (default: host
    /// name + random suffix).
    #[arg(long, env = "FIRESFU_MONITOR_ID")]
    pub monitor_id: Option<String>,
    /// An instance is dead once its last report is older than this, milliseconds.
    #[arg(long, env = "FIRESFU_STALE_AFTER_MS", default_value_t = 5000)]
    pub stale_after_ms: u64,
    /// How long the leader's lease lasts without renewal (a standby takes over after it),
    /// milliseconds. Renewed every third of it.
    #[arg(long, env = "FIRESFU_LEASE_MS", default_value_t = 5000)]
    pub lease_ms: u64,
    /// How often the leader plans, milliseconds.
    #[arg(long, env = "FIRESFU_MONITOR_TICK_MS", default_value_t = 250)]
    pub tick_ms: u64,
    /// Full re-read of the rooms this often (the rooms listener keeps them current in between;
    /// this repairs what a listener missed), seconds.
    #[arg(long, env = "FIRESFU_MONITOR_RESYNC_SECS", default_value_t = 60)]
    pub resync_secs: u64,
    /// Port of the HTTP endpoint with /healthz and /status.
    #[arg(long, env = "APP_PORT", default_value_t = 8080)]
    pub app_port: u16,
    #[arg(long, env = "FIRESFU_HTTP_BIND_IP", default_value = "0.0.0.0")]
    pub http_bind_ip: IpAddr,
    /// Publish `room_moved` events on the events topic (for webhooks).
    #[arg(long = "events", env = "FIRESFU_EVENTS", default_value_t = false, action = clap::ArgAction::Set)]
    pub publish_events: bool,
}

/// What /status shows.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    monitor: String,
    leader: bool,
    term: Option<i64>,
    instances_alive: usize,
    rooms: usize,
    placements: u64,
}

fn subscription_id(topic: &str, me: &str) -> String {
    let clean: String = me
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{topic}-monitor-{clean}")
}

pub fn monitor_id(args: &MonitorArgs) -> String {
    args.monitor_id
        .clone()
        .unwrap_or_else(|| crate::process::host_instance("monitor"))
}

pub async fn run(args: MonitorArgs) -> anyhow::Result<()> {
    let me = monitor_id(&args);
    let project = args.gcp.project.clone();
    let db = crate::gcp::firestore(&args.gcp).await?;
    let store = FleetStore::new(db);
    crate::gcp::ensure_topic(&project, &args.pubsub).await?;
    let subscription = format!(
        "projects/{project}/subscriptions/{}",
        subscription_id(&args.pubsub.load_topic, &me)
    );
    crate::gcp::ensure_subscription(&project, &args.pubsub, &subscription).await?;

    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let subscriber = crate::gcp::pubsub_subscriber(&args.pubsub).await?;
    let consumer = tokio::spawn(consume(
        subscriber,
        (args.pubsub.clone(), project.clone()),
        subscription.clone(),
        Duration::from_millis(args.stale_after_ms.max(1000)),
        reports_tx,
    ));

    let (changes_tx, mut room_changes) = mpsc::unbounded_channel();
    let mut rooms_listener = store.watch_rooms(changes_tx).await?;
    let status = Arc::new(Mutex::new(Status {
        monitor: me.clone(),
        ..Default::default()
    }));
    let http = serve_status(
        SocketAddr::new(args.http_bind_ip, args.app_port),
        status.clone(),
    )
    .await?;
    tracing::info!(monitor = %me, %subscription, http = %http, "monitor is running");

    let (events, publishing) = if args.publish_events {
        let (emitter, happenings) = crate::events::Emitter::channel();
        let sink = crate::events::publish::Sink::new(&project, &args.pubsub);
        let task = tokio::spawn(crate::events::publish::run_monitor(happenings, sink));
        (emitter, Some(task))
    } else {
        (crate::events::Emitter::disabled(), None)
    };
    let mut leader = Leader {
        events,
        me: me.clone(),
        store: store.clone(),
        table: FleetTable::new(args.stale_after_ms as i64),
        rooms: store
            .rooms()
            .await?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect(),
        lease: None,
        lease_duration: Duration::from_millis(args.lease_ms),
        listening_since_ms: unix_ms(SystemTime::now()),
        instruments: MonitorInstruments::default(),
        placements: 0,
        cleanups: Default::default(),
        last_reconcile: Instant::now(),
        reconcile_every: Duration::from_secs(args.resync_secs.max(1)),
    };
    let mut tick = tokio::time::interval(Duration::from_millis(args.tick_ms.max(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_resync = Instant::now();
    let mut last_lease = Instant::now() - Duration::from_secs(3600);
    let shutdown = crate::process::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            Some(report) = reports.recv() => {
                let now = unix_ms(SystemTime::now());
                if !leader.table.is_alive(&report.instance_id, now) {
                    tracing::info!(instance = %report.instance_id, state = report.state().as_str_name(), "instance reports");
                }
                tracing::debug!(instance = %report.instance_id, seq = report.sequence, lag_ms = now - report.sent_at_unix_ms, "report");
                leader.table.observe(&report, now);
                continue;
            }
            Some(change) = room_changes.recv() => {
                leader.room_changed(change);
                continue;
            }
            _ = tick.tick() => {}
            _ = &mut shutdown => break,
        }
        if last_lease.elapsed() >= leader.lease_duration / 3 {
            last_lease = Instant::now();
            leader.renew().await;
        }
        if last_resync.elapsed() >= Duration::from_secs(args.resync_secs.max(1)) {
            match store.rooms().await {
                Ok(rooms) => {
                    leader.rooms = rooms.into_iter().map(|r| (r.id.clone(), r)).collect();
                    last_resync = Instant::now();
                }
                Err(e) => tracing::warn!("cannot read the rooms: {e}"),
            }
        }
        leader.step().await;
        if let Ok(mut s) = status.lock() {
            let now = unix_ms(SystemTime::now());
            s.leader = leader.leads(now);
            s.term = leader.lease.as_ref().map(|l| l.term);
            s.instances_alive = leader.table.alive_count(now);
            s.rooms = leader.rooms.len();
            s.placements = leader.placements;
        }
    }

    tracing::info!("monitor stopping");
    if let Some(lease) = leader.lease.take()
        && let Err(e) = store.release(&lease).await
    {
        tracing::warn!("cannot release the lease: {e}");
    }
    consumer.abort();
    drop(leader);
    if let Some(publishing) = publishing {
        let _ = tokio::time::timeout(Duration::from_secs(5), publishing).await;
    }
    let _ = rooms_listener.shutdown().await;
    let admin = crate::gcp::pubsub_subscription_admin(&args.pubsub).await?;
    if let Err(e) = admin
        .delete_subscription()
        .set_subscription(&subscription)
        .send()
        .await
    {
        tracing::warn!("cannot delete the subscription {subscription}: {e}");
    }
    tracing::info!("monitor stopped");
    Ok(())
}

/// Decodes reports from the subscription; a malformed one is logged and acknowledged (it
/// would never decode on redelivery either). A subscription (or topic) that disappeared, as
/// after a Pub/Sub emulator restart or a mistaken deletion, is created again. A stream silent
/// for `silence` is opened again (after checking the subscription): the client's own retries
/// back off for tens of seconds after the service was unreachable.
async fn consume(
    subscriber: google_cloud_pubsub::client::Subscriber,
    (pubsub, project): (crate::gcp::PubsubArgs, String),
    subscription: String,
    silence: Duration,
    tx: mpsc::UnboundedSender<LoadReport>,
) {
    let mut gone = false;
    loop {
        if std::mem::take(&mut gone) {
            let recreated = async {
                crate::gcp::ensure_topic(&project, &pubsub).await?;
                crate::gcp::ensure_subscription(&project, &pubsub, &subscription).await
            };
            // The admin client's own retries back off for long after an outage: try again soon.
            match tokio::time::timeout(silence, recreated).await {
                Ok(Ok(())) => tracing::info!(%subscription, "the subscription is there (again)"),
                Ok(Err(e)) => tracing::warn!("{e:#}"),
                Err(_) => {
                    tracing::warn!("cannot check the subscription: no answer from Pub/Sub");
                    gone = true;
                    continue;
                }
            }
        }
        let mut stream = subscriber.subscribe(&subscription).build();
        loop {
            let Ok(next) = tokio::time::timeout(silence, stream.next()).await else {
                tracing::warn!(?silence, "no load report for a while; subscribing again");
                gone = true;
                break;
            };
            let Some(next) = next else { break };
            match next {
                Ok((message, handler)) => {
                    handler.ack();
                    match LoadReport::decode(message.data.as_ref()) {
                        Ok(report) => {
                            if tx.send(report).is_err() {
                                return;
                            }
                        }
                        Err(e) => tracing::warn!("an undecodable load report: {e}"),
                    }
                }
                Err(e) => {
                    gone = crate::gcp::is_not_found(&e);
                    tracing::warn!("the load-report stream failed: {e}");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// States of sessions an instance holds: answered or being answered, and re-offers.
const HELD: [&str; 4] = ["offered", "answering", "answered", "connected"];

/// A room that moved this recently may still have sessions on its old instance (a monitor that
/// died between the move and the clean-up): the leader re-checks those rooms' sessions.
const RECONCILE_WINDOW_MS: i64 = 5 * 60 * 1000;

struct Leader {
    /// Where room moves are reported (for webhooks).
    events: crate::events::Emitter,
    me: String,
    store: FleetStore,
    table: FleetTable,
    rooms: std::collections::BTreeMap<String, RoomState>,
    lease: Option<Lease>,
    lease_duration: Duration,
    listening_since_ms: i64,
    instruments: MonitorInstruments,
    placements: u64,
    /// Moves whose session clean-up has not succeeded yet: room → old instance.
    cleanups: std::collections::HashMap<String, (String, Reason)>,
    last_reconcile: Instant,
    reconcile_every: Duration,
}

impl Leader {
    fn leads(&self, now_ms: i64) -> bool {
        self.lease
            .as_ref()
            .is_some_and(|l| l.expires_at_ms > now_ms)
    }

    async fn renew(&mut self) {
        let was = self.lease.as_ref().map(|l| l.term);
        match self
            .store
            .lease(&self.me, SystemTime::now(), self.lease_duration)
            .await
        {
            Ok(lease) => {
                let now = lease.as_ref().map(|l| l.term);
                if now != was {
                    match now {
                        Some(term) => tracing::info!(term, "this monitor leads"),
                        None => tracing::info!("another monitor leads"),
                    }
                }
                self.lease = lease;
            }
            // Keep the lease we have: it expires by itself if we cannot renew it.
            Err(e) => tracing::warn!("cannot renew the lease: {e}"),
        }
    }

    fn room_changed(&mut self, change: RoomChange) {
        match change {
            RoomChange::Upsert(room) => {
                self.rooms.insert(room.id.clone(), room);
            }
            RoomChange::Removed(id) => {
                self.rooms.remove(&id);
            }
        }
    }

    /// Plans and applies. True when something was written.
    async fn step(&mut self) -> bool {
        let now = SystemTime::now();
        let now_ms = unix_ms(now);
        self.table.prune(now_ms);
        if !self.leads(now_ms) {
            return false;
        }
        let rooms: Vec<RoomState> = self.rooms.values().cloned().collect();
        let actions = plan(&PlanInput {
            rooms: &rooms,
            fleet: &self.table,
            now_ms,
            listening_since_ms: self.listening_since_ms,
        });
        let mut changed = !actions.is_empty();
        let mut placed = std::collections::HashSet::new();
        for action in actions {
            if let Action::Assign { room, .. } = &action {
                placed.insert(room.clone());
            }
            if !self.apply(action, now).await {
                break;
            }
        }
        // Clean-ups of moves that failed (or that a previous leader did not finish).
        let pending: Vec<(String, (String, Reason))> = self.cleanups.drain().collect();
        for (room, (from, reason)) in pending {
            self.after_move(&room, &from, reason, now).await;
        }
        // Only on a settled view: right after this step's moves the cached rooms are stale.
        if !changed && self.last_reconcile.elapsed() >= self.reconcile_every {
            self.last_reconcile = Instant::now();
            self.reconcile(now).await;
        }
        // Joiners of rooms nobody can take learn it from their session document.
        let stranded = |r: &RoomState| {
            r.unplaceable
                && !placed.contains(&r.id)
                && r.assignment
                    .as_ref()
                    .is_none_or(|a| !self.table.is_alive(&a.instance, now_ms))
        };
        for room in self.rooms.values().filter(|r| stranded(r)) {
            let message = "no broadcast instance can take this room now; try again later";
            match self
                .store
                .end_sessions(
                    &room.id,
                    On::Any,
                    &["offered"],
                    ErrorCode::FleetFull,
                    message,
                    now,
                )
                .await
            {
                Ok(n) if n > 0 => {
                    tracing::info!(room = %room.id, sessions = n, "joiners told the fleet is full");
                    changed = true;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(room = %room.id, "cannot fail the waiting sessions: {e}"),
            }
        }
        changed
    }

    /// Every so often, sessions still held by an instance that no longer has their room are
    /// told to re-join: a move whose clean-up was lost (a monitor died in between) heals. Only
    /// rooms that moved recently can have such sessions; only their live sessions are read.
    async fn reconcile(&mut self, now: SystemTime) {
        let message = "the room is served by another instance now; join again";
        let now_ms = unix_ms(now);
        let recent = |r: &&RoomState| {
            r.moved_at_ms
                .is_some_and(|at| now_ms - at < RECONCILE_WINDOW_MS)
        };
        for room in self.rooms.values().filter(recent) {
            let Some(a) = &room.assignment else { continue };
            match self
                .store
                .end_sessions(
                    &room.id,
                    On::OtherThan(&a.instance),
                    &HELD,
                    ErrorCode::RoomMoved,
                    message,
                    now,
                )
                .await
            {
                Ok(n) if n > 0 => {
                    tracing::info!(room = %room.id, sessions = n, "stray sessions told to re-join")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(room = %room.id, "cannot reconcile the sessions: {e}"),
            }
        }
    }

    /// False when this monitor turned out not to lead (stop applying).
    async fn apply(&mut self, action: Action, now: SystemTime) -> bool {
        let Some(lease) = self.lease.clone() else {
            return false;
        };
        match action {
            Action::Assign {
                room,
                to,
                previous,
                reason,
            } => {
                let written = self
                    .store
                    .assign(&room, &to, previous.as_ref(), reason, &lease, now)
                    .await;
                match written {
                    Ok(Written::Done) => {
                        self.placements += 1;
                        self.instruments.placed(reason.as_str());
                        tracing::info!(%room, instance = %to.instance, epoch = to.epoch, reason = reason.as_str(), "room assigned");
                        if let Some(prev) = previous {
                            self.events.emit(
                                &room,
                                crate::events::Kind::RoomMoved(crate::events::proto::RoomMoved {
                                    from_instance_id: prev.instance.clone(),
                                    to_instance_id: to.instance.clone(),
                                    reason: reason.as_str().into(),
                                    epoch: to.epoch.max(0) as u64,
                                }),
                            );
                            self.after_move(&room, &prev.instance, reason, now).await;
                        }
                        true
                    }
                    Ok(Written::RoomChanged) => true,
                    Ok(Written::NotLeader) => {
                        tracing::info!("lost the lease while placing");
                        self.lease = None;
                        false
                    }
                    Err(e) => {
                        tracing::warn!(%room, "cannot write the assignment: {e}");
                        true
                    }
                }
            }
            Action::Unplaceable { room, error } => {
                self.instruments.unplaceable();
                tracing::warn!(%room, "room cannot be placed: {error}");
                if let Err(e) = self.store.mark_unplaceable(&room, &error.to_string()).await {
                    tracing::warn!(%room, "cannot write the placement error: {e}");
                }
                true
            }
        }
    }

    /// The room's clients on the old instance join again, and the old instance's roster
    /// entries for the room go: those sessions are over whatever the reason (a live instance
    /// deletes its own too, but an entry it misses would stay as a ghost tile). A failure is
    /// retried at the next step.
    async fn after_move(&mut self, room: &str, from: &str, reason: Reason, now: SystemTime) {
        let message = format!(
            "the room moved to another instance ({}); join again",
            reason.as_str()
        );
        let ended = self
            .store
            .end_sessions(
                room,
                On::Instance(from),
                &HELD,
                ErrorCode::RoomMoved,
                &message,
                now,
            )
            .await;
        let cleaned = match ended {
            Ok(n) => {
                tracing::info!(room, from, sessions = n, "sessions told to re-join");
                let dead = reason == Reason::InstanceDead;
                self.store
                    .remove_roster_of(room, from, dead)
                    .await
                    .map(|_| ())
            }
            Err(e) => Err(e),
        };
        if let Err(e) = cleaned {
            tracing::warn!(room, from, "clean-up after the move failed, retrying: {e}");
            self.cleanups
                .insert(room.to_owned(), (from.to_owned(), reason));
        }
    }
}

async fn serve_status(addr: SocketAddr, status: Arc<Mutex<Status>>) -> anyhow::Result<SocketAddr> {
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/status",
            get(move || {
                let s = status.lock().map(|s| s.clone()).unwrap_or_default();
                async move { axum::Json(s) }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind the monitor's HTTP endpoint {addr}"))?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(local)
}
