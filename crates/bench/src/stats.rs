//! Measuring a server process from outside: its CPU time and its /stats counters.

use std::time::Duration;

use anyhow::Context;

/// User + system CPU time of a process so far (from /proc/PID/stat).
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("no process {pid}"))?;
    // The command name may contain spaces: fields are counted after its closing parenthesis.
    let rest = stat.rsplit_once(')').context("malformed /proc stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // CLK_TCK is 100 on Linux x86_64 and arm64.
    Ok(Duration::from_millis(ticks * 10))
}

/// CPU time of every process of a process group (a server started through a wrapper).
pub fn group_cpu_time(pgid: u32) -> anyhow::Result<Duration> {
    let mut total = Duration::ZERO;
    for entry in std::fs::read_dir("/proc")? {
        let Ok(pid) = entry?.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid) {
            total += cpu_time(pid).unwrap_or_default();
        }
    }
    Ok(total)
}

pub async fn firesfu_stats(url: &str) -> anyhow::Result<serde_json::Value> {
    Ok(reqwest::get(url).await?.json().await?)
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub fn summary(name: &str, mut values: Vec<f64>) -> serde_json::Value {
    values.sort_by(|a, b| a.total_cmp(b));
    let v = serde_json::json!({
        "metric": name,
        "n": values.len(),
        "p50": percentile(&values, 50.0),
        "p95": percentile(&values, 95.0),
        "max": values.last().copied().unwrap_or(f64::NAN),
    });
    println!(
        "{name}: n={} p50={:.1} p95={:.1} max={:.1}",
        values.len(),
        percentile(&values, 50.0),
        percentile(&values, 95.0),
        values.last().copied().unwrap_or(f64::NAN)
    );
    v
}
