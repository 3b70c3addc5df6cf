//! ICE-TCP, passive (RFC 6544), with RFC 4571 framing: the TCP side of the media socket.
//!
//! Participants whose network blocks UDP connect to the instance's TCP port; each connection
//! carries one client's STUN, DTLS and SRTP as length-prefixed frames. The listener and the
//! connections run as tasks of the media thread's runtime and talk to the engine loop through
//! channels, so the loop never waits on a socket:
//!
//! - inbound frames go to the engine as [`TcpEvent::Frame`] (bounded: a slow engine slows the
//!   readers, never the other way round);
//! - outbound frames go into a bounded per-connection queue that the engine fills with
//!   `try_send`: a peer that reads too slowly loses packets (counted), it never stalls the loop.
//!
//! Robustness: at most `per_ip` connections per client address and `max` in all; a connection
//! must send its first frame within `first_frame` (slow-loris) and close after `idle` without
//! one; a frame that is empty or larger than `max_frame` closes that connection only.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// One accepted connection, as the engine names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    pub per_ip: usize,
    pub max: usize,
    pub first_frame: Duration,
    pub idle: Duration,
    /// Frames waiting to be written to one connection.
    pub queue: usize,
    pub max_frame: usize,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            per_ip: 256,
            max: 4096,
            first_frame: Duration::from_secs(5),
            idle: Duration::from_secs(30),
            queue: 512,
            max_frame: 4096,
        }
    }
}

pub enum TcpEvent {
    Opened {
        conn: ConnId,
        peer: SocketAddr,
        /// The advertised port of the listener (what the candidate says).
        port: u16,
        writer: mpsc::Sender<Bytes>,
    },
    Frame {
        conn: ConnId,
        data: Bytes,
    },
    Closed {
        conn: ConnId,
    },
}

/// Counts of open connections per client address (shared by a listener's tasks).
#[derive(Default)]
struct Counts {
    per_ip: HashMap<IpAddr, usize>,
    total: usize,
}

#[derive(Clone)]
struct Admission {
    counts: Arc<Mutex<Counts>>,
    limits: TcpLimits,
}

/// Decrements the counts when a connection ends, however it ends.
struct Slot {
    admission: Admission,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut c) = self.admission.counts.lock() {
            c.total = c.total.saturating_sub(1);
            if let Some(n) = c.per_ip.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    c.per_ip.remove(&self.ip);
                }
            }
        }
    }
}

impl Admission {
    fn admit(&self, ip: IpAddr) -> Option<Slot> {
        let mut c = self.counts.lock().ok()?;
        let here = c.per_ip.get(&ip).copied().unwrap_or(0);
        if c.total >= self.limits.max || here >= self.limits.per_ip {
            return None;
        }
        c.total += 1;
        *c.per_ip.entry(ip).or_default() += 1;
        Some(Slot {
            admission: self.clone(),
            ip,
        })
    }
}

/// A frame no ICE client sends: empty, or longer than any datagram we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("RFC 4571 frame of {0} bytes")]
pub struct FramingError(pub usize);

/// Splits RFC 4571 frames off `buf`.
pub fn next_frame(buf: &mut BytesMut, max_frame: usize) -> Result<Option<Bytes>, FramingError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let len = u16::from_be_bytes([buf[0], buf[1]]) as usize;
    if len == 0 || len > max_frame {
        return Err(FramingError(len));
    }
    if buf.len() < 2 + len {
        return Ok(None);
    }
    buf.advance(2);
    Ok(Some(buf.split_to(len).freeze()))
}

/// `data` with its RFC 4571 length prefix (None if longer than a frame can say).
pub fn frame(data: &[u8]) -> Option<Bytes> {
    let len = u16::try_from(data.len()).ok()?;
    let mut out = BytesMut::with_capacity(data.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
    Some(out.freeze())
}

/// Accepts connections on `listener` until the engine goes away.
pub async fn serve(
    listener: TcpListener,
    port: u16,
    limits: TcpLimits,
    events: mpsc::Sender<TcpEvent>,
    next_id: Arc<std::sync::atomic::AtomicU64>,
    refused: Arc<std::sync::atomic::AtomicU64>,
) {
    let admission = Admission {
        counts: Arc::default(),
        limits,
    };
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!("ICE-TCP accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if events.is_closed() {
            return;
        }
        let Some(slot) = admission.admit(peer.ip().to_canonical()) else {
            refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = ConnId(next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        tokio::spawn(connection(
            stream,
            conn,
            peer,
            port,
            limits,
            events.clone(),
            slot,
        ));
    }
}

async fn connection(
    stream: TcpStream,
    conn: ConnId,
    peer: SocketAddr,
    port: u16,
    limits: TcpLimits,
    events: mpsc::Sender<TcpEvent>,
    _slot: Slot,
) {
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut outgoing) = mpsc::channel::<Bytes>(limits.queue);
    if events
        .send(TcpEvent::Opened {
            conn,
            peer,
            port,
            writer: tx,
        })
        .await
        .is_err()
    {
        return;
    }
    let write = async move {
        while let Some(frame) = outgoing.recv().await {
            if writer.write_all(&frame).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    };
    let events_read = events.clone();
    let read = async move {
        let mut buf = BytesMut::with_capacity(8192);
        let mut patience = limits.first_frame;
        loop {
            let read = tokio::time::timeout(patience, reader.read_buf(&mut buf)).await;
            match read {
                Ok(Ok(n)) if n > 0 => {}
                // Closed, failed, or silent too long.
                _ => return,
            }
            loop {
                match next_frame(&mut buf, limits.max_frame) {
                    Ok(Some(data)) => {
                        patience = limits.idle;
                        if events_read
                            .send(TcpEvent::Frame { conn, data })
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(%peer, "ICE-TCP {e}: closing the connection");
                        return;
                    }
                }
            }
            if buf.capacity() - buf.len() < 2048 {
                buf.reserve(8192);
            }
        }
    };
    // Either side ending ends the connection (the engine dropping its queue ends the writer).
    tokio::select! {
        _ = read => {}
        _ = write => {}
    }
    let _ = events.send(TcpEvent::Closed { conn }).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_split_as_they_complete() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&frame(b"hello").unwrap());
        buf.extend_from_slice(&frame(b"world!").unwrap()[..4]);
        assert_eq!(
            next_frame(&mut buf, 100),
            Ok(Some(Bytes::from_static(b"hello")))
        );
        assert_eq!(next_frame(&mut buf, 100), Ok(None));
        buf.extend_from_slice(b"rld!");
        assert_eq!(
            next_frame(&mut buf, 100),
            Ok(Some(Bytes::from_static(b"world!")))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn empty_or_oversized_frames_are_errors() {
        let mut empty = BytesMut::from(&[0u8, 0][..]);
        assert_eq!(next_frame(&mut empty, 100), Err(FramingError(0)));
        let mut big = BytesMut::from(&[0x10u8, 0x00, 1, 2][..]);
        assert_eq!(next_frame(&mut big, 100), Err(FramingError(4096)));
    }

    #[test]
    fn admission_bounds_connections_per_address_and_in_all() {
        let admission = Admission {
            counts: Arc::default(),
            limits: TcpLimits {
                per_ip: 2,
                max: 3,
                ..Default::default()
            },
        };
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = admission.admit(a).unwrap();
        let _s2 = admission.admit(a).unwrap();
        assert!(admission.admit(a).is_none(), "per address");
        let _s3 = admission.admit(b).unwrap();
        assert!(admission.admit(b).is_none(), "in all");
        drop(s1);
        assert!(
            admission.admit(a).is_some(),
            "a closed connection frees its place"
        );
    }
}
