//! Routes what the listener sees and what the media engine reports to the per-session tasks.
//!
//! The listener replays: the emulator re-sends a whole target after each change, and every
//! reconnect resends what changed since the last resume token. Snapshots older than one already
//! seen for a document are dropped here; the rest go through the pure decision, and only
//! documents that ask for work reach a session task (which re-checks in a transaction).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::decide::{Decision, Observed, decide};
use super::session::{DriverMsg, SessionContext, SessionMsg, run_session};
use super::store::Observation;
use crate::media::{MediaEvent, SessionEvent, SessionKey};

pub struct Driver {
    ctx: SessionContext,
    driver_rx: mpsc::UnboundedReceiver<DriverMsg>,
    sessions: HashMap<SessionKey, mpsc::UnboundedSender<SessionMsg>>,
    /// The newest update time (µs) seen per document.
    seen: HashMap<SessionKey, i64>,
}

impl Driver {
    pub fn new(ctx: SessionContext, driver_rx: mpsc::UnboundedReceiver<DriverMsg>) -> Self {
        Driver {
            ctx,
            driver_rx,
            sessions: HashMap::new(),
            seen: HashMap::new(),
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
                let holding = self.sessions.contains_key(&key);
                let media = doc.get("media").filter(|m| m.is_object()).cloned();
                match decide(
                    &Observed::from_doc(&doc),
                    self.ctx.store.instance(),
                    holding,
                ) {
                    Decision::Ignore => {}
                    Decision::Leave => self.send(&key, SessionMsg::Leave),
                    work => {
                        // A client may pass its trace context (W3C `traceparent`) along.
                        let traceparent = doc
                            .get("traceparent")
                            .and_then(serde_json::Value::as_str)
                            .filter(|t| t.len() <= 128)
                            .map(str::to_owned);
                        self.session(&key);
                        self.send(&key, SessionMsg::Work(work, traceparent));
                    }
                }
                if let Some(media) = media {
                    self.send(&key, SessionMsg::Media(media));
                }
            }
            Observation::Deleted { key } => {
                self.seen.remove(&key);
                self.send(&key, SessionMsg::Leave);
            }
            Observation::Left { key } => self.send(&key, SessionMsg::Recheck),
        }
    }

    fn on_media(&mut self, event: MediaEvent) {
        let msg = match event.what {
            SessionEvent::Connected => SessionMsg::Connected,
            SessionEvent::Closed(reason) => SessionMsg::EngineClosed(reason),
            SessionEvent::ViewChanged(view) => SessionMsg::View(view),
            SessionEvent::Quality { rtt_ms, loss } => SessionMsg::Quality { rtt_ms, loss },
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
