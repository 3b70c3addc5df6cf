//! `firesfu broadcast`: the media engine, the Firestore listener and the session driver.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::mpsc;

use crate::cli::BroadcastArgs;
use crate::media::codecs::{SUPPORTED_AUDIO, SUPPORTED_VIDEO};
use crate::media::{CodecSupport, MediaConfig, spawn_engine};
use crate::signalling::admission::{Admission, KeyCache};
use crate::signalling::driver::Driver;
use crate::signalling::session::SessionContext;
use crate::signalling::store::Store;

/// `<host name>-<random>`: unique per process, readable in dashboards.
pub fn host_instance(fallback: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| fallback.into());
    format!("{host}-{:06x}", rand::random::<u32>() & 0xff_ffff)
}

pub fn instance_id(args: &BroadcastArgs) -> String {
    args.instance_id
        .clone()
        .unwrap_or_else(|| host_instance("firesfu"))
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
        receive_buffer: args.udp_recv_buffer,
        send_buffer: args.udp_send_buffer,
        ice_lite: args.ice_lite,
        peer_timeout: Duration::from_secs(args.peer_timeout_secs),
        codecs: CodecSupport {
            audio: SUPPORTED_AUDIO.iter().map(|s| s.to_string()).collect(),
            video: args.video_codecs.clone(),
        },
    })
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
    let admission = Arc::new(admission(&args).await?);
    let instance = instance_id(&args);
    let config = media_config(&args)?;
    let codecs = Arc::new(config.codecs.clone());
    let db = crate::gcp::firestore(&args.gcp).await?;
    let (engine, media_events) = spawn_engine(config).context("cannot start the media engine")?;
    let engine = Arc::new(engine);
    let _observers = crate::telemetry::metrics::observe_media(engine.stats_handle());
    let http = crate::http::serve(
        std::net::SocketAddr::new(args.http_bind_ip, args.app_port),
        engine.clone(),
        instance.clone(),
    )
    .await?;

    let store = Arc::new(Store::new(db, instance.clone()));
    let (observations_tx, observations) = mpsc::unbounded_channel();
    let mut listener = store.listen(observations_tx.clone()).await?;
    let sweeper = tokio::spawn(sweep_pending_offers(store.clone(), observations_tx));
    let (driver_tx, driver_rx) = mpsc::unbounded_channel();
    let ctx = SessionContext {
        store: store.clone(),
        engine: engine.clone(),
        driver: driver_tx,
        admission,
        codecs,
        instruments: Arc::new(crate::telemetry::metrics::SignallingInstruments::default()),
        live_ttl: Duration::from_secs(args.session_ttl_secs.max(60)),
    };
    tracing::info!(
        %instance,
        project = %args.gcp.project,
        firestore = args.gcp.firestore_emulator_host.as_deref().unwrap_or("Google"),
        media = %engine.local_addr(),
        candidates = ?engine.candidates(),
        http = %http,
        "broadcast is serving"
    );

    Driver::new(ctx, driver_rx)
        .run(
            observations,
            media_events,
            shutdown_signal(),
            Duration::from_secs(args.shutdown_grace_secs),
        )
        .await;
    sweeper.abort();
    let _ = listener.shutdown().await;
    if let Ok(engine) = Arc::try_unwrap(engine) {
        engine.join();
    }
    tracing::info!("broadcast stopped");
    Ok(())
}

/// Every few seconds, offers still waiting for an answer go through the driver again, in case
/// the listener missed them.
async fn sweep_pending_offers(
    store: Arc<Store>,
    tx: mpsc::UnboundedSender<crate::signalling::store::Observation>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(3));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match store.pending_offers().await {
            Ok(pending) => {
                for observation in pending {
                    if tx.send(observation).is_err() {
                        return;
                    }
                }
            }
            Err(e) => tracing::warn!("cannot list pending offers: {e}"),
        }
    }
}

/// SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
