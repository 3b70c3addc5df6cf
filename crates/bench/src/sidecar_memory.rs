//! The sidecar under a burst of password hashing: 100 concurrent registrations, then 100
//! concurrent logins with the right password, then 100 with a wrong one. For each burst: the
//! statuses, the latency of each request, the process's peak resident memory during the burst
//! and its memory 10 s later. Each request carries its own X-Forwarded-For address (start the
//! sidecar with FIRESFU_FORWARDED_FOR_HOPS=1) so that per-address limits do not hide the
//! cost of hashing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::stats::summary;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

async fn burst(
    http: &reqwest::Client,
    url: &str,
    pid: u32,
    n: usize,
    path: &str,
    password: &str,
    tag: &str,
) -> Value {
    let idle = rss_kib(pid);
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (http, url, path) = (http.clone(), url.to_owned(), path.to_owned());
            let body = json!({"username": format!("{tag}{i}"), "password": password});
            tokio::spawn(async move {
                let t0 = Instant::now();
                let status = http
                    .post(format!("{url}{path}"))
                    .header("x-forwarded-for", format!("10.{}.{}.1", i / 200, i % 200))
                    .json(&body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                (status, t0.elapsed().as_secs_f64() * 1000.0)
            })
        })
        .collect();
    let mut peak = idle;
    while tasks.iter().any(|t| !t.is_finished()) {
        peak = peak.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut statuses = BTreeMap::<u16, usize>::new();
    let (mut ok_ms, mut all_ms) = (Vec::new(), Vec::new());
    for t in tasks {
        let (status, ms) = t.await.unwrap_or((0, 0.0));
        *statuses.entry(status).or_default() += 1;
        all_ms.push(ms);
        if (200..300).contains(&status) || status == 401 {
            ok_ms.push(ms);
        }
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    json!({
        "requests": n,
        "statuses": statuses,
        "answeredMs": summary(&format!("{path} answered (2xx/401) ms"), ok_ms),
        "allMs": summary(&format!("{path} all ms"), all_ms),
        "rssIdleMiB": idle / 1024,
        "rssPeakMiB": peak / 1024,
        "rssAfter10sMiB": rss_kib(pid) / 1024,
    })
}

pub async fn run(url: &str, pid: u32, n: usize) -> anyhow::Result<Value> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(n)
        .build()?;
    let tag = format!("m{:04x}", rand::random::<u16>());
    let password = "correct horse battery";
    let registrations = burst(&http, url, pid, n, "/v1/accounts", password, &tag).await;
    let logins = burst(&http, url, pid, n, "/v1/sessions", password, &tag).await;
    let failed = burst(&http, url, pid, n, "/v1/sessions", "wrong password!!", &tag).await;
    Ok(json!({
        "registrations": registrations,
        "logins": logins,
        "failedLogins": failed,
    }))
}
