//! `firesfu broadcast`: the media engine, the Firestore listener and the session driver.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use tokio::sync::mpsc;

use crate::cli::BroadcastArgs;
use crate::media::codecs::{SUPPORTED_AUDIO, SUPPORTED_VIDEO};
use crate::media::{CodecSupport, MediaConfig, MediaLimits, spawn_engine};
use crate::signalling::admission::{Admission, KeyCache};
use crate::signalling::driver::Driver;
use crate::signalling::limits::OfferLimits;
use crate::signalling::session::SessionContext;
use crate::signalling::store::{Observation, Store};

/// The instance id: the configured one, or the host (pod) name, which survives a restart.
pub fn instance_id(args: &BroadcastArgs) -> String {
    args.instance_id
        .clone()
        .unwrap_or_else(|| crate::process::host_name("firesfu"))
}

fn media_config(args: &BroadcastArgs) -> anyhow::Result<MediaConfig> {
    for codec in &args.video_codecs {
        if !SUPPORTED_VIDEO
            .iter()
            .any(|s| s.eq_ignore_ascii_case(codec))
        {
            bail!(
                "unsupported video codec {codec:?} in FIRESFU_VIDEO_CODECS; choose from {}",
                SUPPORTED_VIDEO.join(", ")
            );
        }
    }
    Ok(MediaConfig {
        bind: args.udp_bind,
        advertise: args.advertise_ips.clone(),
        tcp: args.ice_tcp.listens(args.udp_bind),
        tcp_limits: crate::media::tcp::TcpLimits {
            per_ip: args.ice_tcp.max_per_ip,
            max: args.ice_tcp.max,
            ..Default::default()
        },
        receive_buffer: args.udp_recv_buffer,
        send_buffer: args.udp_send_buffer,
        ice_lite: args.ice_lite,
        peer_timeout: Duration::from_secs(args.peer_timeout_secs),
        codecs: CodecSupport {
            audio: SUPPORTED_AUDIO.iter().map(|s| s.to_string()).collect(),
            video: args.video_codecs.clone(),
        },
        limits: MediaLimits {
            room_participants: args.max_room_participants as usize,
            participants: args.max_participants as usize,
            media_lines: args.max_media_lines as usize,
        },
    })
}

fn offer_limits(args: &BroadcastArgs) -> OfferLimits {
    OfferLimits {
        max_media_lines: args.max_media_lines as usize,
        max_published_tracks: args.max_tracks_per_participant as usize,
    }
}

async fn admission(args: &BroadcastArgs) -> anyhow::Result<Admission> {
    match (&args.jwks_url, args.dev_no_auth) {
        (Some(url), _) => Ok(Admission::Tokens(
            KeyCache::fetch(url, Duration::from_secs(30)).await?,
        )),
        (None, true) => Ok(Admission::Open),
        // Never a silent "admit everyone".
        (None, false) => bail!(
            "no join-token keys: set FIRESFU_JWKS_URL to the sidecar's /.well-known/jwks.json, \
             or for local development FIRESFU_DEV_NO_AUTH=true"
        ),
    }
}

pub async fn run(args: BroadcastArgs) -> anyhow::Result<()> {
    #[cfg(feature = "fault-injection")]
    crate::faults::init_from_env();
    let admission = Arc::new(admission(&args).await?);
    let instance = instance_id(&args);
    let mut config = media_config(&args)?;
    if args.k8s.service {
        // The pod's own load balancer is its public address; it exposes every ICE-TCP
        // listener on the port its candidates advertise.
        let udp_port = args.udp_bind.port();
        let tcp_ports = config
            .tcp
            .iter()
            .map(|l| {
                let target = if l.bind.port() == 0 {
                    udp_port
                } else {
                    l.bind.port()
                };
                let port = if l.advertised_port == 0 {
                    target
                } else {
                    l.advertised_port
                };
                (port, target)
            })
            .collect();
        config.advertise = crate::deploy::k8s::ensure_service(&args.k8s, udp_port, tcp_ports)
            .await
            .context("cannot set up this pod's media Service")?;
    }
    let codecs = Arc::new(config.codecs.clone());
    let db = crate::gcp::firestore(&args.gcp).await?;
    let (engine, media_events) = spawn_engine(config).context("cannot start the media engine")?;
    let engine = Arc::new(engine);
    let _observers = crate::media::observe_media(engine.stats_handle());
    let _firestore_meter = crate::docdb::observe();
    let http = crate::http::serve(
        std::net::SocketAddr::new(args.http_bind_ip, args.app_port),
        engine.clone(),
        instance.clone(),
    )
    .await?;

    let fleet_store = crate::fleet::store::FleetStore::new(db.clone());
    let store = Arc::new(Store::new(db, instance.clone()).with_placement(args.fleet));
    // A restarted instance (same id) first ends what its previous life left behind.
    match store.reclaim(SystemTime::now()).await {
        Ok(r) if r.sessions + r.participants > 0 => tracing::info!(
            sessions = r.sessions,
            participants = r.participants,
            "ended what this instance's previous life left (session-lost)"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot end the previous life's sessions: {e}"),
    }
    let instruments = Arc::new(crate::telemetry::metrics::SignallingInstruments::default());
    let (draining_tx, draining) = tokio::sync::watch::channel(false);
    let reporter = if args.fleet {
        Some(
            start_reporter(
                &args,
                &instance,
                engine.clone(),
                draining,
                instruments.clone(),
            )
            .await?,
        )
    } else {
        None
    };
    let mut assignments = if args.fleet {
        Some(store.watch_assignments().await?)
    } else {
        None
    };
    let (observations_tx, observations) = mpsc::unbounded_channel();
    let mut listener = store.listen(observations_tx.clone()).await?;
    let sweeper = tokio::spawn(sweep(store.clone(), observations_tx.clone()));
    let (events, publishing) = start_events(&args, &instance, &store);
    let (driver_tx, driver_rx) = mpsc::unbounded_channel();
    let ctx = SessionContext {
        store: store.clone(),
        engine: engine.clone(),
        driver: driver_tx,
        admission,
        codecs,
        limits: offer_limits(&args),
        instruments,
        live_ttl: Duration::from_secs(args.session_ttl_secs.max(60)),
        events,
    };
    tracing::info!(
        %instance,
        project = %args.gcp.project,
        firestore = args.gcp.firestore_emulator_host.as_deref().unwrap_or("Google"),
        media = %engine.local_addr(),
        candidates = ?engine.candidates(),
        http = %http,
        fleet = args.fleet,
        events = args.publish_events,
        "broadcast is serving"
    );

    let stop = stop_signal(args.fleet.then(|| Drain {
        instance: instance.clone(),
        store: fleet_store,
        engine: engine.clone(),
        draining: draining_tx,
        grace: Duration::from_secs(args.drain_grace_secs),
    }));
    let cameras = start_cameras(&args, &instance, &engine, &store, &ctx.events)?;
    let driver = Driver::new(
        ctx,
        driver_rx,
        observations_tx,
        Duration::from_secs(args.reconcile_secs.max(1)),
    );
    let result = tokio::select! {
        _ = driver.run(
            observations,
            media_events,
            stop,
            Duration::from_secs(args.shutdown_grace_secs),
        ) => Ok(()),
        // A dead media thread must not look alive: no more load reports (the monitor then
        // moves the rooms), /healthz fails, and the process exits non-zero.
        _ = engine.failed() => Err(anyhow::anyhow!(
            "the media engine stopped unexpectedly (see the panic above); exiting so that the \
             rooms move to a healthy instance"
        )),
    };
    sweeper.abort();
    let _ = cameras.0.send(true);
    let _ = cameras.1.await;
    if let Some(reporter) = reporter {
        reporter.abort();
    }
    // The sessions are over: their last events go out (the driver held the last emitter).
    if let Some(publishing) = publishing {
        let _ = tokio::time::timeout(Duration::from_secs(5), publishing).await;
    }
    let _ = listener.shutdown().await;
    if let Some(a) = assignments.as_mut() {
        let _ = a.shutdown().await;
    }
    if let Ok(engine) = Arc::try_unwrap(engine) {
        engine.join();
    }
    if result.is_ok() {
        tracing::info!("broadcast stopped");
    }
    result
}

/// Room events (`crate::events`) when FIRESFU_EVENTS is on: the emitter for the sessions and
/// the task publishing what they report, which ends once every emitter is gone.
fn start_events(
    args: &BroadcastArgs,
    instance: &str,
    store: &Arc<Store>,
) -> (crate::events::Emitter, Option<tokio::task::JoinHandle<()>>) {
    if !args.publish_events {
        return (crate::events::Emitter::disabled(), None);
    }
    let (emitter, happenings) = crate::events::Emitter::channel();
    let task = tokio::spawn(crate::events::publish::run_instance(
        happenings,
        crate::events::calls::Calls::new(instance),
        store.clone(),
        crate::events::publish::Sink::new(&args.gcp.project, &args.pubsub),
    ));
    (emitter, Some(task))
}

/// The camera supervisor (`crate::ingest`): it pulls the cameras of the rooms this instance
/// serves. Stopped (and awaited) through the returned sender.
fn start_cameras(
    args: &BroadcastArgs,
    instance: &str,
    engine: &Arc<crate::media::EngineHandle>,
    store: &Arc<Store>,
    events: &crate::events::Emitter,
) -> anyhow::Result<(
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
)> {
    let key = crate::sealed::load_key(args.camera_key.as_ref(), args.camera_key_file.as_deref())?
        .map(Arc::new);
    let ctx = Arc::new(crate::ingest::pull::Context {
        engine: engine.clone(),
        cameras: crate::ingest::store::CameraStore::new(store.db().clone(), instance.to_owned()),
        roster: store.clone(),
        key,
        group: Arc::new(retina::client::SessionGroup::default()),
        connect_timeout: Duration::from_secs(args.camera_connect_timeout_secs.max(1)),
        read_timeout: Duration::from_secs(args.camera_read_timeout_secs.max(1)),
        events: events.clone(),
    });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    Ok((
        stop,
        tokio::spawn(crate::ingest::supervisor::run(ctx, stopped)),
    ))
}

async fn start_reporter(
    args: &BroadcastArgs,
    instance: &str,
    engine: Arc<crate::media::EngineHandle>,
    draining: tokio::sync::watch::Receiver<bool>,
    instruments: Arc<crate::telemetry::metrics::SignallingInstruments>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use crate::fleet::reporter::{ReportBuilder, ReporterConfig};
    crate::gcp::ensure_topic(&args.gcp.project, &args.pubsub).await?;
    let publisher = crate::gcp::pubsub_publisher(&args.gcp.project, &args.pubsub).await?;
    let builder = ReportBuilder::new(ReporterConfig {
        instance: instance.to_owned(),
        addresses: engine.candidates().iter().map(|a| a.to_string()).collect(),
        capacity: crate::fleet::proto::Capacity {
            max_rooms: args.max_rooms,
            max_participants: args.max_participants,
            max_published_tracks: args.max_published_tracks,
        },
        interval: Duration::from_millis(args.load_report_ms.max(100)),
    });
    Ok(tokio::spawn(crate::fleet::reporter::run(
        publisher,
        (args.gcp.project.clone(), args.pubsub.clone()),
        engine,
        builder,
        draining,
        instruments,
    )))
}

/// How a fleet instance drains before it stops.
struct Drain {
    instance: String,
    store: crate::fleet::store::FleetStore,
    engine: Arc<crate::media::EngineHandle>,
    draining: tokio::sync::watch::Sender<bool>,
    grace: Duration,
}

/// Resolves when the daemon should stop. Standalone: at the first SIGTERM/SIGINT. In a fleet
/// the first signal starts draining (the reports say so, the monitor moves the rooms away and
/// ends their sessions with `room-moved`); it resolves when no room is assigned here and no
/// peer is left, after the grace period, or at a second signal.
async fn stop_signal(drain: Option<Drain>) {
    crate::process::shutdown_signal().await;
    let Some(drain) = drain else {
        return;
    };
    let _ = drain.draining.send(true);
    tracing::info!(
        grace_s = drain.grace.as_secs(),
        "draining: waiting for the monitor to move this instance's rooms"
    );
    let deadline = tokio::time::Instant::now() + drain.grace;
    let second = crate::process::signalled(2);
    tokio::pin!(second);
    loop {
        tokio::select! {
            _ = &mut second => {
                tracing::info!("second signal: stopping now");
                return;
            }
            _ = tokio::time::sleep_until(deadline) => {
                tracing::warn!("drain grace period over: stopping with sessions left");
                return;
            }
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        let peers = drain.engine.stats().peers;
        match drain.store.rooms_assigned_to(&drain.instance).await {
            Ok(0) if peers == 0 => {
                tracing::info!("drained: no room and no peer left");
                return;
            }
            Ok(rooms) => tracing::debug!(rooms, peers, "draining"),
            Err(e) => tracing::warn!("cannot count the rooms still assigned here: {e}"),
        }
    }
}

/// Sweeps for what a listener can miss: every 3 s the offers waiting for an answer (and at
/// once when a room becomes ours), every 10 s this instance's claims still without an answer.
async fn sweep(store: Arc<Store>, tx: mpsc::UnboundedSender<Observation>) {
    let mut offers = tokio::time::interval(Duration::from_secs(3));
    offers.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut claims = tokio::time::interval(Duration::from_secs(10));
    claims.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let rooms = store.assigned_rooms().clone();
    loop {
        let found = tokio::select! {
            _ = offers.tick() => store.pending_offers().await,
            _ = rooms.gained.notified() => store.pending_offers().await,
            _ = claims.tick() => store.unanswered_claims().await,
        };
        match found {
            Ok(found) => {
                for observation in found {
                    if tx.send(observation).is_err() {
                        return;
                    }
                }
            }
            Err(e) => tracing::warn!("cannot sweep session documents: {e}"),
        }
    }
}
