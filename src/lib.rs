//! firesfu: a headless WebRTC SFU whose signalling runs through Google Cloud Firestore.
//!
//! - [`signalling`]: the Firestore document protocol and the server's side of it;
//! - [`media`]: the media plane (one UDP socket, `rtc` peer connections, room forwarding);
//! - [`broadcast`]: the `firesfu broadcast` daemon wiring the two together;
//! - [`sidecar`]: `firesfu sidecar`, users, rooms and join tokens on PostgreSQL;
//! - [`jointoken`]: the join tokens the sidecar issues and broadcast instances verify;
//! - [`gcp`]: Google clients, built so that emulators never leak traffic to Google;
//! - [`fleet`]: load reports, room placement and `firesfu monitor`;
//! - [`telemetry`]: logs, traces and metrics;
//! - [`docdb`]: Firestore primitives every adapter shares (deadlines, compare-and-set, meter);
//! - [`process`], [`text`]: host names, signals and memory; what user-visible text may contain;
//! - [`deploy`]: what running on Kubernetes needs (each broadcast pod's own load balancer);
//! - [`ingest`]: media from outside WebRTC (RTSP cameras); [`sealed`]: secrets at rest;
//! - [`events`]: what happens in rooms, published for webhooks (`sidecar::webhooks` delivers).
// No unsafe code, but for one audited call into the C allocator (`process::heap_kib`).
#![deny(unsafe_code)]

pub mod broadcast;
pub mod cli;
pub mod deploy;
pub mod docdb;
pub mod events;
#[cfg(feature = "fault-injection")]
pub mod faults;
pub mod fleet;
pub mod gcp;
pub mod http;
pub mod ingest;
pub mod jointoken;
pub mod media;
pub mod process;
pub mod sealed;
pub mod sidecar;
pub mod signalling;
pub mod telemetry;
pub mod text;
