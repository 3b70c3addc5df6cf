//! What the server does about a session document it observed. Pure: the same function runs
//! on listener snapshots (to pick work) and again inside the transaction that does the work
//! (on the fresh document), which is what makes replays harmless: a snapshot that was already
//! acted upon no longer asks for anything once re-read.

use serde_json::Value;

use super::protocol::{ErrorCode, SessionError, SessionState};
use super::validate::as_integer;

/// The fields decisions depend on, read leniently from a session document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observed {
    /// `None` when missing or not a known state.
    pub state: Option<SessionState>,
    pub raw_state: Option<String>,
    pub offer_revision: Option<i64>,
    pub answer_revision: Option<i64>,
    pub instance: Option<String>,
}

impl Observed {
    pub fn from_doc(doc: &Value) -> Observed {
        let raw_state = doc.get("state").and_then(Value::as_str).map(str::to_owned);
        Observed {
            state: raw_state.as_deref().and_then(SessionState::parse),
            raw_state,
            offer_revision: doc
                .get("offer")
                .and_then(|o| o.get("revision"))
                .and_then(as_integer),
            answer_revision: doc
                .get("answer")
                .and_then(|a| a.get("revision"))
                .and_then(as_integer),
            instance: doc
                .get("instance")
                .and_then(Value::as_str)
                .map(str::to_owned),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Ignore,
    /// Claim and answer this offer revision.
    Answer {
        revision: i64,
    },
    /// Write this error for the current offer.
    Reject(SessionError),
    /// The client left (`closed`) or the session ended: release the peer.
    Leave,
    /// Our instance answered this session but holds no peer for it (it restarted).
    Lost,
    /// Our claim of offer `revision` still waits for its answer (a write that failed, or a
    /// claim whose reply was lost): answer it.
    Resume {
        revision: i64,
    },
}

/// `holding`: this instance currently runs (or is setting up) a peer for the session.
pub fn decide(doc: &Observed, me: &str, holding: bool) -> Decision {
    let ours = doc.instance.as_deref() == Some(me);
    let others = doc.instance.is_some() && !ours;
    match doc.state {
        Some(SessionState::Closed | SessionState::Failed) => {
            if holding {
                Decision::Leave
            } else {
                Decision::Ignore
            }
        }
        Some(SessionState::Offered) => {
            if others {
                return Decision::Ignore;
            }
            let revision = doc.offer_revision.unwrap_or(0);
            match doc.answer_revision {
                Some(answered) if revision <= answered && revision >= 1 => {
                    Decision::Reject(SessionError::new(
                        ErrorCode::StaleRevision,
                        format!(
                            "offer revision {revision} is not above the answered revision {answered}; \
                             a re-offer must increase `offer.revision`"
                        ),
                    ))
                }
                // A missing or invalid revision is answered by validation with the precise error.
                _ => Decision::Answer { revision },
            }
        }
        Some(
            state @ (SessionState::Answering | SessionState::Answered | SessionState::Connected),
        ) => match (ours, holding) {
            (true, false) => Decision::Lost,
            (true, true) if state == SessionState::Answering => Decision::Resume {
                revision: doc.offer_revision.unwrap_or(0),
            },
            _ => Decision::Ignore,
        },
        None => {
            if others || holding {
                return Decision::Ignore;
            }
            Decision::Reject(SessionError::new(
                ErrorCode::InvalidDocument,
                match &doc.raw_state {
                    Some(s) => format!(
                        "field `state` is \"{s}\"; a client writes \"offered\" or \"closed\""
                    ),
                    None => "field `state` is missing; a client writes \"offered\"".to_owned(),
                },
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obs(doc: Value) -> Observed {
        Observed::from_doc(&doc)
    }

    #[test]
    fn a_new_offer_is_answered_once() {
        let new = obs(json!({"state": "offered", "offer": {"revision": 1}}));
        assert_eq!(decide(&new, "me", false), Decision::Answer { revision: 1 });
        // After our claim the document says `answering` + our instance: the session task
        // knows whether its answer is written (resuming costs nothing when it is).
        let claimed =
            obs(json!({"state": "answering", "instance": "me", "offer": {"revision": 1}}));
        assert_eq!(
            decide(&claimed, "me", true),
            Decision::Resume { revision: 1 }
        );
        let answered = obs(json!({"state": "answered", "instance": "me",
            "offer": {"revision": 1}, "answer": {"revision": 1}}));
        assert_eq!(decide(&answered, "me", true), Decision::Ignore);
    }

    #[test]
    fn a_reoffer_is_answered_and_a_stale_one_rejected() {
        let re = obs(json!({"state": "offered", "instance": "me",
            "offer": {"revision": 3}, "answer": {"revision": 2}}));
        assert_eq!(decide(&re, "me", true), Decision::Answer { revision: 3 });
        let stale = obs(json!({"state": "offered", "instance": "me",
            "offer": {"revision": 2}, "answer": {"revision": 2}}));
        match decide(&stale, "me", true) {
            Decision::Reject(e) => assert_eq!(e.code, ErrorCode::StaleRevision),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn sessions_of_other_instances_are_left_alone() {
        let theirs = obs(json!({"state": "offered", "instance": "other",
            "offer": {"revision": 2}, "answer": {"revision": 1}}));
        assert_eq!(decide(&theirs, "me", false), Decision::Ignore);
        let theirs = obs(json!({"state": "connected", "instance": "other"}));
        assert_eq!(decide(&theirs, "me", false), Decision::Ignore);
    }

    #[test]
    fn leaving_releases_only_what_we_hold() {
        let closed = obs(json!({"state": "closed", "instance": "me"}));
        assert_eq!(decide(&closed, "me", true), Decision::Leave);
        assert_eq!(decide(&closed, "me", false), Decision::Ignore);
    }

    #[test]
    fn our_session_without_a_peer_is_lost() {
        let orphan = obs(json!({"state": "connected", "instance": "me"}));
        assert_eq!(decide(&orphan, "me", false), Decision::Lost);
        assert_eq!(decide(&orphan, "me", true), Decision::Ignore);
    }

    #[test]
    fn unknown_or_missing_states_are_reported() {
        for doc in [json!({"offer": {"revision": 1}}), json!({"state": "ready"})] {
            match decide(&obs(doc), "me", false) {
                Decision::Reject(e) => {
                    assert_eq!(e.code, ErrorCode::InvalidDocument);
                    assert!(e.message.contains("state"));
                }
                d => panic!("{d:?}"),
            }
        }
    }

    #[test]
    fn a_missing_revision_goes_to_validation() {
        let doc = obs(json!({"state": "offered"}));
        assert_eq!(decide(&doc, "me", false), Decision::Answer { revision: 0 });
    }
}
