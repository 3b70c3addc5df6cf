//! The instance's UDP socket: bound once, buffers sized, kernel drops observable.
//!
//! Media bursts (a keyframe is dozens of packets) overflow default socket buffers long before
//! the CPU is busy. We ask for large buffers; the kernel caps them at `net.core.rmem_max`
//! unless the process may force them (root without a user namespace; not on GKE Autopilot), so
//! we try the forcing option first and report what we got. What still overflows shows in the
//! `drops` column of `/proc/net/udp`, which we read for our own socket.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use nix::sys::socket::{setsockopt, sockopt};
use socket2::{Domain, Protocol, Socket, Type};

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("cannot bind UDP {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot bind TCP {addr} (ICE-TCP): {source}")]
    BindTcp {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot configure the socket: {0}")]
    Configure(#[from] std::io::Error),
}

/// What the kernel granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferSizes {
    pub receive: usize,
    pub send: usize,
}

/// A socket for `addr`: an unspecified IPv6 address means dual stack (IPv4 arrives
/// v4-mapped), and falls back to IPv4 on a kernel without IPv6.
fn new_socket(
    addr: &mut SocketAddr,
    kind: Type,
    protocol: Protocol,
) -> Result<Socket, std::io::Error> {
    let socket = match Socket::new(Domain::for_address(*addr), kind, Some(protocol)) {
        Err(e) if addr.is_ipv6() && addr.ip().is_unspecified() => {
            tracing::warn!("no IPv6 here ({e}): binding IPv4 only");
            addr.set_ip(std::net::Ipv4Addr::UNSPECIFIED.into());
            Socket::new(Domain::IPV4, kind, Some(protocol))?
        }
        other => other?,
    };
    if addr.is_ipv6() {
        socket.set_only_v6(false).ok();
    }
    Ok(socket)
}

pub fn bind_udp(
    mut addr: SocketAddr,
    receive_buffer: usize,
    send_buffer: usize,
) -> Result<(std::net::UdpSocket, BufferSizes), SocketError> {
    let socket = new_socket(&mut addr, Type::DGRAM, Protocol::UDP)?;
    // SO_*BUFFORCE passes `net.core.[rw]mem_max` when the process has CAP_NET_ADMIN.
    if setsockopt(&socket, sockopt::RcvBufForce, &receive_buffer).is_err() {
        socket.set_recv_buffer_size(receive_buffer)?;
    }
    if setsockopt(&socket, sockopt::SndBufForce, &send_buffer).is_err() {
        socket.set_send_buffer_size(send_buffer)?;
    }
    socket
        .bind(&addr.into())
        .map_err(|source| SocketError::Bind { addr, source })?;
    socket.set_nonblocking(true)?;
    let sizes = BufferSizes {
        // Linux reports twice the requested size (it books its own overhead).
        receive: socket.recv_buffer_size()? / 2,
        send: socket.send_buffer_size()? / 2,
    };
    Ok((socket.into(), sizes))
}

/// An ICE-TCP listening socket (dual stack like the UDP one), non-blocking.
pub fn bind_tcp(mut addr: SocketAddr) -> Result<std::net::TcpListener, SocketError> {
    let socket = new_socket(&mut addr, Type::STREAM, Protocol::TCP)?;
    socket.set_reuse_address(true)?;
    socket
        .bind(&addr.into())
        .map_err(|source| SocketError::BindTcp { addr, source })?;
    socket
        .listen(1024)
        .map_err(|source| SocketError::BindTcp { addr, source })?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Reads how many datagrams the kernel dropped for this socket because its receive buffer
/// was full. `None` when the information is unavailable (not Linux, /proc not mounted).
#[derive(Debug)]
pub struct DropCounter {
    inode: u64,
    table: &'static str,
}

impl DropCounter {
    pub fn for_socket(socket: &impl AsRawFd, ipv6: bool) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let fd = socket.as_raw_fd();
        let inode = std::fs::metadata(format!("/proc/self/fd/{fd}")).ok()?.ino();
        Some(DropCounter {
            inode,
            table: if ipv6 {
                "/proc/net/udp6"
            } else {
                "/proc/net/udp"
            },
        })
    }

    pub fn read(&self) -> Option<u64> {
        let text = std::fs::read_to_string(self.table).ok()?;
        parse_drops(&text, self.inode)
    }
}

/// The `drops` column of the line whose `inode` column matches.
fn parse_drops(table: &str, inode: u64) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
        if cols.len() >= 13 && cols[9].parse::<u64>().ok()? == inode {
            cols[12].parse().ok()
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_drops_column_of_our_inode() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
  1: 0100007F:1F90 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 17\n\
  2: 0100007F:1F91 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4343 2 0000000000000000 3\n";
        assert_eq!(parse_drops(table, 4343), Some(3));
        assert_eq!(parse_drops(table, 4242), Some(17));
        assert_eq!(parse_drops(table, 1), None);
    }

    #[test]
    fn binds_with_buffers_and_finds_itself_in_proc() {
        let (socket, sizes) = bind_udp("127.0.0.1:0".parse().unwrap(), 4 << 20, 1 << 20).unwrap();
        assert!(sizes.receive >= 200_000, "{sizes:?}");
        let drops = DropCounter::for_socket(&socket, false).unwrap();
        assert_eq!(drops.read(), Some(0));
    }
}
