//! One task per participant session, owning that session's Firestore writes in order:
//! claim → answer → view updates → connected → end. Ordering per session matters (an older
//! view must never overwrite a newer one); tasks of different sessions run concurrently.
//!
//! Every claimed offer ends answered or refused with an error code, after transient Firestore
//! failures too: a failed claim or answer write is retried with backoff, and beyond that the
//! driver's sweeps hand the document back (`Resume`) until the write lands or the peer ends.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tracing::Instrument;

mod fields;

use super::admission::Admission;
use super::announce::{Announcer, LEFT, participant};
use super::decide::Decision;
use super::limits::OfferLimits;
use super::protocol::{ErrorCode, SessionError, SessionState};
use super::quality::Quality;
use super::refusal::negotiation_error;
use super::store::{AnswerWrite, Claim, ClaimContext, ENDED_TTL, Live, Store};
use crate::docdb::DbError;
use crate::jointoken::Grants;
use crate::media::{
    CloseReason, CodecSupport, EngineHandle, NegotiationError, PeerId, Roster, SessionKey,
    SessionOffer, SessionView,
};
use crate::telemetry::metrics::SignallingInstruments;

pub enum SessionMsg {
    /// A decision taken on a listener snapshot (answer, reject, resume, lost), with the
    /// client's trace context if its document carries one.
    Work(Decision, Option<String>),
    /// The client left: its document is `closed` or deleted. The reason is `left`, or the
    /// error code the document was closed with (`room-moved` when the monitor moved the room).
    Leave(String),
    /// The document left our listener's targets; read it to learn why.
    Recheck,
    Connected,
    EngineClosed(CloseReason),
    View(SessionView),
    /// The client's `media` field (which of its tracks are on), mirrored into the roster.
    Media(serde_json::Value),
    /// The client's `receive` field (what it wants on its slots), for the engine.
    Receive(serde_json::Value),
    /// The client's `hand` field (a raised hand), mirrored into the roster's `handRaisedAt`.
    Hand(bool),
    /// The published mids the application muted (the document's `muted`).
    Muted(std::collections::BTreeSet<String>),
    /// Which simulcast layers the publisher should encode, for its document.
    Layers(std::collections::BTreeMap<String, std::collections::BTreeMap<String, bool>>),
    /// The room's dominant speaker changed: this session writes it for the room.
    Speaker(Option<(String, String)>),
    Quality(Quality),
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
    pub limits: OfferLimits,
    pub instruments: Arc<SignallingInstruments>,
    /// How far ahead `expiresAt` of a live session is kept.
    pub live_ttl: Duration,
    /// Where joins, leaves and tracks are reported for webhooks.
    pub events: crate::events::Emitter,
}

/// A write the session could not make yet.
enum Unsent {
    Answer { revision: i64, sdp: String },
    Refusal { revision: i64, error: SessionError },
}

impl Unsent {
    fn revision(&self) -> i64 {
        match self {
            Unsent::Answer { revision, .. } | Unsent::Refusal { revision, .. } => *revision,
        }
    }
}

/// Retries with backoff: 0.25, 0.5, 1, 2 s; then the driver's sweeps take over.
const RETRIES: u32 = 4;

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250 << attempt.min(4))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RetryWhat {
    Claim,
    Write,
}

struct Session {
    key: SessionKey,
    ctx: SessionContext,
    peer: Option<PeerId>,
    connected: bool,
    uid: Option<String>,
    grants: Grants,
    joined: Option<SystemTime>,
    roster: Option<Roster>,
    /// The highest offer revision whose answer is in the document.
    answered: i64,
    unsent: Option<Unsent>,
    /// Consecutive failed claims or writes, and when to try again.
    failures: u32,
    retry: Option<(Instant, RetryWhat)>,
    /// The newest view the engine produced (an answer written late carries this one, not the
    /// one of its negotiation: views written meanwhile must not be undone).
    view: SessionView,
    /// Version of the newest view written (with an answer or alone).
    view_version: u64,
    /// The first negotiation's span stays open until ICE/DTLS connect.
    join_span: Option<tracing::Span>,
    /// The client's `media` field, if it wrote one.
    media: Option<serde_json::Value>,
    /// Published mids the application muted (the document's `muted`).
    muted: std::collections::BTreeSet<String>,
    /// Since when the client's `hand` is raised.
    hand: Option<SystemTime>,
    /// The client's `receive` field as last applied (null: none), and the wishes read from it.
    receive: serde_json::Value,
    /// A bad `receive` was reported in `error` (cleared when a good one follows).
    receive_refused: bool,
    wishes: Option<std::collections::HashMap<String, crate::media::SlotWish>>,
    /// The quality last written into the roster.
    quality: Option<Quality>,
    /// What webhooks were told about this participant.
    announcer: Announcer,
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
        grants: Grants::ALL,
        joined: None,
        roster: None,
        answered: 0,
        unsent: None,
        failures: 0,
        retry: None,
        view: SessionView::default(),
        view_version: 0,
        join_span: None,
        media: None,
        muted: Default::default(),
        hand: None,
        receive: serde_json::Value::Null,
        receive_refused: false,
        wishes: None,
        quality: None,
        announcer: Announcer::default(),
        finished: false,
    };
    let mut pending: std::collections::VecDeque<SessionMsg> = Default::default();
    while !session.finished {
        let retry_at = session.retry.map(|(at, _)| at);
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
                _ = sleep_until(retry_at), if retry_at.is_some() => {
                    session.retry_now().await;
                    continue;
                }
            },
        };
        match msg {
            SessionMsg::Work(decision, traceparent) => session.work(decision, traceparent).await,
            SessionMsg::Leave(reason) => session.leave(&reason).await,
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
                session.write_view(view).await;
            }
            SessionMsg::Media(media) => session.media_changed(media).await,
            SessionMsg::Receive(receive) => session.receive_changed(receive).await,
            SessionMsg::Hand(raised) => session.hand_changed(raised).await,
            SessionMsg::Muted(muted) => session.muted_changed(muted).await,
            SessionMsg::Layers(layers) => session.write_layers(layers).await,
            SessionMsg::Speaker(speaker) => {
                let speaker = speaker.as_ref().map(|(s, n)| (s.as_str(), n.as_str()));
                if let Err(e) = session
                    .ctx
                    .store
                    .write_speaker(&session.key.room, speaker, now())
                    .await
                {
                    tracing::warn!(key = %session.key, "cannot write the room's speaker: {e}");
                }
            }
            SessionMsg::Quality(q) => session.quality(q).await,
        }
    }
    if !session.finished
        && let Some(peer) = session.peer
    {
        session.ctx.engine.close(peer, CloseReason::Left);
        session.announce(Some(ErrorCode::ServerShutdown.as_str()));
    }
    let _ = driver.send(DriverMsg::Finished { key });
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}

fn now() -> SystemTime {
    SystemTime::now()
}

impl Session {
    fn live(&self) -> Option<Live> {
        self.peer.map(|_| Live {
            state: if self.connected {
                SessionState::Connected
            } else {
                SessionState::Answered
            },
            grants: self.grants,
        })
    }

    /// Until a peer exists every failure ends the session; afterwards it keeps running.
    fn done_unless_live(&mut self) {
        self.finished = self.peer.is_none();
    }

    fn failed(&mut self, what: RetryWhat) {
        self.failures += 1;
        self.retry = if self.failures <= RETRIES {
            Some((Instant::now() + backoff(self.failures - 1), what))
        } else {
            // The driver's sweeps (pending offers, unanswered claims) bring it back.
            tracing::warn!(key = %self.key, "stopped retrying; the next sweep resumes");
            None
        };
    }

    fn succeeded(&mut self) {
        self.failures = 0;
        self.retry = None;
    }

    async fn retry_now(&mut self) {
        match self.retry.take() {
            Some((_, RetryWhat::Claim)) => {
                let span = tracing::info_span!("join", otel.name = "join", retry = true);
                self.answer(&span).await;
            }
            Some((_, RetryWhat::Write)) => self.write_unsent().await,
            None => {}
        }
    }

    async fn work(&mut self, decision: Decision, traceparent: Option<String>) {
        match decision {
            Decision::Answer { revision } | Decision::Resume { revision }
                if revision >= 1 && revision <= self.answered =>
            {
                // A snapshot older than our own answer (the listener lags behind our write).
            }
            Decision::Answer { revision } | Decision::Resume { revision }
                if self
                    .unsent
                    .as_ref()
                    .is_some_and(|u| u.revision() == revision) =>
            {
                // Negotiated already; only the write is missing.
                self.write_unsent().await;
            }
            Decision::Answer { .. } | Decision::Reject(_) | Decision::Resume { .. } => {
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
                self.done_unless_live();
            }
            Decision::Leave => self.leave(LEFT).await,
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
                ClaimContext {
                    live: self.live(),
                    admission: self.ctx.admission.clone(),
                    codecs: self.ctx.codecs.clone(),
                    limits: self.ctx.limits,
                    now: now(),
                },
            )
            .instrument(tracing::info_span!(parent: span, "firestore.claim"))
            .await;
        let admitted = match claim {
            Ok(Claim::Answer(admitted)) => admitted,
            Ok(Claim::Rejected(error)) => {
                span.record("outcome", error.code.as_str());
                self.ctx
                    .instruments
                    .join(started.elapsed().as_secs_f64(), "refused");
                tracing::info!(key = %self.key, code = error.code.as_str(), "offer refused: {}", error.message);
                self.succeeded();
                self.done_unless_live();
                return;
            }
            Ok(Claim::Nothing) => {
                self.succeeded();
                self.done_unless_live();
                return;
            }
            Err(e) => {
                tracing::warn!(key = %self.key, "cannot claim an offer (retrying): {e}");
                self.failed(RetryWhat::Claim);
                // Without a peer and out of retries, the sweep of pending offers starts a new
                // task for the document.
                if self.retry.is_none() {
                    self.done_unless_live();
                }
                return;
            }
        };
        self.succeeded();
        let request = admitted.request;
        if self.peer.is_none() {
            self.uid = request.uid.clone();
            self.grants = admitted.grants;
        }
        let negotiated = self
            .ctx
            .engine
            .negotiate(SessionOffer {
                key: self.key.clone(),
                peer: self.peer,
                display_name: request.display_name.clone(),
                sdp: request.sdp.clone(),
                receives: self.grants.subscribe,
                sources: request.sources.clone(),
                presenters: admitted.presenters,
                watch: request.watch.clone(),
            })
            .instrument(tracing::info_span!(parent: span, "media.negotiate"))
            .await;
        let negotiated = match negotiated {
            Ok(n) => n,
            // The expected peer is gone: its `EngineClosed` is on its way and ends the session.
            Err(NegotiationError::Closed) => return,
            Err(e) => {
                let error = negotiation_error(&e);
                span.record("outcome", error.code.as_str());
                self.ctx
                    .instruments
                    .join(started.elapsed().as_secs_f64(), "refused");
                tracing::info!(key = %self.key, code = error.code.as_str(), "offer not negotiated: {e}");
                self.unsent = Some(Unsent::Refusal {
                    revision: request.revision,
                    error,
                });
                self.write_unsent().await;
                self.done_unless_live();
                return;
            }
        };
        if self.peer.is_none() {
            self.peer = Some(negotiated.peer);
            self.joined = Some(now());
            // Wishes written before the peer existed apply now.
            if let Some(wishes) = &self.wishes {
                self.ctx.engine.set_wishes(self.key.clone(), wishes.clone());
            }
        }
        self.note_view(negotiated.view);
        self.unsent = Some(Unsent::Answer {
            revision: request.revision,
            sdp: negotiated.answer,
        });
        async { self.write_unsent().await }
            .instrument(tracing::info_span!(parent: span, "firestore.write_answer"))
            .await;
        if self.answered >= request.revision {
            self.ctx
                .instruments
                .join(started.elapsed().as_secs_f64(), "answered");
            span.record("outcome", "answered");
            tracing::info!(
                key = %self.key,
                revision = request.revision,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "answer written"
            );
        }
        // The client left while we answered (the write found its document gone): no roster
        // entry for a session that is over.
        if self.finished {
            return;
        }
        if self.roster.as_ref() != Some(&negotiated.roster) {
            self.roster = Some(negotiated.roster);
            self.write_participant().await;
            self.announce(None);
        }
    }

    /// Writes the answer or refusal that waits; on failure schedules a retry.
    async fn write_unsent(&mut self) {
        let Some(unsent) = &self.unsent else {
            return;
        };
        let written: Result<bool, DbError> = match unsent {
            Unsent::Answer { revision, sdp } => {
                let write = AnswerWrite {
                    revision: *revision,
                    sdp,
                    view: &self.view,
                    state: self.live().map_or(SessionState::Answered, |l| l.state),
                    expires: now() + self.ctx.live_ttl,
                };
                self.ctx.store.write_answer(&self.key, &write, now()).await
            }
            Unsent::Refusal { revision, error } => {
                self.ctx
                    .store
                    .refuse(
                        &self.key,
                        *revision,
                        error,
                        self.live().map(|l| l.state),
                        now(),
                    )
                    .await
            }
        };
        let revision = unsent.revision();
        let is_answer = matches!(unsent, Unsent::Answer { .. });
        let view_version = self.view.version;
        match written {
            Ok(true) => {
                if is_answer {
                    self.answered = self.answered.max(revision);
                    self.view_version = self.view_version.max(view_version);
                }
                self.unsent = None;
                self.succeeded();
            }
            Ok(false) => {
                // The client re-offered or left while we answered; its next state decides.
                self.unsent = None;
                self.succeeded();
                self.recheck().await;
            }
            Err(e) => {
                tracing::warn!(key = %self.key, revision, "cannot write to the session (retrying): {e}");
                self.failed(RetryWhat::Write);
            }
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

    fn note_view(&mut self, view: SessionView) {
        if view.version > self.view.version {
            self.view = view;
        }
    }

    async fn write_view(&mut self, view: SessionView) {
        self.note_view(view);
        if self.view.version <= self.view_version {
            return;
        }
        self.view_version = self.view.version;
        if let Err(e) = self
            .ctx
            .store
            .write_view(&self.key, &self.view, now())
            .await
        {
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

    async fn leave(&mut self, reason: &str) {
        if let Some(peer) = self.peer {
            self.ctx.engine.close(peer, CloseReason::Left);
        }
        self.remove_participant().await;
        self.announce(Some(reason));
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
            Ok(None) => self.leave(LEFT).await,
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
            CloseReason::ConnectFailed(attempt) => Some((
                SessionState::Failed,
                SessionError::new(ErrorCode::ConnectFailed, attempt.describe()),
            )),
            CloseReason::Shutdown => Some((
                SessionState::Closed,
                SessionError::new(
                    ErrorCode::ServerShutdown,
                    "the server instance is shutting down; join again",
                ),
            )),
            CloseReason::WatchedGone => Some((
                SessionState::Closed,
                SessionError::new(
                    ErrorCode::WatchedGone,
                    "the participant this session watches left the room",
                ),
            )),
        };
        let reason = ending.as_ref().map_or(LEFT, |(_, e)| e.code.as_str());
        if let Some((state, error)) = &ending {
            tracing::info!(key = %self.key, code = error.code.as_str(), "session ended by the server");
            if let Err(e) = self.ctx.store.end(&self.key, *state, error, now()).await {
                tracing::warn!(key = %self.key, "cannot end a session: {e}");
            }
        }
        self.remove_participant().await;
        self.announce(Some(reason));
        self.peer = None;
        self.finished = true;
    }

    /// Tells webhooks that the participant joined (once) and what it publishes now, or (with
    /// a reason) that it left.
    fn announce(&mut self, left: Option<&str>) {
        let Some(roster) = &self.roster else { return };
        let (events, room) = (&self.ctx.events, &self.key.room);
        let who = participant(
            &self.key,
            roster,
            self.uid.as_deref(),
            self.ctx.store.instance(),
        );
        match left {
            None => self.announcer.roster(events, room, who, roster),
            Some(reason) => {
                let stayed = self.joined.and_then(|t| now().duration_since(t).ok());
                self.announcer.left(events, room, who, reason, stayed)
            }
        }
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
