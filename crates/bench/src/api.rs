//! The sidecar's HTTP API under load: login latency (Argon2id dominates it) and
//! `GET /v1/rooms` throughput at N concurrent clients.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use crate::stats::{percentile, summary};

pub async fn run(
    url: &str,
    concurrency: usize,
    seconds: u64,
    logins: usize,
) -> anyhow::Result<Value> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let name = format!("bench{:06x}", rand::random::<u32>() & 0xffffff);
    let creds = json!({"username": name, "password": "correct horse battery"});
    http.post(format!("{url}/v1/accounts"))
        .json(&creds)
        .send()
        .await?
        .error_for_status()?;
    let mut login_ms = Vec::new();
    let mut token = String::new();
    for _ in 0..logins {
        let t0 = Instant::now();
        let r: Value = http
            .post(format!("{url}/v1/sessions"))
            .json(&creds)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        login_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        token = r["accessToken"].as_str().context("no token")?.to_owned();
    }
    for i in 0..20 {
        http.post(format!("{url}/v1/rooms"))
            .bearer_auth(&token)
            .json(&json!({"name": format!("Room {i}")}))
            .send()
            .await?
            .error_for_status()?;
    }
    let login = summary("login (Argon2id m=19 MiB, t=2, p=1), ms", login_ms);

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let token = Arc::new(token);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, token, url) = (http.clone(), token.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                match http
                    .get(format!("{url}/v1/rooms"))
                    .bearer_auth(token.as_str())
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
                    }
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        all.extend(l);
        errors += e;
    }
    all.sort_by(|a, b| a.total_cmp(b));
    let rps = all.len() as f64 / seconds as f64;
    println!(
        "GET /v1/rooms (20 rooms), {concurrency} concurrent clients: {rps:.0} requests/s, p50 {:.1} ms, p99 {:.1} ms, {errors} errors",
        percentile(&all, 50.0),
        percentile(&all, 99.0)
    );
    Ok(
        json!({"login": login, "rooms": {"concurrency": concurrency, "requestsPerSecond": rps,
        "p50": percentile(&all, 50.0), "p99": percentile(&all, 99.0), "errors": errors}}),
    )
}
