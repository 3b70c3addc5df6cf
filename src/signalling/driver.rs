//! Routes what the listener and the sweeps see, and what the media engine reports, to the
//! per-session tasks; and reconciles what this instance holds against the documents.
//!
//! The listener replays: the emulator re-sends a whole target after each change, and every
//! reconnect resends what changed since the last resume token. Snapshots older than one already
//! seen for a document are dropped here; the rest go through the pure decision, and only
//! documents that ask for work reach a session task (which re-checks in a transaction).
//!
//! A listener can also miss changes and deletes. Every `reconcile_every` the driver re-reads
//! the document of each session it holds (a deleted or closed one releases its peer) and
//! closes engine peers no session task owns.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;

use super::announce::LEFT;
use super::decide::{Decision, Observed, decide};
use super::quality::Quality;
use super::session::{DriverMsg, SessionContext, SessionMsg, run_session};
use super::store::Observation;
use crate::media::{CloseReason, MediaEvent, SessionEvent, SessionKey};

pub struct Driver {
    ctx: SessionContext,
    driver_rx: mpsc::UnboundedReceiver<DriverMsg>,
    /// Where reconcile reads go (the same channel as the listener's observations).
    observations_tx: mpsc::UnboundedSender<Observation>,
    sessions: HashMap<SessionKey, mpsc::UnboundedSender<SessionMsg>>,
    /// The newest update time (µs) seen per document.
    seen: HashMap<SessionKey, i64>,
    reconcile_every: Duration,
}

impl Driver {
    pub fn new(
        ctx: SessionContext,
        driver_rx: mpsc::UnboundedReceiver<DriverMsg>,
        observations_tx: mpsc::UnboundedSender<Observation>,
        reconcile_every: Duration,
    ) -> Self {
        Driver {
            ctx,
            driver_rx,
            observations_tx,
            sessions: HashMap::new(),
            seen: HashMap::new(),
            reconcile_every,
        }
    }

    /// Runs until `shutdown` resolves, then ends every session (the engine reports each as
    /// closed) and returns once their documents are written or `grace` has passed.
    pub async fn run(
        mut self,
        mut observations: mpsc::UnboundedReceiver<Observation>,
        mut media: mpsc::UnboundedReceiver<MediaEvent>,
        shutdown: impl std::future::Future<Output = ()>,
        grace: Duration,
    ) {
        tokio::pin!(shutdown);
        let mut draining: Option<Instant> = None;
        let mut reconcile = tokio::time::interval(self.reconcile_every);
        reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        reconcile.tick().await;
        loop {
            if let Some(deadline) = draining
                && (self.sessions.is_empty() || Instant::now() >= deadline)
            {
                break;
            }
            tokio::select! {
                Some(observation) = observations.recv(), if draining.is_none() => {
                    self.on_observation(observation)
                }
                Some(event) = media.recv() => self.on_media(event),
                Some(msg) = self.driver_rx.recv() => self.on_driver_msg(msg),
                _ = reconcile.tick(), if draining.is_none() => self.reconcile(),
                _ = &mut shutdown, if draining.is_none() => {
                    tracing::info!(sessions = self.sessions.len(), "shutting down: ending every session");
                    self.ctx.engine.request_shutdown();
                    draining = Some(Instant::now() + grace);
                }
                _ = tokio::time::sleep(Duration::from_millis(200)), if draining.is_some() => {}
            }
        }
    }

    fn on_observation(&mut self, observation: Observation) {
        match observation {
            Observation::Changed { key, updated, doc } => {
                if self.seen.get(&key).is_some_and(|seen| updated <= *seen) {
                    return;
                }
                let now_us = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_micros() as i64)
                    .unwrap_or(updated);
                self.ctx
                    .instruments
                    .listener_lag((now_us - updated) as f64 / 1e6);
                self.seen.insert(key.clone(), updated);
                self.act(key, &doc);
            }
            Observation::Swept {
                key,
                doc: Some(doc),
            } => self.act(key, &doc),
            Observation::Swept { key, doc: None } | Observation::Deleted { key } => {
                tracing::debug!(%key, "the session's document is gone");
                self.seen.remove(&key);
                self.send(&key, SessionMsg::Leave(LEFT.into()));
            }
            Observation::Left { key } => {
                tracing::debug!(%key, "the document left a listener target");
                self.send(&key, SessionMsg::Recheck)
            }
            Observation::Resent { keys } => {
                // Sessions with a peer (their documents name this instance); offers still
                // being claimed are in another target.
                let missing: Vec<SessionKey> = self
                    .ctx
                    .engine
                    .sessions()
                    .into_iter()
                    .map(|(key, _)| key)
                    .filter(|k| self.sessions.contains_key(k) && !keys.contains(k))
                    .collect();
                for key in missing {
                    tracing::debug!(%key, "not in the resent target: checking its document");
                    self.send(&key, SessionMsg::Recheck);
                }
            }
        }
    }

    /// Decides on a document's current state and hands the work to its session task.
    fn act(&mut self, key: SessionKey, doc: &Value) {
        let holding = self.sessions.contains_key(&key);
        let media = doc.get("media").filter(|m| m.is_object()).cloned();
        let receive = doc.get("receive").cloned().unwrap_or(Value::Null);
        match decide(&Observed::from_doc(doc), self.ctx.store.instance(), holding) {
            Decision::Ignore => {}
            Decision::Leave => {
                // A document the server closed names why (`room-moved`: the monitor moved the
                // room); one the client closed has no error.
                let reason = doc.pointer("/error/code").and_then(Value::as_str);
                self.send(&key, SessionMsg::Leave(reason.unwrap_or(LEFT).into()))
            }
            work => {
                // A client may pass its trace context (W3C `traceparent`) along.
                let traceparent = doc
                    .get("traceparent")
                    .and_then(Value::as_str)
                    .filter(|t| t.len() <= 128)
                    .map(str::to_owned);
                self.session(&key);
                self.send(&key, SessionMsg::Work(work, traceparent));
            }
        }
        if let Some(media) = media {
            self.send(&key, SessionMsg::Media(media));
        }
        let hand = doc.get("hand").and_then(Value::as_bool).unwrap_or(false);
        self.send(&key, SessionMsg::Hand(hand));
        self.send(&key, SessionMsg::Muted(muted_mids(doc)));
        self.send(&key, SessionMsg::Receive(receive));
    }

    /// Re-reads every held session's document (a missed delete or close releases its peer)
    /// and closes engine peers that no session task owns.
    fn reconcile(&mut self) {
        for (key, peer) in self.ctx.engine.sessions() {
            if !self.sessions.contains_key(&key) {
                tracing::info!(%key, "closing a peer no session owns");
                self.ctx.engine.close(peer, CloseReason::Left);
            }
        }
        let keys: Vec<SessionKey> = self.sessions.keys().cloned().collect();
        let (store, tx) = (self.ctx.store.clone(), self.observations_tx.clone());
        tokio::spawn(async move {
            let reads = futures::stream::iter(keys)
                .map(|key| {
                    let store = store.clone();
                    async move { (store.read(&key).await, key) }
                })
                .buffer_unordered(8);
            tokio::pin!(reads);
            while let Some((read, key)) = reads.next().await {
                match read {
                    Ok(doc) => {
                        let _ = tx.send(Observation::Swept { key, doc });
                    }
                    Err(e) => tracing::warn!(%key, "cannot reconcile a session: {e}"),
                }
            }
        });
    }

    fn on_media(&mut self, event: MediaEvent) {
        let msg = match event.what {
            SessionEvent::Connected => SessionMsg::Connected,
            SessionEvent::Closed(reason) => SessionMsg::EngineClosed(reason),
            SessionEvent::ViewChanged(view) => SessionMsg::View(view),
            SessionEvent::Quality { rtt_ms, loss } => SessionMsg::Quality(Quality { rtt_ms, loss }),
            SessionEvent::Layers(layers) => SessionMsg::Layers(layers),
            SessionEvent::Speaker(speaker) => SessionMsg::Speaker(speaker),
        };
        self.send(&event.session, msg);
    }

    fn on_driver_msg(&mut self, msg: DriverMsg) {
        match msg {
            DriverMsg::Finished { key } => {
                self.sessions.remove(&key);
                self.seen.remove(&key);
            }
        }
    }

    fn session(&mut self, key: &SessionKey) {
        if self.sessions.contains_key(key) {
            return;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        self.sessions.insert(key.clone(), tx);
        tokio::spawn(run_session(key.clone(), self.ctx.clone(), rx));
    }

    fn send(&self, key: &SessionKey, msg: SessionMsg) {
        if let Some(tx) = self.sessions.get(key) {
            let _ = tx.send(msg);
        }
    }
}

/// The published mids a document's `muted` map (written by the server API only) sets `true`.
fn muted_mids(doc: &Value) -> std::collections::BTreeSet<String> {
    doc.get("muted")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(_, v)| v.as_bool() == Some(true))
                .map(|(mid, _)| mid.clone())
                .collect()
        })
        .unwrap_or_default()
}
