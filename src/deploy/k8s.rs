//! The broadcast pod's calls to the Kubernetes API (in-cluster: the pod's service-account token
//! and CA, `https://kubernetes.default.svc`): create or adopt its own LoadBalancer Service, wait
//! for the external address, delete the Services a scale-down left behind. What the Service
//! looks like is decided in [`super::service`].
//!
//! RBAC the ServiceAccount needs in its namespace: services `get`, `list`, `create`, `patch`,
//! `delete`; statefulsets `get` (the Role in k8s/base/broadcast.yaml).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use super::service::{
    MANAGED_LABEL, Owner, ServiceSpec, external_addresses, manifest, service_name, stale_services,
    statefulset_of,
};

const ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const API: &str = "https://kubernetes.default.svc";

/// `--k8s-*` settings of `firesfu broadcast`.
#[derive(Debug, Clone, clap::Args)]
pub struct K8sArgs {
    /// On Kubernetes (GKE Autopilot): create or adopt this pod's own LoadBalancer Service
    /// (`<pod>-media`, the media port) and advertise its external address in ICE candidates.
    #[arg(long = "k8s-service", env = "FIRESFU_K8S_SERVICE", default_value_t = false, action = clap::ArgAction::Set)]
    pub service: bool,
    /// How long to wait for the load balancer's address at start, seconds.
    #[arg(
        long = "k8s-service-wait-secs",
        env = "FIRESFU_K8S_SERVICE_WAIT_SECS",
        default_value_t = 600
    )]
    pub wait_secs: u64,
    /// This pod's name (downward API `metadata.name`; default: the host name).
    #[arg(long = "k8s-pod-name", env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// This pod's namespace (downward API `metadata.namespace`; default: the service account's).
    #[arg(long = "k8s-namespace", env = "POD_NAMESPACE")]
    pub namespace: Option<String>,
}

struct Api {
    http: reqwest::Client,
    token: String,
    namespace: String,
}

impl Api {
    fn in_cluster(namespace: Option<&str>) -> anyhow::Result<Api> {
        let read = |f: &str| {
            std::fs::read_to_string(format!("{ACCOUNT}/{f}")).with_context(|| {
                format!("not in a Kubernetes pod with a service account ({ACCOUNT}/{f})")
            })
        };
        let ca = reqwest::Certificate::from_pem(read("ca.crt")?.as_bytes())?;
        let http = reqwest::Client::builder()
            .add_root_certificate(ca)
            .timeout(Duration::from_secs(10))
            .build()?;
        let namespace = match namespace {
            Some(n) => n.to_owned(),
            None => read("namespace")?.trim().to_owned(),
        };
        Ok(Api {
            http,
            token: read("token")?.trim().to_owned(),
            namespace,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Option<Value>> {
        let mut request = self
            .http
            .request(method.clone(), format!("{API}{path}"))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = if method == reqwest::Method::PATCH {
                request
                    .header("content-type", "application/merge-patch+json")
                    .body(body.to_string())
            } else {
                request.json(body)
            };
        }
        let response = request.send().await?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let text = response.text().await?;
        if !status.is_success() {
            bail!("{method} {path}: {status}: {text}");
        }
        Ok(Some(serde_json::from_str(&text)?))
    }
}

/// Makes sure this pod's Service exists and returns its external addresses. `tcp_ports`:
/// (the port the Service exposes, the pod's port) of each ICE-TCP listener.
pub async fn ensure_service(
    args: &K8sArgs,
    udp_port: u16,
    tcp_ports: Vec<(u16, u16)>,
) -> anyhow::Result<Vec<IpAddr>> {
    let pod = args
        .pod_name
        .clone()
        .unwrap_or_else(|| crate::process::host_name("broadcast"));
    let (set, _) = statefulset_of(&pod)
        .with_context(|| format!("pod {pod:?} is not a StatefulSet pod (<name>-<ordinal>)"))?;
    let api = Api::in_cluster(args.namespace.as_deref())?;
    let ns = api.namespace.clone();
    let statefulset = api
        .call(
            reqwest::Method::GET,
            &format!("/apis/apps/v1/namespaces/{ns}/statefulsets/{set}"),
            None,
        )
        .await?
        .with_context(|| format!("no StatefulSet {set} in {ns}"))?;
    let spec = ServiceSpec {
        pod: pod.clone(),
        namespace: ns.clone(),
        udp_port,
        tcp_ports,
        owner: Owner {
            statefulset: set.to_owned(),
            uid: statefulset
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        },
    };
    let name = service_name(&pod);
    let path = format!("/api/v1/namespaces/{ns}/services/{name}");
    let wanted = manifest(&spec);
    match api.call(reqwest::Method::GET, &path, None).await? {
        // Adopt it: a restarted pod keeps its address; the ports follow the configuration.
        Some(_) => {
            let patch = serde_json::json!({"metadata": {"labels": wanted["metadata"]["labels"]}, "spec": {"ports": wanted["spec"]["ports"]}});
            api.call(reqwest::Method::PATCH, &path, Some(&patch))
                .await?;
            tracing::info!(service = %name, "adopted this pod's media Service");
        }
        None => {
            api.call(
                reqwest::Method::POST,
                &format!("/api/v1/namespaces/{ns}/services"),
                Some(&wanted),
            )
            .await?;
            tracing::info!(service = %name, "created this pod's media Service");
        }
    }
    // Services of pods a scale-down removed: best effort.
    let replicas = statefulset
        .pointer("/spec/replicas")
        .and_then(Value::as_u64)
        .unwrap_or(1) as u32;
    let selector = format!("{MANAGED_LABEL}={set}");
    match api
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/namespaces/{ns}/services?labelSelector={selector}"),
            None,
        )
        .await
    {
        Ok(Some(list)) => {
            for stale in stale_services(&list, set, replicas) {
                match api
                    .call(
                        reqwest::Method::DELETE,
                        &format!("/api/v1/namespaces/{ns}/services/{stale}"),
                        None,
                    )
                    .await
                {
                    Ok(_) => {
                        tracing::info!(service = %stale, "deleted the media Service of a removed pod")
                    }
                    Err(e) => {
                        tracing::warn!(service = %stale, "cannot delete a stale media Service: {e:#}")
                    }
                }
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!("cannot list media Services: {e:#}"),
    }
    let deadline = Instant::now() + Duration::from_secs(args.wait_secs);
    loop {
        let ips = api
            .call(reqwest::Method::GET, &path, None)
            .await?
            .as_ref()
            .map(external_addresses)
            .unwrap_or_default();
        if !ips.is_empty() {
            tracing::info!(service = %name, ?ips, "advertising the load balancer's addresses");
            return Ok(ips);
        }
        if Instant::now() >= deadline {
            bail!(
                "the Service {name} got no external address within {} s (load-balancer quota? see docs/deploy.md)",
                args.wait_secs
            );
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}
