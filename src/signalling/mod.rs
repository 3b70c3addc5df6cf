//! Signalling through Firestore: the session document protocol (v1) and the server side of it.
//!
//! Browsers write offers into `rooms/{roomId}/sessions/{sessionId}`; the server claims each
//! offer revision in a transaction, has the media engine answer it, and writes the answer, the
//! session state and what the participant receives. `docs/signalling.md` is the contract.

pub mod admission;
pub mod announce;
pub mod decide;
pub mod driver;
pub mod limits;
pub mod protocol;
pub mod quality;
pub mod receive;
pub mod refusal;
pub mod session;
pub mod store;
pub mod validate;
