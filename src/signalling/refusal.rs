//! Which error code a session document gets when the media engine does not take its offer.

use super::protocol::{ErrorCode, SessionError};
use crate::media::{NegotiationError, OfferError};

pub fn negotiation_error(e: &NegotiationError) -> SessionError {
    let code = match e {
        NegotiationError::Offer(OfferError::TooLarge { .. }) => ErrorCode::SdpTooLarge,
        NegotiationError::Offer(OfferError::Malformed(_)) => ErrorCode::SdpMalformed,
        NegotiationError::Offer(OfferError::NoUsableMedia(_)) => ErrorCode::NoUsableMedia,
        NegotiationError::RoomFull { .. } => ErrorCode::RoomFull,
        NegotiationError::PresenterBusy { .. } => ErrorCode::PresenterBusy,
        NegotiationError::SourceKind { .. } => ErrorCode::InvalidDocument,
        NegotiationError::WatchedGone { .. } => ErrorCode::WatchedGone,
        NegotiationError::InstanceFull { .. } => ErrorCode::FleetFull,
        NegotiationError::Rejected(_) => ErrorCode::NegotiationFailed,
        NegotiationError::Closed | NegotiationError::EngineGone => ErrorCode::ServerShutdown,
    };
    SessionError::new(code, e.to_string())
}
