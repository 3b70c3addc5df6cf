//! Puts events on the events topic: one Pub/Sub message per event, ordering key = room (a
//! room's events are delivered in the order they were published), attributes `type` and `room`.
//! A publish that fails is retried in order (the room's key is resumed first) for up to
//! [`PATIENCE`]; after that the event is given up with a warning, so that a long Pub/Sub outage
//! costs events, not memory or the media plane.

use std::collections::HashMap;
use std::time::Duration;

use prost::Message as _;
use tokio::sync::mpsc;

use super::calls::Calls;
use super::proto::Event;
use super::{Happening, attributes, new_id, type_name};
use crate::gcp::PubsubArgs;

/// How long one event is retried.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Whether a room just moved to this instance (its participants are re-joining an ongoing
/// call). Implemented on the session store, which reads the room's assignment.
pub trait RoomOrigin {
    fn moved_in(&self, room: &str) -> impl Future<Output = bool> + Send;
}

pub struct Sink {
    project: String,
    pubsub: PubsubArgs,
    publisher: Option<google_cloud_pubsub::client::Publisher>,
    pub published: u64,
    pub given_up: u64,
}

impl Sink {
    pub fn new(project: &str, pubsub: &PubsubArgs) -> Sink {
        Sink {
            project: project.to_owned(),
            pubsub: pubsub.clone(),
            publisher: None,
            published: 0,
            given_up: 0,
        }
    }

    /// Creates the events topic unless it exists, and the publisher (errors are logged:
    /// publishing reports them).
    pub async fn prepare(&mut self) {
        let topic = &self.pubsub.events_topic;
        if let Err(e) = crate::gcp::ensure_topic_named(&self.project, &self.pubsub, topic).await {
            tracing::warn!("{e:#}");
        }
        if self.publisher.is_none() {
            match crate::gcp::publisher_to(&self.project, &self.pubsub, topic).await {
                Ok(p) => self.publisher = Some(p),
                Err(e) => tracing::warn!("cannot make the events publisher: {e:#}"),
            }
        }
    }

    /// Publishes `event` (giving it an id if it has none), retrying for [`PATIENCE`].
    pub async fn send(&mut self, mut event: Event) {
        if event.id.is_empty() {
            event.id = new_id();
        }
        let data = event.encode_to_vec();
        let started = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(250);
        loop {
            let error = match self.try_send(&event, &data).await {
                Ok(()) => {
                    self.published += 1;
                    return;
                }
                Err(e) => e,
            };
            if started.elapsed() + delay > PATIENCE {
                self.given_up += 1;
                tracing::warn!(
                    room = %event.room_id,
                    event = event.kind.as_ref().map(type_name).unwrap_or(""),
                    "an event could not be published within {PATIENCE:?}: {error}"
                );
                return;
            }
            tracing::debug!("cannot publish an event (retrying): {error}");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(8));
        }
    }

    async fn try_send(&mut self, event: &Event, data: &[u8]) -> Result<(), String> {
        if self.publisher.is_none() {
            let topic = &self.pubsub.events_topic;
            let made = crate::gcp::publisher_to(&self.project, &self.pubsub, topic);
            self.publisher = Some(made.await.map_err(|e| format!("{e:#}"))?);
        }
        let Some(publisher) = self.publisher.clone() else {
            return Err("no publisher".into());
        };
        let message = google_cloud_pubsub::model::Message::new()
            .set_data(data.to_vec())
            .set_ordering_key(event.room_id.clone())
            .set_attributes(attributes(event));
        match tokio::time::timeout(Duration::from_secs(10), publisher.publish(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                // Publishing on this key is paused after an error until resumed.
                publisher.resume_publish(event.room_id.clone());
                if crate::gcp::publish_not_found(&e) {
                    self.prepare().await;
                }
                Err(e.to_string())
            }
            Err(_) => {
                // The client's own retries back off for long after an outage: start afresh.
                self.publisher = None;
                Err("no answer from Pub/Sub within 10 s".into())
            }
        }
    }
}

/// A broadcast instance's events: its sessions' happenings, with the calls around them.
pub async fn run_instance<O: RoomOrigin>(
    mut rx: mpsc::Receiver<Happening>,
    mut calls: Calls,
    origin: O,
    mut sink: Sink,
) {
    sink.prepare().await;
    while let Some(h) = rx.recv().await {
        let moved_in = calls.starts_call(&h) && origin.moved_in(&h.room).await;
        for event in calls.apply(h, moved_in) {
            sink.send(event).await;
        }
    }
}

/// The monitor's events (room moves), numbered per room.
pub async fn run_monitor(mut rx: mpsc::Receiver<Happening>, mut sink: Sink) {
    sink.prepare().await;
    let mut sequences: HashMap<String, u64> = HashMap::new();
    while let Some(h) = rx.recv().await {
        let sequence = sequences.entry(h.room.clone()).or_default();
        *sequence += 1;
        let event = Event {
            id: new_id(),
            room_id: h.room,
            at_unix_ms: super::unix_ms(h.at),
            source: "monitor".into(),
            sequence: *sequence,
            kind: Some(h.kind),
        };
        sink.send(event).await;
    }
}
