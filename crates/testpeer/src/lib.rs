//! An independent WebRTC participant for firesfu: str0m (not the server's webrtc-rs stack)
//! driven through the documented Firestore protocol. Used by the integration tests, the
//! benchmarks and the browser smoke test (as the `testpeer` command).

pub mod endpoint;
pub mod firestore;
pub mod ivf;
pub mod payload;
pub mod peer;

pub use peer::{Leave, Peer, PeerSpec, Received, Report, VideoSource};
