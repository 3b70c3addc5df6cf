//! What every `firesfu` process shares with the operating system: its host name (instance
//! ids), the signals that stop it, and what its memory holds.

/// The host name (a Kubernetes pod's name), or `fallback` when it cannot be read.
pub fn host_name(fallback: &str) -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| fallback.into())
}

/// `<host name>-<random>`: unique per process, readable in dashboards (for processes whose
/// identity need not survive a restart: monitors, sidecars).
pub fn host_instance(fallback: &str) -> String {
    format!(
        "{}-{:06x}",
        host_name(fallback),
        rand::random::<u32>() & 0xff_ffff
    )
}

/// SIGINT or SIGTERM. Both count: a script started with `&` from a non-interactive shell
/// ignores SIGINT, so SIGTERM is how such a parent stops us.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// A process's resident memory, KiB (0 once it is gone, or where /proc is not there).
pub fn resident_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// The allocator's view, KiB: held by live allocations, and held free (glibc's `mallinfo2`;
/// `None` with another C library). Unlike the resident size, the first only grows with what
/// the program keeps: what a leak looks like.
#[allow(unsafe_code)]
pub fn heap_kib() -> Option<(u64, u64)> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 reads the allocator's counters under its own locks.
        let m = unsafe { libc::mallinfo2() };
        Some((
            (m.uordblks + m.hblkhd) as u64 / 1024,
            m.fordblks as u64 / 1024,
        ))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}
