//! Webhooks: room events (`crate::events`, from Pub/Sub) delivered to the endpoints an
//! application registered with an API key, signed per Standard Webhooks, retried with backoff,
//! at least once, kept as dead letters when given up. [`intake`] stores each event's deliveries
//! and acknowledges it; [`deliver`] runs one worker per endpoint; [`api`] manages endpoints and
//! dead letters; [`signing`], [`payload`] and [`schedule`] are pure.

pub mod api;
pub mod deliver;
pub mod intake;
pub mod payload;
pub mod schedule;
pub mod signing;

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;

use crate::gcp::PubsubArgs;

#[derive(Debug, Clone, clap::Args)]
pub struct WebhookArgs {
    /// Deliver room events (published by broadcast instances and the monitor with
    /// FIRESFU_EVENTS) to the registered webhook endpoints. Any number of sidecars may.
    #[arg(long, env = "FIRESFU_WEBHOOKS", default_value_t = false, action = clap::ArgAction::Set)]
    pub webhooks: bool,
    #[command(flatten)]
    pub pubsub: PubsubArgs,
    /// The subscription to the events topic the deliverers share (created when missing).
    #[arg(
        long,
        env = "FIRESFU_WEBHOOK_SUBSCRIPTION",
        default_value = "firesfu-webhooks"
    )]
    pub webhook_subscription: String,
    /// One delivery attempt's time limit, milliseconds.
    #[arg(long, env = "FIRESFU_WEBHOOK_TIMEOUT_MS", default_value_t = 10_000)]
    pub webhook_timeout_ms: u64,
    /// The first retry's delay, milliseconds; each next one is 4 times longer (±25 % jitter).
    #[arg(long, env = "FIRESFU_WEBHOOK_RETRY_BASE_MS", default_value_t = 5_000)]
    pub webhook_retry_base_ms: u64,
    /// The longest delay between two attempts, milliseconds.
    #[arg(
        long,
        env = "FIRESFU_WEBHOOK_RETRY_MAX_MS",
        default_value_t = 3_600_000
    )]
    pub webhook_retry_max_ms: u64,
    /// How long a delivery is retried before it is given up (a dead letter), seconds.
    #[arg(long, env = "FIRESFU_WEBHOOK_RETRY_FOR_SECS", default_value_t = 86_400)]
    pub webhook_retry_for_secs: u64,
}

/// Starts the intake and the deliverers (FIRESFU_WEBHOOKS); their tasks run until the process
/// ends.
pub fn start(
    db: &PgPool,
    project: &str,
    args: &WebhookArgs,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    if !args.webhooks {
        return Ok(vec![]);
    }
    let timeout = Duration::from_millis(args.webhook_timeout_ms.clamp(100, 60_000));
    let (wake_tx, wake) = tokio::sync::watch::channel(0u64);
    let deliverer = Arc::new(deliver::Deliverer {
        db: db.clone(),
        http: deliver::client(timeout)?,
        schedule: schedule::Schedule {
            base: Duration::from_millis(args.webhook_retry_base_ms.max(10)),
            max_delay: Duration::from_millis(args.webhook_retry_max_ms.max(10)),
            retry_for: Duration::from_secs(args.webhook_retry_for_secs),
        },
        timeout,
        wake,
    });
    let subscription = format!(
        "projects/{project}/subscriptions/{}",
        args.webhook_subscription
    );
    tracing::info!(%subscription, topic = %args.pubsub.events_topic, "delivering webhooks");
    Ok(vec![
        tokio::spawn(intake::run(
            db.clone(),
            (project.to_owned(), args.pubsub.clone()),
            subscription,
            wake_tx,
        )),
        tokio::spawn(deliver::run(deliverer)),
    ])
}
