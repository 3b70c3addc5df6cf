//! What every `firesfu` process shares with the operating system: its host name (instance
//! ids) and the signals that stop it.

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
