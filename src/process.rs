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

/// How many SIGTERM/SIGINTs arrived since [`listen_for_signals`] first ran.
static SIGNALS: std::sync::OnceLock<tokio::sync::watch::Receiver<u32>> = std::sync::OnceLock::new();

/// Installs the SIGTERM and SIGINT handlers and counts the signals from now on. `main` calls it
/// first: in a container the process is PID 1, and PID 1 ignores a signal it has no handler
/// for, so a SIGTERM that came before the handler existed was lost (the pod then ran to the end
/// of its grace period and was killed without draining). Both signals count: a script started
/// with `&` from a non-interactive shell ignores SIGINT, so SIGTERM is how such a parent stops us.
/// Needs a tokio runtime.
pub fn listen_for_signals() -> tokio::sync::watch::Receiver<u32> {
    SIGNALS
        .get_or_init(|| {
            use tokio::signal::unix::{SignalKind, signal};
            let (tx, rx) = tokio::sync::watch::channel(0u32);
            let term = signal(SignalKind::terminate());
            let int = signal(SignalKind::interrupt());
            tokio::spawn(async move {
                let (mut term, mut int) = match (term, int) {
                    (Ok(t), Ok(i)) => (t, i),
                    (Err(e), _) | (_, Err(e)) => {
                        tracing::error!("cannot listen for SIGTERM/SIGINT: {e}");
                        return std::future::pending().await;
                    }
                };
                loop {
                    tokio::select! {
                        Some(()) = term.recv() => {}
                        Some(()) = int.recv() => {}
                        else => return,
                    }
                    tx.send_modify(|n| *n += 1);
                }
            });
            rx
        })
        .clone()
}

/// Resolves once `n` SIGTERM/SIGINTs have arrived (counting those before the call).
pub async fn signalled(n: u32) {
    let mut count = listen_for_signals();
    if count.wait_for(|&c| c >= n).await.is_err() {
        // The counting task is gone (its runtime ended): no signal will ever be counted.
        std::future::pending::<()>().await;
    }
}

/// The first SIGTERM or SIGINT (at once if one has already arrived).
pub async fn shutdown_signal() {
    signalled(1).await
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
