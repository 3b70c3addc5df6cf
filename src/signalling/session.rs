//! One task per participant session, owning that session's Firestore writes in order:
//! claim → answer → view updates → connected → end. Ordering per session matters (an older
//! view must never overwrite a newer one); tasks of different sessions run concurrently.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use super::admission::Admission;
use super::decide::Decision;
use super::protocol::{ErrorCode, SessionError, SessionState};
use super::store::{AnswerWrite, Claim, ENDED_TTL, Store};
use crate::media::{
    CloseReason, CodecSupport, EngineHandle, NegotiationError, OfferError, PeerId, Roster,
    SessionKey, SessionView,
};
use crate::telemetry::metrics::SignallingInstruments;
use tracing::Instrument;

pub enum SessionMsg {
    /// A decision taken on a listener snapshot (answer, reject, lost), with the client's
    /// trace context if its document carries one.
    Work(Decision, Option<String>),
    /// The client left: its document is `closed` or deleted.
    Leave,
    /// The document left our listener's targets; read it to learn why.
    Recheck,
    Connected,
    EngineClosed(CloseReason),
    View(SessionView),
    /// The client's `media` field (which of its tracks are on), mirrored into the roster.
    Media(serde_json::Value),
    Quality {
        rtt_ms: Option<f64>,
        loss: Option<f64>,
    },
}

/// What a session task tells the driver.
pub enum DriverMsg {
    Finished { key: SessionKey },
}

#[derive(Clone)]
pub struct SessionContext {
    pub store: Arc<Store>,
    pub engine: Arc<EngineHandle>,
    pub driver: mpsc::UnboundedSender<DriverMsg>,
    pub admission: Arc<Admission>,
    pub codecs: Arc<CodecSupport>,
    pub instruments: Arc<SignallingInstruments>,
    /// How far ahead `expiresAt` of a live session is kept.
    pub live_ttl: Duration,
}

struct Session {
    key: SessionKey,
    ctx: SessionContext,
    peer: Option<PeerId>,
    connected: bool,
    uid: Option<String>,
    joined: Option<SystemTime>,
    roster: Option<Roster>,
    /// Version of the newest view written (with an answer or alone).
    view_version: u64,
    /// The first negotiation's span stays open until ICE/DTLS connect.
    join_span: Option<tracing::Span>,
    /// The client's `media` field, if it wrote one.
    media: Option<serde_json::Value>,
    finished: bool,
}

pub async fn run_session(
    key: SessionKey,
    ctx: SessionContext,
    mut inbox: mpsc::UnboundedReceiver<SessionMsg>,
) {
    let driver = ctx.driver.clone();
    let mut refresh = tokio::time::interval(ctx.live_ttl / 2);
    refresh.tick().await;
    let mut session = Session {
        key: key.clone(),
        ctx,
        peer: None,
        connected: false,
        uid: None,
        joined: None,
        roster: None,
        view_version: 0,
        join_span: None,
        media: None,
        finished: false,
    };
    let mut pending: VecDeque<SessionMsg> = VecDeque::new();
    while !session.finished {
        let msg = match pending.pop_front() {
            Some(msg) => msg,
            None => tokio::select! {
                msg = inbox.recv() => match msg {
                    Some(msg) => msg,
                    None => break,
                },
                _ = refresh.tick() => {
                    session.refresh().await;
                    continue;
                }
            },
        };
        match msg {
            SessionMsg::Work(decision, traceparent) => session.work(decision, traceparent).await,
            SessionMsg::Leave => session.leave().await,
            SessionMsg::Recheck => session.recheck().await,
            SessionMsg::Connected => session.connected().await,
            SessionMsg::EngineClosed(reason) => session.engine_closed(reason).await,
            SessionMsg::View(mut view) => {
                // Only the newest view matters: skip the ones queued behind it.
                while let Ok(next) = inbox.try_recv() {
                    match next {
                        SessionMsg::View(newer) => view = newer,
                        other => pending.push_back(other),
                    }
                }
                session.write_view(&view).await;
            }
            SessionMsg::Media(media) => session.media_changed(media).await,
            SessionMsg::Quality { rtt_ms, loss } => session.quality(rtt_ms, loss).await,
        }
    }
    if !session.finished
        && let Some(peer) = session.peer
    {
        session.ctx.engine.close(peer, CloseReason::Left);
    }
    let _ = driver.send(DriverMsg::Finished { key });
}

fn now() -> SystemTime {
    SystemTime::now()
}

fn negotiation_error(e: &NegotiationError) -> SessionError {
    let code = match e {
        NegotiationError::Offer(OfferError::TooLarge { .. }) => ErrorCode::SdpTooLarge,
        NegotiationError::Offer(OfferError::Malformed(_)) => ErrorCode::SdpMalformed,
        NegotiationError::Offer(OfferError::NoUsableMedia(_)) => ErrorCode::NoUsableMedia,
        NegotiationError::Rejected(_) => ErrorCode::NegotiationFailed,
        NegotiationError::Closed | NegotiationError::EngineGone => ErrorCode::ServerShutdown,
    };
    SessionError::new(code, e.to_string())
}

impl Session {
    fn live_state(&self) -> Option<SessionState> {
        self.peer.map(|_| {
            if self.connected {
                SessionState::Connected
            } else {
                SessionState::Answered
            }
        })
    }

    async fn work(&mut self, decision: Decision, traceparent: Option<String>) {
        match decision {
            Decision::Answer { .. } | Decision::Reject(_) => {
                let span = tracing::info_span!(
                    "join",
                    otel.name = "join",
                    room = %self.key.room,
                    session = %self.key.session,
                    first = self.peer.is_none(),
                    outcome = tracing::field::Empty,
                );
                if let Some(tp) = &traceparent {
                    crate::telemetry::continue_trace(&span, tp);
                }
                self.answer(&span).await;
                // The first answer's span ends when the peer connects (or fails); re-offers end here.
                if self.peer.is_some() && !self.connected && self.join_span.is_none() {
                    self.join_span = Some(span);
                }
            }
            Decision::Lost => {
                if let Err(e) = self.ctx.store.mark_lost(&self.key, now()).await {
                    tracing::warn!(key = %self.key, "cannot mark a lost session: {e}");
                }
                self.finished = self.peer.is_none();
            }
            Decision::Leave => self.leave().await,
            Decision::Ignore => {}
        }
    }

    async fn answer(&mut self, span: &tracing::Span) {
        let started = std::time::Instant::now();
        let claim = self
            .ctx
            .store
            .claim(
                &self.key,
                self.live_state(),
                self.ctx.admission.clone(),
                self.ctx.codecs.clone(),
                now(),
            )
            .instrument(tracing::info_span!(parent: span, "firestore.claim"))
            .await;
        let request = match claim {
            Ok(Claim::Answer(request)) => request,
            Ok(Claim::Rejected(error)) => {
                span.record("outcome", error.code.as_str());
                self.ctx
                    .instruments
                    .join(started.elapsed().as_secs_f64(), "refused");
                tracing::info!(key = %self.key, code = error.code.as_str(), "offer refused: {}", error.message);
                self.finished = self.peer.is_none();
                return;
            }
            Ok(Claim::Nothing) => {
                self.finished = self.peer.is_none();
                return;
            }
            Err(e) => {
                tracing::warn!(key = %self.key, "cannot claim an offer: {e}");
                self.finished = self.peer.is_none();
                return;
            }
        };
        self.uid = request.uid.clone();
        let negotiated = self
            .ctx
            .engine
            .negotiate(
                self.key.clone(),
                request.display_name.clone(),
                request.sdp.clone(),
            )
            .instrument(tracing::info_span!(parent: span, "media.negotiate"))
            .await;
        let negotiated = match negotiated {
            Ok(n) => n,
            Err(e) => {
                let error = negotiation_error(&e);
                span.record("outcome", error.code.as_str());
                self.ctx
                    .instruments
                    .join(started.elapsed().as_secs_f64(), "refused");
                tracing::info!(key = %self.key, code = error.code.as_str(), "offer not negotiated: {e}");
                if let Err(e) = self
                    .ctx
                    .store
                    .refuse(
                        &self.key,
                        request.revision,
                        &error,
                        self.live_state(),
                        now(),
                    )
                    .await
                {
                    tracing::warn!(key = %self.key, "cannot report a refused offer: {e}");
                }
                self.finished = self.peer.is_none();
                return;
            }
        };
        if self.peer.is_none() {
            self.peer = Some(negotiated.peer);
            self.joined = Some(now());
        }
        let state = self.live_state().unwrap_or(SessionState::Answered);
        self.view_version = self.view_version.max(negotiated.view.version);
        let written = self
            .ctx
            .store
            .write_answer(
                &self.key,
                &AnswerWrite {
                    revision: request.revision,
                    sdp: &negotiated.answer,
                    view: &negotiated.view,
                    state,
                    expires: now() + self.ctx.live_ttl,
                },
                now(),
            )
            .instrument(tracing::info_span!(parent: span, "firestore.write_answer"))
            .await;
        match written {
            Ok(true) => {
                self.ctx
                    .instruments
                    .join(started.elapsed().as_secs_f64(), "answered");
                span.record("outcome", "answered");
                tracing::info!(
                    key = %self.key,
                    revision = request.revision,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "answer written"
                )
            }
            Ok(false) => {
                // The client re-offered or left while we answered; its next state decides.
                self.recheck().await;
                return;
            }
            Err(e) => tracing::warn!(key = %self.key, "cannot write an answer: {e}"),
        }
        if self.roster.as_ref() != Some(&negotiated.roster) {
            self.roster = Some(negotiated.roster);
            self.write_participant().await;
        }
    }

    /// What the roster says is on: the client's `media` field, or everything it publishes.
    fn media_value(&self) -> serde_json::Value {
        self.media.clone().unwrap_or_else(|| {
            let tracks = self
                .roster
                .as_ref()
                .map(|r| r.tracks.as_slice())
                .unwrap_or(&[]);
            serde_json::json!({
                "audio": tracks.iter().any(|(_, k)| *k == crate::media::MediaKind::Audio),
                "video": tracks.iter().any(|(_, k)| *k == crate::media::MediaKind::Video),
            })
        })
    }

    async fn media_changed(&mut self, media: serde_json::Value) {
        if self.media.as_ref() == Some(&media) {
            return;
        }
        self.media = Some(media.clone());
        if self.roster.is_some()
            && let Err(e) = self
                .ctx
                .store
                .update_participant(&self.key, serde_json::json!({ "media": media }), &["media"])
                .await
        {
            tracing::warn!(key = %self.key, "cannot update the roster's media state: {e}");
        }
    }

    async fn quality(&self, rtt_ms: Option<f64>, loss: Option<f64>) {
        if self.roster.is_none() {
            return;
        }
        let quality = serde_json::json!({ "quality": { "rttMs": rtt_ms, "loss": loss } });
        if let Err(e) = self
            .ctx
            .store
            .update_participant(&self.key, quality, &["quality"])
            .await
        {
            tracing::warn!(key = %self.key, "cannot update the roster's quality: {e}");
        }
    }

    async fn write_participant(&self) {
        let Some(roster) = &self.roster else {
            return;
        };
        let t = now();
        if let Some(uid) = &self.uid
            && let Err(e) = self.ctx.store.put_member(&self.key.room, uid, t).await
        {
            tracing::warn!(key = %self.key, "cannot write the member document: {e}");
        }
        if let Err(e) = self
            .ctx
            .store
            .put_participant(
                &self.key,
                roster,
                &self.media_value(),
                self.uid.clone(),
                self.joined.unwrap_or(t),
                t + self.ctx.live_ttl,
                t,
            )
            .await
        {
            tracing::warn!(key = %self.key, "cannot write the participant document: {e}");
        }
    }

    async fn connected(&mut self) {
        self.connected = true;
        if let Some(span) = self.join_span.take() {
            span.record("outcome", "connected");
        }
        if let Err(e) = self.ctx.store.mark_connected(&self.key, now()).await {
            tracing::warn!(key = %self.key, "cannot mark a session connected: {e}");
        }
    }

    async fn write_view(&mut self, view: &SessionView) {
        if view.version <= self.view_version {
            return;
        }
        self.view_version = view.version;
        if let Err(e) = self.ctx.store.write_view(&self.key, view, now()).await {
            tracing::warn!(key = %self.key, "cannot write a session view: {e}");
        }
    }

    async fn refresh(&self) {
        if self.peer.is_none() {
            return;
        }
        let expires = now() + self.ctx.live_ttl;
        if let Err(e) = self.ctx.store.refresh_expiry(&self.key, expires).await {
            tracing::warn!(key = %self.key, "cannot refresh expiresAt: {e}");
        }
        self.write_participant().await;
    }

    async fn leave(&mut self) {
        if let Some(peer) = self.peer {
            self.ctx.engine.close(peer, CloseReason::Left);
        }
        self.remove_participant().await;
        // A `closed` document stays for a while so the client can see it, then expires.
        let _ = self
            .ctx
            .store
            .refresh_expiry(&self.key, now() + ENDED_TTL)
            .await;
        self.finished = true;
    }

    async fn recheck(&mut self) {
        match self.ctx.store.read(&self.key).await {
            Ok(None) => self.leave().await,
            Ok(Some(_)) => {}
            Err(e) => tracing::warn!(key = %self.key, "cannot re-read a session: {e}"),
        }
    }

    async fn engine_closed(&mut self, reason: CloseReason) {
        let ending = match reason {
            CloseReason::Left => None,
            CloseReason::Timeout => Some((
                SessionState::Closed,
                SessionError::new(
                    ErrorCode::PeerTimeout,
                    "nothing was heard from this peer connection for too long",
                ),
            )),
            CloseReason::ConnectFailed => Some((
                SessionState::Failed,
                SessionError::new(ErrorCode::ConnectFailed, "ICE or DTLS failed"),
            )),
            CloseReason::Shutdown => Some((
                SessionState::Closed,
                SessionError::new(
                    ErrorCode::ServerShutdown,
                    "the server instance is shutting down; join again",
                ),
            )),
        };
        if let Some((state, error)) = ending {
            tracing::info!(key = %self.key, code = error.code.as_str(), "session ended by the server");
            if let Err(e) = self.ctx.store.end(&self.key, state, &error, now()).await {
                tracing::warn!(key = %self.key, "cannot end a session: {e}");
            }
        }
        self.remove_participant().await;
        self.peer = None;
        self.finished = true;
    }

    async fn remove_participant(&self) {
        if self.roster.is_none() {
            return;
        }
        if let Err(e) = self.ctx.store.delete_participant(&self.key).await {
            tracing::warn!(key = %self.key, "cannot delete the participant document: {e}");
        }
        if let Some(uid) = &self.uid
            && let Err(e) = self
                .ctx
                .store
                .remove_member_unless_present(&self.key, uid)
                .await
        {
            tracing::warn!(key = %self.key, "cannot remove the member document: {e}");
        }
    }
}
