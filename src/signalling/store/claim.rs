//! Claiming an offer: the transaction that moves a session document from `offered` to
//! `answering` for exactly one instance, once the offer passed every check an offer must pass
//! (the room, the document's fields, the SDP's limits, the join token of a first offer and the
//! grants of every offer). A refusal is written in the same transaction.

use std::sync::Arc;
use std::time::SystemTime;

use firestore::errors::{BackoffError, FirestoreError};
use firestore::{FirestoreDb, FirestoreTransaction};
use serde_json::Value;

use super::{SessionWrite, Store, refusal_write};
use crate::docdb::{self, meter, timestamp};
use crate::jointoken::{Grants, JoinClaims};
use crate::media::SessionKey;
use crate::media::offer::{CodecSupport, OfferError, inspect_offer};
use crate::signalling::admission::{Admission, check_offer_grants};
use crate::signalling::decide::{Decision, Observed, decide};
use crate::signalling::limits::OfferLimits;
use crate::signalling::protocol::{
    ErrorCode, JOIN_TOKENS, ROOMS, SESSIONS, SessionError, SessionState, assignment_of,
};
use crate::signalling::validate::{OfferRequest, validate_offer};

type TxResult<T> = Result<T, BackoffError<FirestoreError>>;

/// What the session task knows about its live negotiation, if it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Live {
    /// The state to return to after a refused re-offer (`answered` or `connected`).
    pub state: SessionState,
    /// What the session's join token granted (checked against every re-offer).
    pub grants: Grants,
}

/// Everything a claim checks an offer against.
#[derive(Clone)]
pub struct ClaimContext {
    pub live: Option<Live>,
    pub admission: Arc<Admission>,
    pub codecs: Arc<CodecSupport>,
    pub limits: OfferLimits,
    pub now: SystemTime,
}

/// An offer this instance now answers.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub request: OfferRequest,
    pub grants: Grants,
    /// The room's presenter limit (its document's `maxPresenters`; 0: any number).
    pub presenters: u32,
}

/// Screen shares a room allows at once when its document does not say (`maxPresenters`).
pub const DEFAULT_PRESENTERS: u32 = 1;

/// The room document's `maxPresenters`: how many may share a screen at once (0: any number).
pub fn presenters_of(room: &Value) -> u32 {
    room.get("maxPresenters")
        .and_then(crate::signalling::validate::as_integer)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(DEFAULT_PRESENTERS)
}

/// The outcome of trying to claim an offer.
#[derive(Debug, Clone)]
pub enum Claim {
    /// Ours to answer (the document now says `answering`).
    Answer(Admitted),
    /// The offer was refused; the error is in the document.
    Rejected(SessionError),
    /// Nothing to do: already handled, another instance's, or the document is gone.
    Nothing,
}

/// A checked offer, before its token is recorded as used.
struct Checked {
    admitted: Admitted,
    claims: Option<JoinClaims>,
}

fn offer_error(e: &OfferError) -> SessionError {
    let code = match e {
        OfferError::TooLarge { .. } => ErrorCode::SdpTooLarge,
        OfferError::Malformed(_) => ErrorCode::SdpMalformed,
        OfferError::NoUsableMedia(_) => ErrorCode::NoUsableMedia,
    };
    SessionError::new(code, e.to_string())
}

fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Every check of one offer, in the order a client should fix them: the document, the SDP and
/// its limits, the token of a first offer, the grants.
async fn check(doc: &Value, room: &str, ctx: &ClaimContext) -> Result<Checked, SessionError> {
    let first = ctx.live.is_none();
    let request = validate_offer(doc, first && ctx.admission.requires_token())?;
    let offer = inspect_offer(&request.sdp, &ctx.codecs).map_err(|e| offer_error(&e))?;
    ctx.limits.check(&offer)?;
    let (grants, claims) = match ctx.live {
        Some(live) => (live.grants, None),
        None => {
            let claims = ctx
                .admission
                .verify(
                    request.token.as_deref(),
                    request.uid.as_deref(),
                    room,
                    unix_seconds(ctx.now),
                )
                .await?;
            (claims.as_ref().map_or(Grants::ALL, |c| c.grants), claims)
        }
    };
    check_offer_grants(grants, &offer)?;
    let mut request = request;
    if let Some(claims) = &claims {
        // A token-admitted participant is called what the application named it.
        request.display_name = claims.name.clone();
    }
    Ok(Checked {
        admitted: Admitted {
            request,
            grants,
            presenters: DEFAULT_PRESENTERS,
        },
        claims,
    })
}

/// Whether the listener's decision asks this claim to answer the document's offer.
fn wants_answer(decision: &Decision, observed: &Observed) -> bool {
    match decision {
        Decision::Answer { .. } | Decision::Resume { .. } => true,
        // `answering` under our name with no live negotiation: our own earlier claim whose
        // reply was lost (a timeout after the commit). Answering it now is what it waits for.
        Decision::Lost => observed.state == Some(SessionState::Answering),
        _ => false,
    }
}

impl Store {
    /// Claims the session's current offer if it still needs an answer from this instance.
    pub async fn claim(
        &self,
        key: &SessionKey,
        ctx: ClaimContext,
    ) -> Result<Claim, docdb::DbError> {
        #[cfg(feature = "fault-injection")]
        if crate::faults::fail(crate::faults::Fault::Claim) {
            return Err(docdb::DbError::Timeout(docdb::CALL_TIMEOUT));
        }
        // In a fleet, most offers belong to other instances' rooms: a cached look at the
        // assignment spares the transaction (which checks it again).
        if self.placement && !self.rooms.may_be_mine(&key.room) {
            return Ok(Claim::Nothing);
        }
        let (key, me, placement) = (key.clone(), self.instance.clone(), self.placement);
        meter::transaction();
        let call = self.db.run_transaction(move |db, tx| {
            let (key, me, ctx) = (key.clone(), me.clone(), ctx.clone());
            Box::pin(async move { claim_in(&db, tx, &key, &me, placement, &ctx).await })
        });
        docdb::timed(call).await
    }
}

async fn claim_in(
    db: &FirestoreDb,
    tx: &mut FirestoreTransaction<'_>,
    key: &SessionKey,
    me: &str,
    placement: bool,
    ctx: &ClaimContext,
) -> TxResult<Claim> {
    let parent = db.parent_path(ROOMS, &key.room)?;
    let room: Option<Value> = db
        .fluent()
        .select()
        .by_id_in(ROOMS)
        .obj()
        .one(&key.room)
        .await?;
    let doc: Option<Value> = db
        .fluent()
        .select()
        .by_id_in(SESSIONS)
        .parent(&parent)
        .obj()
        .one(&key.session)
        .await?;
    meter::read(2);
    let Some(doc) = doc else {
        return Ok(Claim::Nothing);
    };
    // In a fleet another instance's room is left to it (and an unplaced one to the monitor,
    // which places it or fails the session with fleet-full).
    if placement && let Some(room) = &room {
        let span = tracing::info_span!("placement.lookup", mine = tracing::field::Empty);
        let mine = assignment_of(room).is_some_and(|a| a.instance == me);
        span.record("mine", mine);
        if !mine {
            return Ok(Claim::Nothing);
        }
    }
    let observed = Observed::from_doc(&doc);
    let decision = decide(&observed, me, ctx.live.is_some());
    let revision = observed.offer_revision.filter(|r| *r >= 1);
    let refusal = match decision {
        Decision::Reject(e) => e,
        ref d if !wants_answer(d, &observed) => return Ok(Claim::Nothing),
        _ if room.is_none() => SessionError::new(
            ErrorCode::RoomNotFound,
            format!("room \"{}\" does not exist", key.room),
        ),
        _ => match check(&doc, &key.room, ctx).await {
            Ok(checked) => {
                let refusal = match &checked.claims {
                    Some(claims) => use_token_once(db, tx, key, claims).await?,
                    None => None,
                };
                match refusal {
                    Some(e) => e,
                    None => {
                        let mut admitted = checked.admitted;
                        admitted.presenters =
                            room.as_ref().map_or(DEFAULT_PRESENTERS, presenters_of);
                        let write = SessionWrite {
                            state: Some(SessionState::Answering.as_str().to_owned()),
                            instance: Some(me.to_owned()),
                            updated_at: Some(timestamp(ctx.now)),
                            ..Default::default()
                        };
                        add_session_write(db, tx, parent.as_ref(), &key.session, &write)?;
                        return Ok(Claim::Answer(admitted));
                    }
                }
            }
            Err(e) => e,
        },
    };
    let write = refusal_write(&refusal, revision, ctx.live.map(|l| l.state), ctx.now);
    add_session_write(db, tx, parent.as_ref(), &key.session, &write)?;
    Ok(Claim::Rejected(refusal))
}

/// Records that the token admitted this session; refuses it if it admitted another one.
async fn use_token_once(
    db: &FirestoreDb,
    tx: &mut FirestoreTransaction<'_>,
    key: &SessionKey,
    claims: &JoinClaims,
) -> TxResult<Option<SessionError>> {
    let session = format!("{}/{}", key.room, key.session);
    let used: Option<Value> = db
        .fluent()
        .select()
        .by_id_in(JOIN_TOKENS)
        .obj()
        .one(&claims.jti)
        .await?;
    meter::read(1);
    if let Some(used) = used {
        if used.get("session").and_then(Value::as_str) != Some(session.as_str()) {
            return Ok(Some(SessionError::new(
                ErrorCode::TokenReused,
                "this join token already admitted another session",
            )));
        }
        return Ok(None);
    }
    let expires = std::time::UNIX_EPOCH + std::time::Duration::from_secs(claims.exp.max(0) as u64);
    #[derive(serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Used {
        session: String,
        expires_at: firestore::FirestoreTimestamp,
    }
    db.fluent()
        .update()
        .in_col(JOIN_TOKENS)
        .document_id(&claims.jti)
        .object(&Used {
            session,
            expires_at: timestamp(expires),
        })
        .add_to_transaction(tx)?;
    meter::wrote(1);
    Ok(None)
}

fn add_session_write(
    db: &FirestoreDb,
    tx: &mut FirestoreTransaction<'_>,
    parent: &str,
    session: &str,
    write: &SessionWrite,
) -> TxResult<()> {
    db.fluent()
        .update()
        .fields(write.mask())
        .in_col(SESSIONS)
        .document_id(session)
        .parent(parent)
        .object(write)
        .add_to_transaction(tx)?;
    meter::wrote(1);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_answering_document_of_ours_without_a_negotiation_is_claimed_again() {
        let ours = Observed::from_doc(
            &json!({"state": "answering", "instance": "me", "offer": {"revision": 2}}),
        );
        assert!(wants_answer(&decide(&ours, "me", false), &ours));
        let connected = Observed::from_doc(&json!({"state": "connected", "instance": "me"}));
        assert!(!wants_answer(&decide(&connected, "me", false), &connected));
    }
}
