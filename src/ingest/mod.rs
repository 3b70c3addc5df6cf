//! Ingest: media that enters rooms from outside WebRTC. Today, IP cameras over RTSP.
//!
//! A room's cameras are pulled by the instance that serves the room, while one of its
//! participants there receives ([`supervisor`]); each camera is one task ([`pull`]) that opens
//! its sealed settings, talks RTSP ([`rtsp`], over `retina`), refuses what browsers cannot take
//! untranscoded ([`h264`]: B-frames; H.265, MJPEG, AAC by their SDP), repacketizes its H.264
//! and G.711 ([`packetize`]) and joins the room as a source (`media::source`). Its state goes
//! to the camera's public document ([`store`], [`documents`]); failures wait as [`backoff`]
//! says.

pub mod backoff;
pub mod documents;
pub mod h264;
pub mod packetize;
pub mod pull;
pub mod rtsp;
pub mod store;
pub mod supervisor;
