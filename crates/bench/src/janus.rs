//! A minimal Janus (videoroom plugin, HTTP transport) client driving str0m endpoints, so the
//! same publisher and subscribers can be measured against Janus as against firesfu.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

pub struct JanusSession {
    http: reqwest::Client,
    url: String,
}

fn tx() -> String {
    format!("t{:x}", rand::random::<u64>())
}

impl JanusSession {
    pub async fn create(http: &reqwest::Client, base: &str) -> anyhow::Result<JanusSession> {
        let r: Value = http
            .post(base)
            .json(&json!({"janus": "create", "transaction": tx()}))
            .send()
            .await?
            .json()
            .await?;
        let id = r["data"]["id"]
            .as_u64()
            .with_context(|| format!("create: {r}"))?;
        Ok(JanusSession {
            http: http.clone(),
            url: format!("{base}/{id}"),
        })
    }

    pub async fn attach(&self) -> anyhow::Result<String> {
        let r: Value = self
            .http
            .post(&self.url)
            .json(&json!({"janus": "attach", "plugin": "janus.plugin.videoroom", "transaction": tx()}))
            .send()
            .await?
            .json()
            .await?;
        let id = r["data"]["id"]
            .as_u64()
            .with_context(|| format!("attach: {r}"))?;
        Ok(format!("{}/{id}", self.url))
    }

    pub async fn message(
        &self,
        handle: &str,
        body: Value,
        jsep: Option<Value>,
    ) -> anyhow::Result<()> {
        let mut m = json!({"janus": "message", "transaction": tx(), "body": body});
        if let Some(jsep) = jsep {
            m["jsep"] = jsep;
        }
        let r: Value = self.http.post(handle).json(&m).send().await?.json().await?;
        if r["janus"] == "error" {
            bail!("janus: {r}");
        }
        Ok(())
    }

    /// Tells Janus the client's candidates are all in its SDP.
    pub async fn candidates_done(&self, handle: &str) -> anyhow::Result<()> {
        self.http
            .post(handle)
            .json(
                &json!({"janus": "trickle", "transaction": tx(), "candidate": {"completed": true}}),
            )
            .send()
            .await?;
        Ok(())
    }

    /// Long-polls events until one matches.
    pub async fn wait_event(
        &self,
        what: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            let ev: Value = self
                .http
                .get(format!("{}?maxev=1", self.url))
                .send()
                .await?
                .json()
                .await?;
            if ev["janus"] == "error" || ev["plugindata"]["data"]["error"].is_string() {
                bail!("janus error while waiting for {what}: {ev}");
            }
            if matches(&ev) {
                return Ok(ev);
            }
        }
        bail!("janus: no {what} within 15 s")
    }
}
