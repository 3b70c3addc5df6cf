//! Events from Pub/Sub into PostgreSQL: each event becomes one delivery row per enabled endpoint
//! that wants its type, in one statement, and only then is the message acknowledged. A crash
//! before the commit leaves the message unacknowledged: Pub/Sub delivers it again (the
//! subscription is ordered, so the room's later events wait behind it); a redelivered event
//! finds its rows (unique per endpoint and event id) and adds none.
//!
//! Deliveries are not held in Pub/Sub until they succeed: retries last hours (longer than any
//! acknowledgement deadline), and an ordered subscription would hold every later event of the
//! room, for every endpoint, behind one endpoint that is down.

use std::time::Duration;

use prost::Message as _;
use sqlx::PgPool;
use tokio::sync::watch;

use super::payload;
use crate::events::proto::Event;
use crate::gcp::PubsubArgs;

/// Stores the event's deliveries; how many rows it added.
pub async fn store(db: &PgPool, event: &Event) -> Result<u64, sqlx::Error> {
    let Some((kind, body)) = payload::body(event) else {
        tracing::warn!(event = %event.id, "an event of a kind this sidecar does not know: skipped");
        return Ok(0);
    };
    let added = sqlx::query(
        "INSERT INTO webhook_deliveries (endpoint_id, event_id, event_type, room, payload) \
         SELECT id, $1, $2, $3, $4 FROM webhook_endpoints \
         WHERE enabled AND (cardinality(event_types) = 0 OR $2 = ANY(event_types)) \
         ON CONFLICT (endpoint_id, event_id) DO NOTHING",
    )
    .bind(&event.id)
    .bind(kind)
    .bind(&event.room_id)
    .bind(body)
    .execute(db)
    .await?;
    Ok(added.rows_affected())
}

/// Consumes the events subscription until the process stops; `wake` is bumped when rows were
/// added, so that deliverers start at once.
pub async fn run(
    db: PgPool,
    (project, pubsub): (String, PubsubArgs),
    subscription: String,
    wake: watch::Sender<u64>,
) {
    loop {
        if let Err(e) =
            crate::gcp::ensure_topic_named(&project, &pubsub, &pubsub.events_topic).await
        {
            tracing::warn!("{e:#}");
        }
        if let Err(e) =
            crate::gcp::ensure_events_subscription(&project, &pubsub, &subscription).await
        {
            tracing::warn!("{e:#}");
            tokio::time::sleep(Duration::from_secs(2)).await;
            continue;
        }
        let subscriber = match crate::gcp::pubsub_subscriber(&pubsub).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot make a Pub/Sub subscriber: {e:#}");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        tracing::info!(%subscription, "taking events for webhooks");
        let mut stream = subscriber.subscribe(&subscription).build();
        while let Some(next) = stream.next().await {
            let (message, handler) = match next {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!("the events stream failed: {e}");
                    break;
                }
            };
            let event = match Event::decode(message.data.as_ref()) {
                Ok(event) => event,
                Err(e) => {
                    // It would never decode on redelivery either.
                    tracing::warn!("an undecodable event, dropped: {e}");
                    handler.ack();
                    continue;
                }
            };
            match store(&db, &event).await {
                Ok(added) => {
                    handler.ack();
                    if added > 0 {
                        wake.send_modify(|n| *n += 1);
                    }
                }
                Err(e) => {
                    // Pub/Sub gives it (and the room's later events) back.
                    tracing::warn!(event = %event.id, "cannot store an event's deliveries: {e}");
                    handler.nack();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
