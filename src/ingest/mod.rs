//! Ingest: media that enters rooms from outside WebRTC. Today, IP cameras over RTSP.
//!
//! - [`documents`]: the camera documents in Firestore (public state, sealed source);
pub mod documents;
