//! What the HTTP bridges' tests share (WHIP, WHEP, the server API): raw requests with their
//! status, headers and body; and a broadcast instance that admits only the sidecar's join
//! tokens.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use testpeer::Report;
use testpeer::endpoint::{Endpoint, MediaSpec};
use tokio::sync::{mpsc, oneshot};

use super::sidecar::{Sidecar, assert_problem};
use super::{Broadcast, BroadcastOptions, Project};

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// A problem+json answer with this status and type.
    pub fn problem(&self, status: u16, slug: &str) {
        assert_eq!(
            self.header("content-type"),
            "application/problem+json",
            "{} {:?} {}",
            self.status,
            self.headers,
            self.body
        );
        let body: Value = serde_json::from_str(&self.body).unwrap_or(Value::Null);
        assert_problem(&(self.status, body), status, slug);
        assert_eq!(self.header("access-control-allow-origin"), "*");
    }
}

pub async fn send(
    s: &Sidecar,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> Reply {
    let mut req = s.http.request(method.parse().unwrap(), s.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(ty) = content_type {
        req = req.header("content-type", ty);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.body(body).send().await.unwrap();
    Reply {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.text().await.unwrap(),
    }
}

/// A broadcast that admits only sessions with the sidecar's join tokens.
pub async fn broadcast(project: &Project, s: &Sidecar, extra: &[(&str, &str)]) -> Broadcast {
    let mut env = vec![
        (
            "FIRESFU_JWKS_URL".to_owned(),
            s.url("/.well-known/jwks.json"),
        ),
        ("FIRESFU_DEV_NO_AUTH".to_owned(), "false".to_owned()),
    ];
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    Broadcast::start_with(
        project,
        BroadcastOptions {
            extra: env,
            ..Default::default()
        },
    )
    .await
}

const T: Duration = Duration::from_secs(20);

/// A str0m WHIP or WHEP client that POSTed its offer and runs.
pub struct Client {
    pub report: Arc<Mutex<Report>>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    restarts: mpsc::UnboundedSender<Restart>,
}

/// An ICE restart asked of the client's task: it sends its new offer, then waits for the
/// answer with the server's new credentials (while it keeps running).
struct Restart {
    offer: oneshot::Sender<String>,
    answer: oneshot::Receiver<String>,
}

impl Client {
    /// Restarts ICE on the client (new local credentials): its new offer, and where the answer
    /// with the server's new credentials goes.
    pub async fn restart_ice(&self) -> (String, oneshot::Sender<String>) {
        let (offer, offered) = oneshot::channel();
        let (answer_to, answer) = oneshot::channel();
        self.restarts.send(Restart { offer, answer }).unwrap();
        (offered.await.unwrap(), answer_to)
    }

    pub async fn wait(&self, what: &str, cond: impl Fn(&Report) -> bool) -> Report {
        let report = self.report.clone();
        let got = super::eventually(what, T, async || {
            let r = report.lock().unwrap().clone();
            cond(&r).then_some(r)
        })
        .await;
        got.unwrap_or_else(|e| panic!("{e}: {:#?}", self.report.lock().unwrap()))
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Binds a str0m endpoint for `spec` with `recv` (audio, video) receive slots, offers without
/// candidates (an ICE-lite server learns the client's address from its checks), POSTs the
/// offer to `path`, and on 201 applies the answer and runs until stopped.
pub async fn offer_to(
    s: &Sidecar,
    path: &str,
    token: Option<&str>,
    spec: MediaSpec,
    recv: (usize, usize),
) -> (Reply, String, Option<Client>) {
    let report = Arc::new(Mutex::new(Report::default()));
    let mut ep = Endpoint::bind(IpAddr::from([127, 0, 0, 1]), spec, report.clone())
        .await
        .unwrap();
    let (offer, pending) = ep.first_offer(recv.0, recv.1).unwrap();
    let offer: String = offer
        .split_inclusive('\n')
        .filter(|l| !l.starts_with("a=candidate") && !l.starts_with("a=end-of-candidates"))
        .collect();
    let reply = send(
        s,
        "POST",
        path,
        token,
        Some("application/sdp"),
        &[],
        offer.clone(),
    )
    .await;
    if reply.status != 201 {
        return (reply, offer, None);
    }
    ep.accept_answer(pending, &reply.body).unwrap();
    ep.signalled_at = Some(Instant::now());
    let (stop, mut stopped) = oneshot::channel();
    let (restarts, mut asked) = mpsc::unbounded_channel::<Restart>();
    let task = tokio::spawn(async move {
        let mut pending = None;
        let mut answer: Option<oneshot::Receiver<String>> = None;
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                Some(r) = asked.recv(), if answer.is_none() => {
                    if let Some((offer, p)) = ep.ice_restart() {
                        let _ = r.offer.send(offer);
                        pending = Some(p);
                        answer = Some(r.answer);
                    }
                }
                Ok(sdp) = async { answer.as_mut().unwrap().await }, if answer.is_some() => {
                    answer = None;
                    if let Some(p) = pending.take() {
                        ep.accept_answer(p, &sdp).unwrap();
                    }
                }
                r = ep.step() => if r.is_err() { break },
            }
        }
        ep.close();
        let _ = ep.drain().await;
    });
    let client = Client {
        report,
        stop,
        task,
        restarts,
    };
    (reply, offer, Some(client))
}
