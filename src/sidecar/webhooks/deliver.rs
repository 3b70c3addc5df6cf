//! Delivery: one worker per enabled endpoint, so that a slow or dead receiver delays only its
//! own deliveries. A worker takes the due rows that are first of their room (a room's events
//! reach an endpoint in order; different rooms go in parallel), holds them for the attempt
//! (another sidecar takes them over if this one dies), POSTs each signed body and records the
//! outcome: 2xx → delivered; anything else → tried again on the [`Schedule`], or given up and
//! kept as a dead letter (`failed`) once the schedule's time is over.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

use super::schedule::Schedule;
use super::signing;

/// Rows one worker takes at once (each the first pending one of its room).
const BATCH: i64 = 64;
/// Delivered rows are kept this long, so that an event Pub/Sub delivers again is not sent again.
const KEEP_DELIVERED: &str = "1 hour";

pub struct Deliverer {
    pub db: PgPool,
    pub http: reqwest::Client,
    pub schedule: Schedule,
    /// One attempt's time limit.
    pub timeout: Duration,
    pub wake: watch::Receiver<u64>,
}

/// The HTTP client deliveries use: no redirects (a 3xx is a failed attempt), no proxy from the
/// environment.
pub fn client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("firesfu-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// Keeps one worker per enabled endpoint until the process stops, and sweeps delivered rows.
pub async fn run(d: Arc<Deliverer>) {
    let mut workers: HashMap<Uuid, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut wake = d.wake.clone();
    let mut last_sweep = tokio::time::Instant::now();
    loop {
        // Every 2 s, and when events arrive (an endpoint registered a moment ago gets its
        // worker before its first delivery is due).
        tokio::select! {
            _ = tick.tick() => {}
            _ = wake.changed() => {}
        }
        let endpoints: Result<Vec<(Uuid,)>, _> =
            sqlx::query_as("SELECT id FROM webhook_endpoints WHERE enabled")
                .fetch_all(&d.db)
                .await;
        let Ok(endpoints) = endpoints.inspect_err(|e| tracing::warn!("cannot list endpoints: {e}"))
        else {
            continue;
        };
        workers.retain(|id, task| {
            let keep = !task.is_finished() && endpoints.iter().any(|(e,)| e == id);
            if !keep {
                task.abort();
            }
            keep
        });
        for (id,) in endpoints {
            workers
                .entry(id)
                .or_insert_with(|| tokio::spawn(worker(d.clone(), id)));
        }
        if last_sweep.elapsed() < Duration::from_secs(60) {
            continue;
        }
        last_sweep = tokio::time::Instant::now();
        let swept = sqlx::query(&format!(
            "DELETE FROM webhook_deliveries WHERE state = 'delivered' \
             AND created_at < now() - interval '{KEEP_DELIVERED}'"
        ))
        .execute(&d.db)
        .await;
        if let Err(e) = swept {
            tracing::warn!("cannot sweep delivered rows: {e}");
        }
    }
}

struct Due {
    seq: i64,
    event_id: String,
    payload: String,
    attempts: i32,
    created_at: DateTime<Utc>,
}

enum Outcome {
    Delivered(u16),
    Failed(Option<u16>, String),
}

async fn worker(d: Arc<Deliverer>, endpoint: Uuid) {
    let mut wake = d.wake.clone();
    loop {
        let row: Result<Option<(String, String, bool)>, _> =
            sqlx::query_as("SELECT url, secret, enabled FROM webhook_endpoints WHERE id = $1")
                .bind(endpoint)
                .fetch_optional(&d.db)
                .await;
        let (url, secret) = match row {
            Ok(Some((url, secret, true))) => (url, secret),
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(%endpoint, "cannot read the endpoint: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let due = match take(&d, endpoint).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(%endpoint, "cannot take deliveries: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if due.is_empty() {
            let pause = next_due(&d.db, endpoint).await;
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = wake.changed() => {}
            }
            continue;
        }
        let Some(key) = signing::key_bytes(&secret) else {
            tracing::error!(%endpoint, "the endpoint's secret is malformed; rotate it");
            tokio::time::sleep(Duration::from_secs(5)).await;
            continue;
        };
        let attempts = due.iter().map(|row| attempt(&d, &url, &key, row));
        let outcomes = futures::future::join_all(attempts).await;
        // Successes in one statement; failures (rarer) one by one, each with its schedule.
        let mut delivered = (Vec::new(), Vec::new());
        let mut failed = Vec::new();
        for (row, outcome) in due.iter().zip(outcomes) {
            match outcome {
                Outcome::Delivered(status) => {
                    delivered.0.push(row.seq);
                    delivered.1.push(i32::from(status));
                }
                Outcome::Failed(status, error) => failed.push((row, status, error)),
            }
        }
        // A record that fails leaves the row held: the hold expires and it is taken again.
        if let Err(e) = record_delivered(&d.db, &delivered.0, &delivered.1).await {
            tracing::warn!(%endpoint, "cannot record deliveries: {e}");
        }
        for (row, status, error) in failed {
            if let Err(e) = record_failed(&d, endpoint, row, status, error).await {
                tracing::warn!(%endpoint, "cannot record a failed delivery: {e}");
            }
        }
    }
}

/// Holds and returns the due rows that are first of their room.
async fn take(d: &Deliverer, endpoint: Uuid) -> Result<Vec<Due>, sqlx::Error> {
    let hold = (d.timeout + Duration::from_secs(5)).as_secs_f64();
    let rows: Vec<(i64, String, String, i32, DateTime<Utc>)> = sqlx::query_as(
        "UPDATE webhook_deliveries SET locked_until = now() + make_interval(secs => $2) \
         WHERE seq IN ( \
           SELECT p.seq FROM webhook_deliveries p \
           WHERE p.endpoint_id = $1 AND p.state = 'pending' AND p.next_attempt_at <= now() \
             AND (p.locked_until IS NULL OR p.locked_until < now()) \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e WHERE e.endpoint_id = p.endpoint_id \
                             AND e.room = p.room AND e.state = 'pending' AND e.seq < p.seq) \
           ORDER BY p.seq LIMIT $3 FOR UPDATE SKIP LOCKED) \
         RETURNING seq, event_id, payload, attempts, created_at",
    )
    .bind(endpoint)
    .bind(hold)
    .bind(BATCH)
    .fetch_all(&d.db)
    .await?;
    let mut due: Vec<Due> = rows
        .into_iter()
        .map(|(seq, event_id, payload, attempts, created_at)| Due {
            seq,
            event_id,
            payload,
            attempts,
            created_at,
        })
        .collect();
    due.sort_by_key(|r| r.seq);
    Ok(due)
}

/// How long to wait for the endpoint's next due row (at most 2 s: rows held by a sidecar that
/// died come due when their hold ends).
async fn next_due(db: &PgPool, endpoint: Uuid) -> Duration {
    let next: Result<(Option<f64>,), _> = sqlx::query_as(
        "SELECT extract(epoch FROM min(greatest(next_attempt_at, coalesce(locked_until, next_attempt_at)) - now()))::float8 \
         FROM webhook_deliveries WHERE endpoint_id = $1 AND state = 'pending'",
    )
    .bind(endpoint)
    .fetch_one(db)
    .await;
    let secs = next.ok().and_then(|(s,)| s).unwrap_or(2.0);
    Duration::from_secs_f64(secs.clamp(0.01, 2.0))
}

async fn attempt(d: &Deliverer, url: &str, key: &[u8], row: &Due) -> Outcome {
    let id = format!("evt_{}", row.event_id);
    let timestamp = Utc::now().timestamp();
    let signature = signing::sign(key, &id, timestamp, &row.payload);
    let sent = d
        .http
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(row.payload.clone())
        .send()
        .await;
    match sent {
        Ok(response) if response.status().is_success() => {
            Outcome::Delivered(response.status().as_u16())
        }
        Ok(response) => {
            let status = response.status();
            Outcome::Failed(
                Some(status.as_u16()),
                format!("the endpoint answered {status}"),
            )
        }
        Err(e) if e.is_timeout() => Outcome::Failed(
            None,
            format!("no answer within {} ms", d.timeout.as_millis()),
        ),
        Err(e) => Outcome::Failed(None, chain(&e)),
    }
}

async fn record_delivered(db: &PgPool, seqs: &[i64], statuses: &[i32]) -> Result<(), sqlx::Error> {
    if seqs.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE webhook_deliveries d SET state = 'delivered', attempts = d.attempts + 1, \
         last_status = u.status, last_error = NULL, locked_until = NULL \
         FROM unnest($1::bigint[], $2::int[]) AS u(seq, status) WHERE d.seq = u.seq",
    )
    .bind(seqs)
    .bind(statuses)
    .execute(db)
    .await?;
    Ok(())
}

async fn record_failed(
    d: &Deliverer,
    endpoint: Uuid,
    row: &Due,
    status: Option<u16>,
    error: String,
) -> Result<(), sqlx::Error> {
    let attempts = row.attempts + 1;
    let age = (Utc::now() - row.created_at).to_std().unwrap_or_default();
    let next = d.schedule.next(attempts as u32, age, rand::random());
    if next.is_none() {
        tracing::warn!(%endpoint, event = %row.event_id, attempts, "webhook delivery given up (a dead letter now): {error}");
    } else {
        tracing::info!(%endpoint, event = %row.event_id, attempts, "webhook delivery failed, trying again: {error}");
    }
    sqlx::query(
        "UPDATE webhook_deliveries SET attempts = $2, last_status = $3, last_error = $4, \
         locked_until = NULL, \
         state = CASE WHEN $5::float8 IS NULL THEN 'failed' ELSE 'pending' END, \
         failed_at = CASE WHEN $5::float8 IS NULL THEN now() END, \
         next_attempt_at = now() + make_interval(secs => coalesce($5::float8, 0)) \
         WHERE seq = $1",
    )
    .bind(row.seq)
    .bind(attempts)
    .bind(status.map(i32::from))
    .bind(error)
    .bind(next.map(|n| n.as_secs_f64()))
    .execute(&d.db)
    .await?;
    Ok(())
}

/// An error with its causes ("error sending request: … : connection refused").
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
